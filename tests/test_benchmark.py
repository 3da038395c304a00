"""End-to-end test of eval.benchmark on tiny demo data: every output, and a paired comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval import benchmark, fusion_headroom
from eval.compare_runs import compare
from semantic_ids.demo import write_demo_jsonl
from tests.tiny_artifact import TINY_MODEL_FLAGS
from text2tracks.candidate_rerank import hybrid_fusion_from_dict


def benchmark_argv(playlists, out) -> list[str]:
    return [
        "--train",
        str(playlists),
        "--out",
        str(out),
        "--budget-minutes",
        "1",
        "--no-ablations",
        "--baselines",
        "popularity,title_knn",
        "--min-count",
        "1",
        "--levels",
        "2",
        "--codebook-size",
        "8",
        "--latency-repeats",
        "2",
        "--n-bootstrap",
        "50",
        "--hits-curve-k",
        "30",
        # a tiny model for a few steps; the recommended recipe otherwise (teacher, subword)
        *TINY_MODEL_FLAGS,
        "--max-steps",
        "30",
        "--eval-every",
        "0",
        "--num-threads",
        "1",
        "--no-progress",
    ]


@pytest.mark.slow
def test_benchmark_writes_results_per_prompt_and_report(tmp_path, monkeypatch):
    playlists = write_demo_jsonl(tmp_path / "demo.jsonl", n_tracks=200, n_playlists=300, seed=0)
    out = tmp_path / "bench"
    code = benchmark.main(benchmark_argv(playlists, out))
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    # the default ranking diversifies the beam; the beam's own order is scored beside it
    assert set(results["systems"]) == {
        "popularity",
        "title_knn",
        "text2tracks",
        "text2tracks-beam-order",
        "text2tracks-hybrid",  # the beam's and title kNN's candidates, re-ranked
    }
    hybrid = results["systems"]["text2tracks-hybrid"]
    assert hybrid["views"] == ["beam", "title_knn"]
    assert hybrid["fit_prompts"] > 0 and hybrid["penalty"] in (0.0, 0.5, 1.0, 1.5)
    # the fusion with the best validation Hits@10 (ties: NDCG@10) is kept and saved
    hits, ndcg = hybrid["validation_hits"], hybrid["validation_ndcg"]
    assert set(hits) == {"candidate_reranker", "list_interleave", "score_mixture"}
    best = max(hits.values())
    assert hits[hybrid["fusion"]] == best
    assert ndcg[hybrid["fusion"]] == max(ndcg[n] for n in hits if hits[n] == best)
    saved = hybrid_fusion_from_dict(json.loads((out / "hybrid_reranker.json").read_text()))
    assert saved.to_dict()["type"] == hybrid["fusion"]
    assert "text2tracks-hybrid vs title_knn" in results["comparisons"]
    assert results["systems"]["text2tracks-beam-order"]["diversity"] == 0.0
    assert results["systems"]["text2tracks"]["steps"] == 30
    assert "text2tracks vs title_knn" in results["comparisons"]
    per_prompt = json.loads((out / "per_prompt.json").read_text())
    n = results["split"]["test_prompts_evaluated"]
    assert len(per_prompt["prompt_index"]) == n
    for name, values in per_prompt["systems"].items():
        assert len(values["hits"]) == len(values["first_hit_rank"]) == n
        # a hit at 10 is a first relevant item at rank 1..10
        assert [h == 1.0 for h in values["hits"]] == [
            0 < r <= 10 for r in values["first_hit_rank"]
        ], name
    assert per_prompt["rank_depth"]["title_knn"] == 30
    assert (out / "report.html").is_file() and (out / "results.md").is_file()
    # eval.fusion_headroom reads the folder back: its title kNN is the benchmark's, and no fit
    # on validation beats the grid's best on test
    headroom = tmp_path / "headroom.json"
    argv = ["--benchmark-dir", str(out), "--playlists", str(playlists), "--out", str(headroom)]
    assert fusion_headroom.main([*argv, "--views", "popularity"]) == 2  # ranks no items
    assert fusion_headroom.main([*argv, "--views", "exact_title", "--depth", "20", "--exact"]) == 0
    found = json.loads(headroom.read_text())
    assert found["depth"] == 20
    assert found["title_knn"] == pytest.approx(results["systems"]["title_knn"]["hits@10"])
    assert [row["view"] for row in found["rows"]] == [
        "title_knn", "exact_title", "title_knn, exact", "exact_title, exact"
    ]  # fmt: skip
    for row in found["rows"]:
        assert row["fitted"] <= row["ceiling"] + 1e-12
    r = compare(f"{out}:text2tracks", f"{out}:title_knn", n_bootstrap=100)
    assert r["diff"] == pytest.approx(
        results["systems"]["text2tracks"]["hits@10"] - results["systems"]["title_knn"]["hits@10"]
    )

    # --reuse-model scores the saved model again without training it: the same answers; and
    # when the other fusions rank nothing, the hybrid is the reranker's ranking
    import eval.hybrid_candidates as hybrid_module
    from text2tracks.candidate_rerank import ListInterleave, ScoreMixture

    class _EmptyInterleave(ListInterleave):
        def rank(self, lists, k=10):
            return np.full_like(super().rank(lists, k), -1)

    class _EmptyMixture(ScoreMixture):
        def rank(self, views, groups, k=10):
            items, scores = super().rank(views, groups, k)
            return np.full_like(items, -1), scores

    monkeypatch.setattr(hybrid_module, "ListInterleave", _EmptyInterleave)
    monkeypatch.setattr(hybrid_module, "ScoreMixture", _EmptyMixture)
    again = tmp_path / "again"
    again.mkdir()
    (again / "artifact").symlink_to(out / "artifact", target_is_directory=True)
    code = benchmark.main([*benchmark_argv(playlists, again), "--reuse-ids", "--reuse-model"])
    assert code == 0
    rescored = json.loads((again / "results.json").read_text())["systems"]
    assert rescored["text2tracks"]["reused"] is True and "steps" not in rescored["text2tracks"]
    assert rescored["text2tracks"]["hits@10"] == results["systems"]["text2tracks"]["hits@10"]
    assert rescored["text2tracks-hybrid"]["fusion"] == "candidate_reranker"
    saved = hybrid_fusion_from_dict(json.loads((again / "hybrid_reranker.json").read_text()))
    assert saved.views == ("beam", "title_knn")
    assert saved.penalty_ == rescored["text2tracks-hybrid"]["penalty"]
    no_hybrid = tmp_path / "no-hybrid"
    no_hybrid.mkdir()
    (no_hybrid / "artifact").symlink_to(out / "artifact", target_is_directory=True)
    argv = [*benchmark_argv(playlists, no_hybrid), "--reuse-ids", "--reuse-model"]
    assert benchmark.main([*argv, "--hybrid-views", ""]) == 0
    assert (
        "text2tracks-hybrid" not in json.loads((no_hybrid / "results.json").read_text())["systems"]
    )
    # --mode cf-blend scores the artifact's fitted blend, --k deep (its answer at k)
    from text2tracks.commands.fit_seed_blend import run_fit_seed_blend

    run_fit_seed_blend(out / "artifact", playlists, k=20, per_category=5, log=lambda m: None)
    assert benchmark.main([*argv, "--hybrid-views", "", "--mode", "cf-blend"]) == 0
    blended = json.loads((no_hybrid / "results.json").read_text())["systems"]["text2tracks"]
    assert (
        blended["mode"] == "cf-blend"
        and "text2tracks-beam-order"
        in json.loads((no_hybrid / "results.json").read_text())["systems"]
    )
    depth = json.loads((no_hybrid / "per_prompt.json").read_text())["rank_depth"]
    assert depth["text2tracks"] == 10 and depth["text2tracks-beam-order"] > 10


def test_hybrid_views_default_to_title_knn_when_it_runs_and_are_checked_before_training(tmp_path):
    from eval.hybrid_candidates import hybrid_views

    assert hybrid_views(None, "popularity,title_knn") == "title_knn"
    assert hybrid_views(None, "popularity") == ""  # no title kNN: no hybrid, no error
    assert hybrid_views("", "title_knn") == ""
    assert hybrid_views("title_knn,bm25", "bm25,title_knn") == "title_knn,bm25"
    with pytest.raises(ValueError, match=r"\['dense_biencoder'\] are not run as baselines"):
        hybrid_views("dense_biencoder", "title_knn")
    # the benchmark refuses before it builds or trains anything
    with pytest.raises(ValueError, match="not run as baselines"):
        benchmark.main(["--train", "missing.jsonl", "--out", str(tmp_path / "x"), "--baselines", "",
                        "--hybrid-views", "title_knn"])  # fmt: skip
    assert not (tmp_path / "x").exists()
    # a blend is fitted into an artifact: --mode cf-blend scores a reused one only
    argv = ["--train", "missing.jsonl", "--out", str(tmp_path / "y"), "--mode", "cf-blend"]
    assert benchmark.main(argv) == 2 and not (tmp_path / "y").exists()
