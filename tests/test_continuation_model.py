"""The text2tracks rows of eval.continuation on a tiny artifact: which rows appear, which seeds
and prompts the model is given through the public API, and how its answers are scored.

The artifact's model is untrained; what is checked is what it is asked and how its answers are
counted, not how good they are. Its demo playlists hold 6 to 38 tracks, so the 100-seed
categories have no playlist and must be left out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.continuation import CATEGORIES, Category, Task, challenge_metrics, make_tasks, run
from eval.continuation_model import MODEL_SYSTEM, TITLE_ONLY_SYSTEM, ModelSystem


class Recording:
    """A recommender that records each ``recommend`` call and answers through the real one."""

    def __init__(self, recommender) -> None:
        self.recommender = recommender
        self.catalog = recommender.catalog
        self.max_seed_tracks = recommender.max_seed_tracks
        self.calls: list[dict] = []

    def recommend(self, prompts, **options):
        self.calls.append({"prompts": list(prompts), **options})
        return self.recommender.recommend(prompts, **options)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_artifact import build_tiny_artifact

    from text2tracks import Text2Tracks
    from text2tracks.artifacts import artifact_split

    root = tmp_path_factory.mktemp("continuation")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        artifact = build_tiny_artifact(root)
        recommender = Text2Tracks.from_pretrained(artifact, device="cpu")
    finally:
        torch.set_num_threads(threads)
    recommender.max_seed_tracks = 8  # untrained: what matters is what it is given to read
    return recommender, artifact_split(artifact, root / "demo.jsonl")


def test_the_model_is_given_each_categorys_title_and_seeds_in_order(tiny):
    recommender, split = tiny
    model = ModelSystem(Recording(recommender), k=10, batch_size=4, log=lambda m: None)
    known = set(recommender.catalog.item_ids)
    playlist_of = {frozenset(p.track_ids): list(dict.fromkeys(p.track_ids)) for p in split.test}
    tasks = make_tasks(split.test, {t: i for i, t in enumerate(sorted(known))}, max_per_category=6)
    assert sum(bool(t.titles) for t in tasks) == 8
    for task in tasks:
        cat = task.category
        if not task.titles:
            continue
        model.recommender.calls.clear()
        ranked, notes = model.rank(MODEL_SYSTEM, task)
        calls = model.recommender.calls
        assert notes["unanswered"] == 0 and len(ranked) == len(task.titles)
        prompts = [p for call in calls for p in call["prompts"]]
        assert prompts == (task.playlist_titles if cat.title else [""] * len(task.titles))
        given = [s or [] for call in calls for s in call["seed_tracks"]]
        for j, (seeds, answer) in enumerate(zip(given, ranked, strict=True)):
            tracks = playlist_of[frozenset(task.seed_ids[j]) | frozenset(task.withheld[j])]
            cut = task.seed_ids[j]
            assert len(cut) == cat.n_seeds and not set(cut) & set(task.withheld[j])
            if cat.random:
                assert cut == [t for t in tracks if t in set(cut)]  # playlist order kept
            else:
                assert cut == tracks[: cat.n_seeds]
            assert seeds == [t for t in cut if t in known]
            assert len(answer) == 10 and not set(answer) & set(cut)
        if cat.n_seeds:
            model.recommender.calls.clear()
            ranked, notes = model.rank(TITLE_ONLY_SYSTEM, task)
            calls = model.recommender.calls
            assert [p for c in calls for p in c["prompts"]] == task.playlist_titles
            assert all(c["seed_tracks"] is None for c in calls)
            excluded = [e or [] for c in calls for e in c["exclude"]]
            assert excluded == [[t for t in cut if t in known] for cut in task.seed_ids]
            for answer, cut in zip(ranked, task.seed_ids, strict=True):
                assert len(answer) == 10 and not set(answer) & set(cut)


def test_rows_appear_per_category_and_short_playlists_are_skipped(tiny):
    recommender, split = tiny
    logged = []
    model = ModelSystem(recommender, k=10, batch_size=8, log=logged.append)
    results = run(
        split.train,
        split.validation,
        split.test,
        log=logged.append,
        model=model,
        n_bootstrap=50,
        max_per_category=5,
    )
    assert set(results["empty_categories"]) == {"title_first100", "title_random100"}
    served = [c.name for c in CATEGORIES if c.name not in results["empty_categories"]]
    assert list(results["categories"]) == served
    for cat in CATEGORIES:
        if cat.name not in results["categories"]:
            continue
        row = results["categories"][cat.name]
        assert row["n"] == 5
        systems = row["systems"]
        assert systems[MODEL_SYSTEM]["depth"] == 10 and systems["popularity"]["depth"] > 10
        assert (TITLE_ONLY_SYSTEM in systems) == (cat.n_seeds > 0)
        assert systems[MODEL_SYSTEM]["unanswered"] == 0
        for m in ("r_precision", "ndcg", "clicks", "hits@10"):
            low, high = systems[MODEL_SYSTEM][f"{m}_ci"]
            assert low <= systems[MODEL_SYSTEM][m] <= high
    overall = results["overall"]
    assert overall[MODEL_SYSTEM]["categories"] == len(served)
    assert overall[TITLE_ONLY_SYSTEM]["categories"] == len(served) - 1  # not title_only


def test_a_prompt_the_model_cannot_read_is_a_counted_miss(tiny):
    recommender, _ = tiny
    model = ModelSystem(Recording(recommender), k=10, log=lambda m: None)
    seed = recommender.catalog.item_ids[0]
    task = Task(
        Category("first1", False, 1),
        titles=["", ""],
        seeds=[np.zeros(0, np.int64)] * 2,
        withheld=[["x"], ["y"]],
        seed_ids=[["not-in-the-catalogue"], [seed]],
        playlist_titles=["jazz", "🎶"],
    )
    ranked, notes = model.rank(MODEL_SYSTEM, task)
    assert ranked[0] == [] and len(ranked[1]) == 10 and seed not in ranked[1]
    assert notes == {"unanswered": 1, "unknown_seeds": 1}
    assert challenge_metrics(ranked, task.withheld)["clicks"][0] == 51
    assert model.recommender.calls[0]["seed_tracks"] == [[seed]]
    ranked, notes = model.rank(TITLE_ONLY_SYSTEM, task)  # "🎶" normalises to a prompt
    assert notes["unanswered"] == 0 and all(len(a) == 10 for a in ranked)


def test_model_system_checks_its_settings(tiny):
    recommender, _ = tiny
    with pytest.raises(ValueError, match="at least 10"):
        ModelSystem(recommender, k=5)
    with pytest.raises(ValueError, match="num_beams must be at least k"):
        ModelSystem(recommender, k=20, num_beams=10)
    with pytest.raises(ValueError, match="unknown system"):
        ModelSystem(recommender, k=10).rank("nope", make_tasks([], {})[0])
