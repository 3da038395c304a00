"""``mode="cf-blend"``: the model's continuation mixed with co-occurrence kNN of the seeds.

Synthetic catalogue whose right answer is known: 4 groups of 8 tracks; every training and
validation playlist holds tracks of one group, so co-occurrence kNN of any seed ranks the rest
of its group first, and an untrained model knows nothing.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from semantic_ids.playlists import Playlist
from tests.test_seed_tracks import N_GROUPS, PER_GROUP, _catalog, _recommender
from text2tracks.seed_blend import (
    BLEND_BUCKETS,
    TITLE_BUCKET,
    Continuations,
    SeedBlend,
    blend_bucket,
    continuations,
)

N_ITEMS = N_GROUPS * PER_GROUP


def _group_playlists(n: int, seed: int, size: int = 6, titled: bool = False) -> list[Playlist]:
    """Playlists of one group each, titled "mix" (or, ``titled``, after their group)."""
    rng = np.random.default_rng(seed)
    ids = _catalog().item_ids
    out = []
    for p in range(n):
        group = p % N_GROUPS
        tracks = rng.choice(PER_GROUP, size, replace=False) + group * PER_GROUP
        title = f"{_GROUP_WORDS[group]} songs" if titled else "mix"
        out.append(Playlist(f"p{seed}_{p}", title, tuple(ids[t] for t in tracks)))
    return out


_GROUP_WORDS = ("rainy", "workout", "wedding", "study")


def _index_of(track_id):
    try:
        return _catalog().item_ids.index(track_id)
    except ValueError:
        return None


def _blend(playlists) -> SeedBlend:
    return SeedBlend.from_playlists((p.track_ids for p in playlists), _index_of, N_ITEMS)


def _ndcg(items: np.ndarray, relevant) -> float:
    from text2tracks.ranking_metrics import per_prompt_metrics

    return float(
        per_prompt_metrics(items, relevant, items.shape[1], allow_empty=True)["ndcg"].mean()
    )


def test_buckets_and_the_continuations_cut():
    assert [blend_bucket(n) for n in (1, 2, 5, 6, 25, 26, 100, 500)] == [
        1,
        5,
        5,
        10,
        25,
        100,
        100,
        100,
    ]
    assert blend_bucket(0) == TITLE_BUCKET == 0
    with pytest.raises(ValueError, match="zero or more seeds"):
        blend_bucket(-1)
    with pytest.raises(ValueError, match="per_category"):
        continuations([], _index_of, per_category=0)
    data = continuations(_group_playlists(20, seed=1, size=8), _index_of, per_category=3)
    # categories with 1, 5, 5 (no title) seeds fit 8-track playlists; 10, 25 and 100 do not
    assert sorted(len(s) for s in data.seeds) == [1] * 3 + [5] * 6
    assert sum(not t for t in data.texts) == 3
    for seeds, relevant in zip(data.seeds, data.relevant, strict=True):
        assert not set(seeds.tolist()) & relevant
        assert len(set((seeds // PER_GROUP).tolist()) | {r // PER_GROUP for r in relevant}) == 1


def test_knn_ranks_the_seeds_group_first_and_never_a_seed_or_an_excluded_track():
    blend = _blend(_group_playlists(40, seed=0))
    items, scores = blend.knn_view([np.array([0, 1]), np.array([9])], [np.array([2]), None], 5)
    assert set(items[0].tolist()) == {3, 4, 5, 6, 7} and np.all(scores[0] > 0)
    assert set(items[1].tolist()) <= set(range(8, 16)) - {9}
    with pytest.raises(RuntimeError, match="fit_seed_blend"):
        blend.mixture_for(3)


def _fit(blend: SeedBlend, data: Continuations, answer) -> SeedBlend:
    return blend.fit(answer, data, k=6)


def _random_answer(part: Continuations, k: int = 6):
    rng = np.random.default_rng(7)
    rows = []
    for seeds in part.seeds:
        rows.append(rng.permutation(np.setdiff1d(np.arange(N_ITEMS), seeds))[:k])
    return np.array(rows), -np.arange(k, dtype=float)[None].repeat(len(rows), 0)


def test_a_model_that_knows_nothing_is_mixed_away_and_knn_answers():
    blend = _blend(_group_playlists(40, seed=0))
    data = continuations(_group_playlists(40, seed=1, size=8), _index_of, per_category=8)
    _fit(blend, data, _random_answer)
    assert set(blend.mixtures) == {1, 5}
    assert all(m.weight_ == 0.0 for m in blend.mixtures.values())
    model_items, model_scores = _random_answer(data)
    items, scores = blend.blend(model_items, model_scores, data.seeds, [None] * len(data.seeds), 6)
    knn, _ = blend.knn_view(data.seeds, [None] * len(data.seeds), 6)
    assert _ndcg(items, data.relevant) == pytest.approx(_ndcg(knn, data.relevant))
    assert _ndcg(items, data.relevant) > _ndcg(model_items, data.relevant)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # a prompt with seeds of 25 takes the nearest fitted bucket's mixture
    assert blend.mixture_for(25) is blend.mixtures[5]


def test_an_oracle_model_is_kept_where_knn_knows_nothing():
    rng = np.random.default_rng(3)
    noise = sp.random(60, N_ITEMS, density=0.2, random_state=3, format="csr")
    blend = SeedBlend(noise)  # co-occurrence with no group structure
    data = continuations(_group_playlists(40, seed=1, size=8), _index_of, per_category=8)

    def oracle(part: Continuations, depth: int = 6):
        rows = []
        for seeds, relevant in zip(part.seeds, part.relevant, strict=True):
            rest = np.setdiff1d(np.arange(N_ITEMS), np.r_[seeds, list(relevant)])
            rows.append(np.r_[sorted(relevant), rng.permutation(rest)][:6])
        return np.array(rows), -np.arange(6, dtype=float)[None].repeat(len(rows), 0)

    _fit(blend, data, oracle)
    assert all(m.weight_ > 0.5 for m in blend.mixtures.values())
    model_items, model_scores = oracle(data)
    items, _ = blend.blend(model_items, model_scores, data.seeds, [None] * len(data.seeds), 6)
    assert _ndcg(items, data.relevant) == pytest.approx(_ndcg(model_items, data.relevant))


def test_the_api_mode_fits_saves_and_answers_continuations(tmp_path):
    recommender = _recommender(max_seed_tracks=4)
    ids = recommender.catalog.item_ids
    with pytest.raises(ValueError, match="fit-seed-blend"):
        recommender.recommend("mix", k=5, mode="cf-blend", seed_tracks=[ids[0]])
    summary = recommender.fit_seed_blend(
        _group_playlists(40, seed=0),
        _group_playlists(40, seed=1, size=8),
        k=6,
        per_category=8,
        als_factors=0,
        titles=False,
    )
    assert set(summary["buckets"]) == {"1", "5"} and summary["k"] == 6
    seeds = [ids[8], ids[9]]
    answer = recommender.recommend("mix", k=6, mode="cf-blend", seed_tracks=seeds)
    got = [r.track_id for r in answer]
    assert not set(got) & set(seeds)
    # the untrained model is mixed away: the rest of the seeds' group comes first
    assert set(got) == set(ids[8:16]) - set(seeds)
    # without seeds (and no titles kept), generative mode's answer
    plain = recommender.recommend("mix", k=6)
    assert [r.track_id for r in recommender.recommend("mix", k=6, mode="cf-blend")] == [
        r.track_id for r in plain
    ]
    # saved and read back, the same answers; the component is in the manifest
    recommender.save_pretrained(tmp_path / "artifact")
    from text2tracks import Text2Tracks
    from text2tracks.artifacts import read_manifest

    again = Text2Tracks.from_pretrained(tmp_path / "artifact")
    assert "seed_blend" in read_manifest(tmp_path / "artifact")["components"]
    # each bucket's kNN history power is fitted, reported and read back
    powers = recommender.seed_blend.powers
    assert set(powers) == {1, 5} and again.seed_blend.powers == powers
    assert {b: e["view"] for b, e in summary["buckets"].items()} == {
        str(b): f"item_knn(p={p:g})" for b, p in powers.items()
    }
    assert [
        r.track_id for r in again.recommend("mix", k=6, mode="cf-blend", seed_tracks=seeds)
    ] == got
    with pytest.raises(ValueError, match="need --mode latent|latent mode|generative"):
        again.recommend("mix", k=6, mode="cf-blend", seed_tracks=seeds, n_samples=4)


def test_a_model_that_reads_no_seeds_is_still_blended_without_the_unread_warning():
    import warnings

    recommender = _recommender(max_seed_tracks=0)
    ids = recommender.catalog.item_ids
    recommender.fit_seed_blend(
        _group_playlists(40, seed=0),
        _group_playlists(40, seed=1, size=8),
        k=6,
        per_category=8,
        als_factors=4,
    )
    assert set(recommender.seed_blend.summary["buckets"]) == {"0", "1", "5"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        answer = recommender.recommend("mix", k=6, mode="cf-blend", seed_tracks=[ids[16], ids[17]])
    assert {r.track_id for r in answer} == set(ids[16:24]) - {ids[16], ids[17]}
    assert BLEND_BUCKETS[0] == 1


def test_the_command_fits_into_the_artifact_and_export_uses_the_mode(tmp_path):
    import json

    import torch
    from tiny_artifact import build_tiny_artifact

    from text2tracks.artifacts import artifact_split, read_manifest
    from text2tracks.commands.export import ExportError, run_export
    from text2tracks.commands.fit_seed_blend import main, run_fit_seed_blend

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        artifact = build_tiny_artifact(tmp_path)
        playlists = tmp_path / "demo.jsonl"
        rows = tmp_path / "prompts.jsonl"
        split = artifact_split(artifact, playlists)
        seeds = list(split.test[0].track_ids[:3])
        rows.write_text(
            json.dumps({"prompt": "chill", "seed_tracks": seeds})
            + "\n"
            + json.dumps({"prompt": "x"})
            + "\n"
        )
        with pytest.raises(ExportError, match="fit-seed-blend"):
            run_export(
                artifact, rows, tmp_path / "none.jsonl", k=10, mode="cf-blend", progress=False
            )
        flags = ["--artifact", str(artifact), "--playlists", str(playlists)]
        assert main([*flags, "--k", "0"]) == 2
        assert main([*flags, "--short-k", "-1"]) == 2 and main([*flags, "--als-factors", "-2"]) == 2
        summary = run_fit_seed_blend(artifact, playlists, k=10, per_category=5, log=lambda m: None)
        assert summary["k"] == 10 and summary["buckets"]
        assert "seed_blend" in read_manifest(artifact)["components"]
        run_export(artifact, rows, tmp_path / "out.jsonl", k=10, mode="cf-blend", progress=False)
    finally:
        torch.set_num_threads(threads)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [len(r["track_ids"]) for r in out] == [10, 10] and not any(r["error"] for r in out)
    assert not set(out[0]["track_ids"]) & set(seeds)


def test_als_fold_in_and_title_knn_find_the_group_and_a_fused_view_adds_the_two():
    from text2tracks.seed_views import BlendView, CFViews, fit_als_factors

    train = _group_playlists(80, seed=0, titled=True)
    matrix = _blend(train).interactions
    views = CFViews(matrix, [p.prompt for p in train], fit_als_factors(matrix, 4))
    seeds = [np.array([0, 1]), np.array([17])]
    items, _ = views.top(BlendView("als_fold_in"), ["", ""], seeds, [None, None], 6)
    assert set(items[0].tolist()) <= set(range(2, 8)) and set(items[1].tolist()) <= set(
        range(16, 24)
    )
    # title kNN reads the group from the text alone
    items, scores = views.top(BlendView("title_knn"), ["study songs"], [np.zeros(0)], [None], 8)
    assert set(items[0].tolist()) == set(range(24, 32)) and np.all(scores[0] > 0)
    # fused: each side over its row maximum, the title's at its weight
    texts = ["wedding songs", ""]
    seed = views.scores(BlendView("item_knn", 0.0), texts, seeds)
    title = views.scores(BlendView("title_knn"), texts, seeds)
    fused = views.scores(BlendView("item_knn", 0.0, 0.3), texts, seeds)
    expected = seed / seed.max(axis=1, keepdims=True)
    expected[0] += 0.3 * title[0] / title[0].max()
    np.testing.assert_allclose(fused, expected, rtol=1e-6)
    assert not title[1].any()  # no text, no title votes: the fused row is the seed view's
    with pytest.raises(ValueError, match="titles for"):
        CFViews(matrix, ["one title"])
    with pytest.raises(ValueError, match="unknown view system"):
        BlendView("bm25")


def _fitted_on_titled_groups(**fit):
    """A tiny untrained recommender and its blend, fitted on playlists titled by group."""
    recommender = _recommender(max_seed_tracks=4)
    summary = recommender.fit_seed_blend(
        _group_playlists(80, seed=0, titled=True),
        _group_playlists(40, seed=1, size=8, titled=True),
        **fit,
    )
    return recommender, recommender.catalog.item_ids, summary


def test_title_only_prompts_are_blended_with_title_knn_and_the_views_are_saved(tmp_path):
    recommender, ids, summary = _fitted_on_titled_groups(k=6, per_category=8, als_factors=4)
    assert set(summary["buckets"]) == {"0", "1", "5"}
    assert summary["buckets"]["0"]["view"] == "title_knn"
    # every seeded bucket tried every view: both powers, ALS, and each fused with the title
    tried = set(summary["buckets"]["1"]["by_view"])
    assert {"item_knn(p=0)", "item_knn(p=0.5)", "als_fold_in", "als_fold_in+title*0.3"} <= tried
    # the untrained model knows nothing; title kNN knows the group from the title alone
    got = [r.track_id for r in recommender.recommend("workout songs", k=6, mode="cf-blend")]
    assert set(got) <= set(ids[8:16])
    plain = [r.track_id for r in recommender.recommend("workout songs", k=6)]
    assert got != plain
    recommender.save_pretrained(tmp_path / "artifact")
    from text2tracks import Text2Tracks

    files = {f.name for f in (tmp_path / "artifact" / "seed_blend").iterdir()}
    assert {"titles.json", "als_item_factors.npy", "interactions.npz", "config.json"} <= files
    again = Text2Tracks.from_pretrained(tmp_path / "artifact")
    assert again.seed_blend.views == recommender.seed_blend.views
    for prompt, seeds in (("workout songs", None), ("", [ids[0], ids[1]]), ("mix", [ids[20]])):
        first = recommender.recommend(prompt, k=6, mode="cf-blend", seed_tracks=seeds)
        second = again.recommend(prompt, k=6, mode="cf-blend", seed_tracks=seeds)
        assert [r.track_id for r in first] == [r.track_id for r in second]


def test_a_short_answer_reads_its_own_fit_and_it_survives_saving(tmp_path):
    from text2tracks.seed_blend import SeedBlend

    recommender, ids, summary = _fitted_on_titled_groups(
        k=8, per_category=4, als_factors=0, short_k=2
    )
    short = summary["short"]
    assert short["k"] == 2 and set(short["buckets"]) == {"0", "1", "5"}
    # 4 a category for the 8-deep fit, SHORT_SCALE times as many for the short one
    assert summary["buckets"]["1"]["prompts"] == 4 and short["buckets"]["1"]["prompts"] == 16
    assert short["buckets"]["1"]["metric"] == "hits@2"
    blend = recommender.seed_blend
    # the nearer depth on a log scale: up to sqrt(2 * 8) = 4 tracks the short fit serves
    assert blend.fitted(4)[1] is blend.short["mixtures"]
    assert blend.fitted(5)[1] is blend.mixtures and blend.fitted(None)[1] is blend.mixtures
    answer = recommender.recommend("rainy songs", k=3, mode="cf-blend")
    assert {r.track_id for r in answer} <= set(ids[:8])
    recommender.save_pretrained(tmp_path / "artifact")
    again = SeedBlend.load(tmp_path / "artifact" / "seed_blend")
    assert again.short["k"] == 2 and again.short["views"] == blend.short["views"]
    assert {b: m.to_dict() for b, m in again.short["mixtures"].items()} == {
        b: m.to_dict() for b, m in blend.short["mixtures"].items()
    }
