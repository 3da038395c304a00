"""Tests for eval.sequential_model (the text2tracks row of TIGER's leave-last-out protocol) and
its wiring into eval.sequential.

Synthetic sequences whose right answer is known: 4 groups of 12 items in a cycle; a user walks
one group from a random start, so the next item is always the successor of the last one and
belongs to the history's group. Popularity, which cannot tell the group, is far behind a model
that reads the history.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from eval.sequential import format_table, main, metrics_from_ranks, run
from eval.sequential_core import per_user_metrics
from eval.sequential_model import (
    SPLIT_FILE,
    VALIDATION_SIDE,
    SequentialModel,
    SplitMismatchError,
    build_artifact,
    check_artifact_split,
    history_windows,
    write_training_histories,
)
from semantic_ids.playlists import read_playlists, split_playlists
from semantic_ids.sequences import Sequences, leave_last_out

pytestmark = pytest.mark.usefixtures("one_thread")

N_GROUPS, PER_GROUP = 4, 12
TINY_BUILD = "--codebook-size 4 --levels 2 --factors 8 --iterations 5 --kmeans-iterations 5"
TINY_MODEL = (
    "--d-model 32 --num-layers 1 --num-decoder-layers 1 --num-heads 2 --d-ff 64 "
    "--batch-size 32 --max-steps 300 --lr 3e-3 --warmup-steps 20 --max-seed-tracks 4"
)


def _cyclic(n_users: int = 200, seed: int = 0) -> Sequences:
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        group, start, length = rng.integers(N_GROUPS), rng.integers(PER_GROUP), rng.integers(6, 9)
        users.append(f"user{u}")
        items.append([f"g{group}:i{(start + t) % PER_GROUP}" for t in range(length)])
    return Sequences(users, items)


# ------------------------------------------------------------------ what the model learns from


def test_the_training_file_holds_training_histories_only(tmp_path):
    """Every history on build-ids' training side, title-less and in order; the validation side
    is history + validation item for a sample; no test item anywhere."""
    n = 40
    seqs = Sequences(
        [f"p{u}" for u in range(n)],
        [[f"a{u % 5}", f"b{u % 7}", f"c{u}", f"val{u}", f"test{u}"] for u in range(n)],
    )
    split = leave_last_out(seqs)
    path = write_training_histories(split, tmp_path / "h.jsonl", split_seed=3, n_validation=10)
    playlists = read_playlists(path).playlists
    assert all(p.title == "" for p in playlists)
    assert not any(t.startswith("test") for p in playlists for t in p.track_ids)
    sides = split_playlists(playlists, validation_fraction=VALIDATION_SIDE, test_fraction=0, seed=3)
    assert [list(p.track_ids) for p in sides.train] == split.train
    assert len(sides.validation) == 10 and not sides.test
    for p in sides.validation:
        u = int(p.track_ids[-1][3:])
        assert list(p.track_ids) == [*split.train[u], split.validation[u]]
    # another split seed moves the hash: the ids are chosen again, the sides stay the same
    path = write_training_histories(split, tmp_path / "h2.jsonl", split_seed=11, n_validation=10)
    sides = split_playlists(read_playlists(path).playlists, VALIDATION_SIDE, 0, seed=11)
    assert [list(p.track_ids) for p in sides.train] == split.train
    # windows of 2: each history as its consecutive pairs, still on the training side
    path = write_training_histories(split, tmp_path / "w.jsonl", n_validation=10, window=2)
    sides = split_playlists(read_playlists(path).playlists, VALIDATION_SIDE, 0, seed=0)
    pairs = [[h[0], h[1]] for h in split.train] + [[h[1], h[2]] for h in split.train]
    assert sorted(list(p.track_ids) for p in sides.train) == sorted(pairs)
    assert len(sides.validation) == 10


def test_history_windows_cover_each_history_in_order():
    h = [f"t{i}" for i in range(10)]
    assert history_windows(h, 4) == [h[0:4], h[2:6], h[4:8], h[6:10]]
    h11 = [*h, "t10"]  # the last window ends at the history's end
    assert history_windows(h11, 4) == [h11[0:4], h11[2:6], h11[4:8], h11[6:10], h11[7:11]]
    assert history_windows(h, 5) == [h[0:5], h[2:7], h[4:9], h[5:10]]
    assert history_windows(h, 0) == [h] == history_windows(h, 10)
    for bad in (1, -1, 2.5, True):
        with pytest.raises(ValueError, match="window"):
            history_windows(h, bad)


def test_an_artifact_of_another_split_is_refused(tmp_path):
    split = leave_last_out(_cyclic(80))
    artifact = tmp_path / "artifact"
    build = dict(log=lambda m: None, window=3)  # windows: more playlists, the same items
    build_artifact(split, artifact, tmp_path / "h.jsonl", TINY_BUILD.split(), **build)
    recorded = check_artifact_split(artifact, split)
    assert recorded["n_users"] == 80 and recorded["history_window"] == 3
    catalogue = json.loads((artifact / "semantic_ids" / "catalog" / "item_ids.json").read_text())
    assert set(catalogue) == {t for h in split.train for t in h}  # min-count 1: every item

    other = _cyclic(80)
    other.items[5] = [*other.items[5][:-3], "g0:i0", *other.items[5][-2:]]  # one history differs
    with pytest.raises(SplitMismatchError, match="train_digest"):
        check_artifact_split(artifact, leave_last_out(other))
    with pytest.raises(SplitMismatchError, match="min_length"):
        check_artifact_split(artifact, leave_last_out(_cyclic(80), min_length=4))
    (artifact / SPLIT_FILE).unlink()
    with pytest.raises(SplitMismatchError, match="is missing"):
        check_artifact_split(artifact, split)
    with pytest.raises(FileExistsError):
        build_artifact(split, artifact, tmp_path / "h.jsonl", TINY_BUILD.split())
    with pytest.raises(ValueError, match="validation-fraction"):
        build_artifact(
            split, tmp_path / "b", tmp_path / "h.jsonl", ["--validation-fraction", "0.1"]
        )


# ------------------------------------------------------------------ ranks and metrics


class _Scripted:
    """A recommender whose answer to a history is scripted by its last seed."""

    max_seed_tracks = 5

    def __init__(self, items, answers):
        self.catalog = SimpleNamespace(item_ids=items)
        self.answers = answers
        self.calls = []
        self.asked = {}  # seeds -> what was excluded besides them

    def recommend(self, prompts, k, num_beams, batch_size, seed_tracks, exclude):
        self.calls.append((list(prompts), len(seed_tracks), k, num_beams))
        for i, seeds in enumerate(seed_tracks):
            self.asked[tuple(seeds)] = None if exclude is None else exclude[i]
        return [
            [SimpleNamespace(track_id=t, score=-j) for j, t in enumerate(self.answers[s[-1]][:k])]
            for s in seed_tracks
        ]


def test_ranks_of_handmade_answers():
    items = [f"t{i}" for i in range(20)]
    answers = {
        "t0": ["t5", "t6", "t7", "t8", "t9", "t10", "t11", "t12", "t13", "t14"],
        "t1": ["t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "t11"],
        "t2": ["t19", "t18", "t17", "t16", "t15", "t14", "t13", "t12", "t11", "t10"],
    }
    recommender = _Scripted(items, answers)
    model = SequentialModel(recommender, k=10, num_beams=10, batch_size=2, log=lambda m: None)
    long = ["t4", "t5", "t6", "t7", "t9", "t10", "t0"]  # more than the 5 seeds it reads
    histories = [["t3", "t0"], ["t1"], ["t0", "t2"], ["zz"], ["yy", "t1"], long]
    targets = ["t8", "t2", "t1", "t4", "nope", "t11"]
    ranks, notes = model.rank(histories, targets)
    assert ranks.tolist() == [3, 0, 10, 10, 10, 6]
    assert notes == {
        "unanswered": 1,
        "unknown_seeds": 2,
        "targets_outside_catalogue": 1,
        "api_warnings": {},
    }
    # unknown seeds dropped, the user without any not asked; the most recent 5 read, the
    # older ones excluded, so the whole history stays out of the answer
    assert recommender.asked == {
        ("t3", "t0"): None,
        ("t1",): None,
        ("t0", "t2"): None,
        ("t6", "t7", "t9", "t10", "t0"): ["t4", "t5"],
    }
    assert all(set(p) == {""} and k == 10 and b == 10 for p, _, k, b in recommender.calls)
    assert [n for _, n, _, _ in recommender.calls] == [2, 2, 1]  # batches of 2: 5 users asked
    _, _, answered = model.rank_and_answer(histories, targets)  # what text2tracks-hybrid mixes
    assert answered[0] == (answers["t0"], [-float(j) for j in range(10)])
    assert answered[3] == ([], [])  # not asked

    m = metrics_from_ranks(ranks, n_bootstrap=50)
    assert m["recall@5"] == pytest.approx(2 / 6) and m["recall@10"] == pytest.approx(3 / 6)
    assert m["ndcg@5"] == pytest.approx((1 / np.log2(5) + 1) / 6)
    assert m["ndcg@10"] == pytest.approx((1 / np.log2(5) + 1 + 1 / np.log2(8)) / 6)
    assert per_user_metrics(ranks, 1)["recall@1"].tolist() == [0, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="num_beams"):
        SequentialModel(recommender, k=10, num_beams=5)
    with pytest.raises(ValueError, match="targets"):
        model.rank(histories, targets[:2])


class _Scorer(_Scripted):
    """Scores a candidate by its number, plus 100 times the last seed's (so the seeds show)."""

    def score_tracks(self, prompts, track_ids, seed_tracks, batch_size):
        self.calls.append((list(prompts), [list(s) for s in seed_tracks], batch_size))
        width = max(map(len, track_ids))
        out = np.full((len(prompts), width), np.nan)
        for i, (row, seeds) in enumerate(zip(track_ids, seed_tracks, strict=True)):
            out[i, : len(row)] = [int(t[1:]) + 100 * int(seeds[-1][1:]) for t in row]
        return out


def test_candidates_are_scored_after_the_most_recent_seeds():
    model = SequentialModel(_Scorer([f"t{i}" for i in range(20)], {}), batch_size=2)
    long = ["t4", "t5", "t6", "t7", "t9", "t10", "t1"]
    histories = [["t3", "t2"], ["zz"], long, ["t0", "yy"]]
    candidates = [["t5", "nope", "t7"], ["t1"], ["t8"], ["t9", "t3"]]
    got = model.score_candidates(histories, candidates)
    np.testing.assert_array_equal(
        got,
        [[205, np.nan, 207], [np.nan] * 3, [108, np.nan, np.nan], [9, 3, np.nan]],
    )
    # unknown ids never reach the recommender; the user with no known item is not asked; the
    # 5 most recent known items are the seeds; users of similar history length batched
    seeds = [s for _, batch, _ in model.recommender.calls for s in batch]
    assert seeds == [["t0"], ["t3", "t2"], ["t5", "t6", "t7", "t9", "t10", "t1"][-5:]]
    with pytest.raises(ValueError, match="candidate lists"):
        model.score_candidates(histories, candidates[:1])


class _Fixed:
    """A model answering every user with the same rank, recording whom it was asked about."""

    def __init__(self, rank):
        self.rank_value = rank
        self.asked = []

    def rank(self, histories, targets):
        self.asked.append([list(h) for h in histories])
        return np.full(len(targets), self.rank_value), {"unanswered": 0}


def test_run_adds_the_model_row_with_paired_tests_on_the_same_users():
    rng = np.random.default_rng(1)  # random walks over 200 items: no baseline is near perfect
    seqs = Sequences(
        [f"u{u}" for u in range(300)],
        [[f"t{i}" for i in rng.choice(200, size=6, replace=False)] for _ in range(300)],
    )
    split = leave_last_out(seqs)
    perfect = _Fixed(0)
    results = run(
        split, n_bootstrap=200, als_factors=8, log=lambda m: None, model=perfect, max_users=80
    )
    rows = results["per_user"]["rows"]
    assert results["scored_users"] == 80 == len(set(rows)) and results["users"] == 300
    assert perfect.asked[-1] == [split.test_history(u) for u in rows]  # validation, then test
    assert perfect.asked[0] == [split.train[u] for u in rows]
    ours = results["systems"]["text2tracks"]
    assert ours["test"]["recall@10"] == 1.0 and ours["test"]["ndcg@5"] == 1.0
    for name in ("popularity", "item_knn", "als_fold_in"):
        ranks = np.array(results["per_user"]["test_ranks"][name])
        assert ranks.shape == (80,)
        assert results["systems"][name]["test"]["recall@10"] == pytest.approx(np.mean(ranks < 10))
    for other in ("item_knn", "als_fold_in"):
        test = ours["paired"][other]["recall@10"]
        baseline = results["systems"][other]["test"]["recall@10"]
        assert test["diff"] == pytest.approx(1.0 - baseline) and test["p_value"] < 0.05
    assert "text2tracks - item_knn (paired bootstrap)" in format_table(results)

    hopeless = run(split, n_bootstrap=200, als_factors=8, log=lambda m: None, model=_Fixed(10))
    paired = hopeless["systems"]["text2tracks"]["paired"]["item_knn"]["ndcg@10"]
    assert paired["diff"] < 0 and hopeless["scored_users"] == 300
    for stages in (("validation",), ("test", "train")):
        with pytest.raises(ValueError, match="model_stages"):
            run(split, n_bootstrap=10, model=_Fixed(0), model_stages=stages)
    with pytest.raises(ValueError, match="max_users"):
        run(split, n_bootstrap=10, max_users=0)


# ------------------------------------------------------------------ the command, end to end


def test_a_tiny_trained_model_beats_popularity_and_rescoring_checks_the_split(tmp_path):
    """--train-minutes builds and trains OUT/artifact on the training histories (a few hundred
    steps of a tiny T5); it finds the next item of a cycle far more often than popularity.
    Rescoring with --model-artifact gives the same ranks; on another split it is refused."""
    sequences = tmp_path / "seq.jsonl"
    seqs = _cyclic(200)
    sequences.write_text(
        "".join(
            json.dumps({"user": u, "items": i}) + "\n"
            for u, i in zip(seqs.users, seqs.items, strict=True)
        )
    )
    out = tmp_path / "run"
    common = ["--sequences", str(sequences), "--n-bootstrap", "100", "--num-threads", "1"]
    assert main([*common, "--out", str(out), "--max-users", "120", "--train-minutes", "5",
                 "--build-flags", TINY_BUILD, "--train-flags", TINY_MODEL]) == 0  # fmt: skip
    results = json.loads((out / "sequential.json").read_text())
    ours = results["systems"]["text2tracks"]
    assert ours["setting"]["steps"] == 300 and ours["setting"]["max_seed_tracks"] == 4
    # histories of 5 to 7 items: the 4 most recent are read, the rest excluded, no warning
    assert ours["notes"]["test"]["unanswered"] == 0 and ours["notes"]["test"]["api_warnings"] == {}
    popularity = results["systems"]["popularity"]["test"]["recall@10"]
    assert ours["test"]["recall@10"] >= 0.9 > popularity + 0.3
    assert ours["test"]["ndcg@10"] > results["systems"]["popularity"]["test"]["ndcg@10"] + 0.3
    assert set(ours["paired"]) == {"item_knn", "als_fold_in"}
    assert (out / "artifact" / SPLIT_FILE).is_file()

    again = tmp_path / "again"
    assert main([*common, "--out", str(again), "--max-users", "120", "--no-model-validation",
                 "--model-artifact", str(out / "artifact")]) == 0  # fmt: skip
    rescored = json.loads((again / "sequential.json").read_text())
    assert "validation" not in rescored["systems"]["text2tracks"]
    ranks = rescored["per_user"]["test_ranks"]["text2tracks"]
    assert ranks == results["per_user"]["test_ranks"]["text2tracks"]
    with pytest.raises(SplitMismatchError):
        main([*common, "--out", str(again), "--min-length", "7",
              "--model-artifact", str(out / "artifact")])  # fmt: skip
