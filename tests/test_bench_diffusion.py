"""The diffusion benchmark's evaluation functions on synthetic data whose answer is known."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from eval.bench_diffusion import (
    DiffusionBenchConfig,
    build_parser,
    format_report,
    merge_into_results,
    negative_share,
    seed_similarity,
    select_negative_pairs,
    select_seed_playlists,
    target_check,
    title_matcher,
    title_words,
)
from eval.bench_diffusion_report import plot_inversion, plot_negative


def test_title_words_normalise_and_drop_stopwords_and_numbers():
    assert title_words("Songs for the RAINY  Days 2000s 99") == ["rainy", "2000s"]
    assert title_matcher("chill").search("late night chill") is not None
    assert title_matcher("chill").search("chiller") is None


def _titled_world():
    """Two item blocks: 'party' playlists hold a few christmas items, 'worship' ones hold none."""
    rng = np.random.default_rng(0)
    christmas, party, worship = np.arange(0, 20), np.arange(20, 40), np.arange(40, 60)
    titles, items = [], []
    for i in range(12):
        titles.append(f"christmas {i}")
        items.append(rng.choice(christmas, 8, replace=False))
        titles.append(f"Party Hits {i}")
        items.append(np.concatenate([rng.choice(party, 6, replace=False), christmas[:2]]))
        titles.append(f"worship {i}")
        items.append(rng.choice(worship, 8, replace=False))
    test_titles = ["party party", "sunday worship", "christmas party", "summer party"]
    return titles, items, test_titles, christmas


def test_negative_pairs_pick_the_contaminated_positive_and_exclude_matching_prompts():
    titles, items, test_titles, christmas = _titled_world()

    def pairs_of(**options):
        return select_negative_pairs(
            titles, items, test_titles, n_pairs=3, prompts_per_pair=10, min_playlists=5, **options
        )

    pairs = pairs_of()
    first = pairs[0]
    assert (first["positive"], first["negative"]) == ("party", "christmas")
    # the positive prompts match "party" but not "christmas"
    assert first["prompt_indices"] == [0, 3]
    # by default the share counts every track of the negative's playlists
    assert set(first["negative_items"].tolist()) == set(christmas.tolist())
    assert first["n_union_items"] == len(christmas)
    assert 0 < first["contamination"] < 1
    # ... or its own tracks: not the two that the party playlists hold too
    own = pairs_of(negative_set="characteristic")[0]
    assert set(own["negative_items"].tolist()) == set(christmas[2:].tolist())
    assert (own["positive"], own["contamination"]) == ("party", first["contamination"])
    # a share threshold of 1/4 takes the shared two in too (each in >= 4 of 16 playlists)
    loose = pairs_of(negative_set="characteristic", min_negative_share=0.25)[0]
    assert set(loose["negative_items"].tolist()) == set(christmas.tolist())
    with pytest.raises(ValueError, match="negative_set must be one of"):
        select_negative_pairs(titles, items, test_titles, negative_set="every")
    # words are used once; a pair needs contamination (worship playlists share nothing)
    words = [w for p in pairs for w in (p["positive"], p["negative"])]
    assert len(words) == len(set(words))
    assert all(p["contamination"] > 0 for p in pairs)
    # near-synonyms (most of the positive's tracks are the negative's) are no contrast
    capped = select_negative_pairs(
        titles, items, test_titles, n_pairs=3, min_playlists=5, max_contamination=0.2
    )
    assert ("party", "christmas") not in [(p["positive"], p["negative"]) for p in capped]


def test_seed_playlists_share_no_title_word_and_no_track():
    titles = ["rock anthems", "rock ballads", "jazz nights", "sleepy jazz", "pop party"]
    relevant = [
        np.arange(0, 8),
        np.arange(4, 12),
        np.arange(20, 28),
        np.arange(24, 32),
        np.arange(40, 48),
    ]
    pairs = select_seed_playlists(titles, relevant, n_seed_tracks=3, max_prompts=0, seed=0)
    assert len(pairs) == len(titles)
    for i, j in pairs:
        assert i != j
        assert not set(title_words(titles[i])) & set(title_words(titles[j]))
        assert not set(relevant[i].tolist()) & set(relevant[j].tolist())
    assert len(select_seed_playlists(titles, relevant, 3, max_prompts=2)) == 2


def test_shares_and_seed_similarity_against_brute_force():
    items = np.array([[1, 2, 3, -1], [4, 5, 6, 7]])
    assert negative_share(items, np.array([2, 3, 7]), k=4).tolist() == [0.5, 0.25]
    from eval.bench_diffusion_pairs import hits_through_negative

    negative = [np.array([2, 3, 7])] * 3
    three = np.array([[1, 2, 3, -1], [4, 5, 6, 7], [8, 9, 10, 11]])
    # prompt 0 is hit by 2 and 3 (both the negative's), prompt 1 by 4 and 7 (4 is not), prompt 2
    # not at all: one of the two hit prompts is hit only through the negative's tracks
    assert hits_through_negative(three, [{2, 3}, {4, 7}, {1}], negative, k=4) == 0.5
    assert hits_through_negative(three, [{1}, {4}, {0}], negative, k=4) == 0.0
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(8, 3)).astype(np.float32)
    means = rng.normal(size=(2, 3))
    got = seed_similarity(items, factors, means, k=4)
    for b in range(2):
        cos = [
            factors[i] @ means[b] / np.linalg.norm(factors[i]) / np.linalg.norm(means[b])
            for i in items[b]
            if i >= 0
        ]
        assert got[b] == pytest.approx(np.mean(cos), rel=1e-5)


def test_target_check_needs_half_the_share_and_95_percent_of_the_hits():
    def point(w, s0, s1, h0, h1):
        return {
            "w": w,
            "latent_share_without": s0,
            "latent_share_with": s1,
            "latent_hits_without": h0,
            "latent_hits_with": h1,
        }

    curve = [
        point(1, 0.4, 0.4, 0.5, 0.5),
        point(3, 0.4, 0.2, 0.5, 0.48),
        point(4, 0.4, 0.2, 0.5, 0.46),  # hits down 8%: more than the 5% allowed
        point(5, 0.4, 0.1, 0.5, 0.4),
        point(7, 0.0, 0.0, 0.5, 0.5),
    ]
    check = target_check(curve, "latent")
    assert check["met_at"] == [3]
    assert check["per_weight"][4]["share_ratio"] is None
    # the same check over another x (hybrid mode's negative_weight)
    renamed = [{"negative_weight": p.pop("w"), **p} for p in curve]
    assert target_check(renamed, "latent", "negative_weight")["met_at"] == [3]


def _report():
    system = {
        "hits@10": 0.5,
        "hits@10_ci": [0.4, 0.6],
        "recall@10": 0.1,
        "recall@10_ci": [0.05, 0.15],
        "ndcg@10": 0.2,
        "ndcg@10_ci": [0.1, 0.3],
        "mrr": 0.3,
        "mrr_ci": [0.2, 0.4],
        "coverage@10": 0.1,
    }
    inversion = {
        method: [
            {"strength": s, "seed_cosine": 1 - s, "seed_hits": 1 - s, "prompt_hits": s * scale}
            for s in (0.0, 0.5, 1.0)
        ]
        for method, scale in (("mean", 1.0), ("fold_in", 0.5))
    }
    curve = [
        {
            "w": w,
            **{
                f"{v}_{m}_{x}": 0.1 * w
                for v in ("latent", "hybrid")
                for m in ("share", "hits")
                for x in ("without", "with")
            },
        }
        for w in (1.0, 2.0)
    ]
    return {
        "systems": {"hybrid": system, "generative": {**system, "hits@10": 0.45}},
        "comparisons": {
            "hybrid vs generative": {
                "diff": 0.05,
                "ci": [0.0, 0.1],
                "p_value": 0.04,
                "n_prompts": 20,
                "relative": 0.111,
            }
        },
        "target": {"hybrid_relative_gain": 0.111, "meets_5pct": True, "gate_pays": False},
        "training": {"encoders_tried": ["seq2seq"], "encoder_chosen": "seq2seq", "summaries": {}},
        "negative_prompts": {
            "n_prompts": 4,
            "pairs": [{"positive": "party", "negative": "christmas"}],
            "curve": curve,
            "target": {
                "latent": target_check(curve, "latent"),
                "hybrid": target_check(curve, "hybrid"),
            },
        },
        "inversion": {
            "n_prompts": 3,
            "n_seed_tracks": 5,
            "prompt_only_reference": {"prompt_hits": 0.4},
            "seed_method": "mean",
            "curve": inversion["mean"],
            "curves": inversion,
        },
        "latency": {
            "ddim_steps": 20,
            "n_samples": 4,
            "batch1": {"head_ms": 2.0, "total_ms": 10.0},
            "batch64_per_prompt": {"head_ms": 0.5, "total_ms": 2.0},
            "head_share_batch1": 0.2,
            "head_share_batch64": 0.25,
        },
    }


def test_merge_keeps_existing_systems_and_report_and_plots_render(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps(
            {"systems": {"text2tracks": {"hits@10": 0.3}}, "comparisons": {}, "config": {"k": 10}}
        )
    )
    report = _report()
    merged = merge_into_results(path, report)
    on_disk = json.loads(path.read_text())
    assert on_disk == merged
    assert list(on_disk["systems"]) == ["text2tracks", "hybrid", "generative"]  # order kept
    assert "hybrid vs generative" in on_disk["comparisons"]
    assert on_disk["diffusion"]["target"]["meets_5pct"] is True
    text = format_report(report)
    assert "| hybrid |" in text and "hybrid vs generative" in text and "party" in text
    assert (
        "| mean | 1 | 0.000 | 0.000 | 1.000 |" in text
        and "| fold_in | 1 | 0.000 | 0.000 | 0.500 |" in text
    )
    assert on_disk["diffusion"]["inversion_curves"]["fold_in"][2]["prompt_hits"] == 0.5
    plot_negative(report["negative_prompts"], tmp_path / "neg.png", 10)
    plot_inversion(report["inversion"], tmp_path / "inv.png", 10)
    for name in ("neg.png", "inv.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latent_is_compared_with_the_benchmarks_bi_encoder_on_the_same_prompts(tmp_path):
    from eval.bench_diffusion import benchmark_baselines
    from eval.bench_diffusion_systems import COMPARISONS, compare_systems

    rng = np.random.default_rng(0)
    names = {name for pair in COMPARISONS for name in pair}
    per_prompt = {name: {"hits": rng.integers(0, 2, 40).astype(float)} for name in names}
    per_prompt["latent-only"]["hits"] = np.r_[np.ones(30), np.zeros(10)]
    systems = {name: {"hits@10": per_prompt[name]["hits"].mean()} for name in names}
    kept = list(range(3, 43))  # test playlists 0-2 hold no catalogue track
    biencoder = np.r_[np.ones(20), np.zeros(20)]
    (tmp_path / "per_prompt.json").write_text(
        json.dumps(
            {
                "prompt_index": kept,
                "systems": {"dense_biencoder": {"hits": biencoder.tolist()}, "title_knn": {}},
            }
        )
    )
    baselines = benchmark_baselines(tmp_path, kept)
    assert set(baselines) == {"dense_biencoder"}  # the latent's yardstick only
    config = DiffusionBenchConfig(n_bootstrap=200)
    comparisons, _ = compare_systems(systems, per_prompt, config, baselines)
    versus = comparisons["latent-only vs dense_biencoder"]
    assert versus["diff"] == pytest.approx(0.25)
    assert versus["relative"] == pytest.approx(0.75 / 0.5 - 1)
    assert versus["p_value"] < 0.05
    assert len(comparisons) == len(COMPARISONS) + 1
    # other prompts (another split, or a capped run): no comparison, rather than a wrong one
    assert benchmark_baselines(tmp_path, kept[:-1]) == {}
    assert benchmark_baselines(tmp_path / "missing", kept) == {}


def test_config_validation_and_cli_flags():
    assert DiffusionBenchConfig().grid == [1.0, 2.0, 3.0, 5.0, 7.5]
    assert DiffusionBenchConfig(encoders="bytes").encoder_list == ["bytes"]
    for bad in (
        {"budget_minutes": 0},
        {"encoders": "clip"},
        {"candidates": 5},
        {"guidance_grid": "1,-2"},
        {"strengths": "0,1.5"},
        {"max_contamination": 0},
        {"n_samples": 0},
        {"latent_k": 3},
        {"guidance_grid": "a"},
        {"mean_samples": -1},
        {"seed_methods": "mean,median"},
        {"seed_methods": "mean,mean"},
        {"seed_methods": ""},
        {"head_contrastive_targets": "knn"},
        {"head_latent_target": "als"},
        {"head_contrastive_negatives": "hard"},
        {"head_contrastive_weight": -1.0},
        {"head_teacher_own_weight": 1.5},
    ):
        with pytest.raises(ValueError):
            DiffusionBenchConfig(**bad)
    # the heads' training settings default to train-diffusion's
    from training.diffusion_config import DiffusionTrainConfig

    defaults, train = DiffusionBenchConfig(), DiffusionTrainConfig(artifact="a", playlists="p")
    assert defaults.head_contrastive_targets == train.contrastive_targets == "teacher"
    assert defaults.head_latent_target == train.latent_target == "teacher"
    assert defaults.head_contrastive_negatives == train.contrastive_negatives
    assert defaults.head_contrastive_weight == train.contrastive_weight
    assert defaults.head_teacher_own_weight == train.teacher_own_weight
    # ... and reach both models' training (the regressor learns the head's target)
    from eval.bench_diffusion_models import _train_settings

    shared = _train_settings(DiffusionBenchConfig(head_teacher_own_weight=0.5), Path("w"), "p")
    assert shared["teacher_own_weight"] == 0.5
    args = build_parser().parse_args(
        [
            "--benchmark-dir",
            "d",
            "--train",
            "t",
            "--budget-minutes",
            "3",
            "--no-progress",
            "--guidance-grid",
            "1,4",
        ]
    )
    assert args.budget_minutes == 3.0 and args.progress is False and args.guidance_grid == "1,4"
    assert args.reuse_models is False and args.mean_samples == 16
    args = build_parser().parse_args(
        ["--benchmark-dir", "d", "--train", "t", "--reuse-models", "--mean-samples", "0"]
    )
    assert args.reuse_models is True and args.mean_samples == 0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--benchmark-dir", "d", "--train", "t", "--no-such-flag"])


def test_reuse_models_needs_the_trained_models_in_the_copy_or_the_artifact(tmp_path):
    from eval.bench_diffusion_models import WORK_ARTIFACT, reuse_models

    artifact, out = tmp_path / "artifact", tmp_path / "out"
    (artifact / "diffusion").mkdir(parents=True)
    with pytest.raises(ValueError, match="latent_regressor"):
        reuse_models(artifact, out)
    # a run before the working copy existed trained into the artifact: it is read from there
    (artifact / "latent_regressor").mkdir()
    (artifact / "diffusion" / "config.json").write_text(json.dumps({"encoder": {"kind": "bytes"}}))
    found = reuse_models(artifact, out)
    assert found["artifact"] == artifact and found["best"] == "bytes"
    # the working copy, when it holds both, comes first
    for name in ("diffusion", "latent_regressor"):
        (out / WORK_ARTIFACT / name).mkdir(parents=True)
    (out / WORK_ARTIFACT / "diffusion" / "config.json").write_text("{}")
    assert reuse_models(artifact, out)["artifact"] == out / WORK_ARTIFACT


def test_the_working_copy_leaves_the_artifact_alone(tmp_path):
    from eval.bench_diffusion_models import prepare_work_artifact

    source = tmp_path / "artifact"
    (source / "cf").mkdir(parents=True)
    (source / "cf" / "item_factors.npy").write_bytes(b"factors")
    (source / "text2tracks.json").write_text("{}")
    (source / ".checkpoints-diffusion").mkdir()
    before = _file_hashes(source)
    work = prepare_work_artifact(source, tmp_path / "out" / "work")
    assert sorted(p.name for p in work.iterdir()) == ["cf", "text2tracks.json"]
    (work / "text2tracks.json").unlink()  # what an atomic rewrite does first
    (work / "text2tracks.json").write_text('{"changed": true}')
    assert _file_hashes(source) == before
    with pytest.raises(ValueError):
        prepare_work_artifact(source, source)


def _file_hashes(folder) -> dict[str, str]:
    """Every file under ``folder`` (relative path) -> its sha256."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


TINY_CONFIG = DiffusionBenchConfig(
    budget_minutes=0.08,
    encoders="seq2seq",
    hidden=32,
    n_blocks=1,
    candidates=10,
    beams=10,
    n_samples=2,
    mean_samples=3,
    latent_k=20,
    guidance_grid="1,3",
    negative_weights="0,4",
    negative_contrasts="1",
    n_negative_pairs=2,
    prompts_per_pair=3,
    min_title_playlists=2,
    strengths="0,1",
    n_seed_tracks=2,
    max_inversion_prompts=4,
    max_validation_prompts=10,
    latency_prompts=2,
    n_bootstrap=20,
    num_threads=1,
    progress=False,
    seed_methods="fold_in,mean",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The whole benchmark on a tiny artifact (training takes a few seconds): the artifact, its
    file hashes before the run, the run folder, the report, and ``rerun(config)``."""
    import torch
    from tiny_artifact import build_tiny_artifact

    from eval.bench_diffusion import run_diffusion_benchmark
    from eval.metrics import relevant_items
    from semantic_ids.interactions import ItemVocab
    from semantic_ids.playlists import read_playlists, split_playlists
    from text2tracks.artifacts import read_json

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bench_diffusion")
    artifact, train_path = build_tiny_artifact(root), root / "demo.jsonl"
    info = read_json(artifact / "cf" / "split.json", "split")
    split = split_playlists(
        read_playlists(train_path).playlists,
        validation_fraction=info["validation_fraction"],
        test_fraction=info["test_fraction"],
        seed=info["seed"],
    )
    kept, relevant, n_skipped = relevant_items(split.test, ItemVocab.load(artifact / "cf"))
    prompts = [split.test[i].prompt for i in kept]
    before = _file_hashes(artifact)

    def rerun(config):
        return run_diffusion_benchmark(
            artifact,
            train_path,
            root / "out",
            prompts,
            relevant,
            split.validation,
            split.train,
            config=config,
            n_skipped=n_skipped,
        )

    report = rerun(TINY_CONFIG)
    return SimpleNamespace(
        artifact=artifact,
        before=before,
        out=root / "out",
        prompts=prompts,
        report=report,
        rerun=rerun,
    )


def test_the_benchmark_scores_every_system_and_writes_its_files(tiny_run):
    report = tiny_run.report
    assert set(report["systems"]) == {
        "generative",
        "generative-beam-order",
        "latent-only",
        "latent-regressor",
        "hybrid",
        "hybrid-gated",
        "hybrid-mixture",
        "hybrid-regressor",
        "latent-only-mean",
    }
    for system in report["systems"].values():
        # recall@10 <= hits@10 per prompt (a prompt recalls nothing without a hit)
        assert system["recall@10"] <= system["hits@10"]
        assert system["n_prompts"] == len(tiny_run.prompts)
    # generative mode as the API answers (spread over first codes), and the beam's own order
    from text2tracks.fusion import DIVERSITY_GRID
    from text2tracks.modeling import DEFAULT_DIVERSITY

    assert report["systems"]["generative"]["diversity"] == DEFAULT_DIVERSITY
    assert report["systems"]["generative-beam-order"]["diversity"] == 0.0
    # the fused list's penalty is fitted with the blend, among the grid
    hybrid = report["systems"]["hybrid"]
    assert hybrid["diversity"] in DIVERSITY_GRID
    assert set(hybrid["diversity_validation"]) == {str(d) for d in DIVERSITY_GRID}
    on_disk = json.loads((tiny_run.out / "diffusion.json").read_text())
    assert on_disk["inversion"]["curves"]["mean"] == report["inversion"]["curves"]["mean"]
    assert on_disk["inversion"]["joint"]["target"] == report["inversion"]["joint"]["target"]
    for name in ("negative_prompts.png", "inversion.png", "joint_at_k.png"):
        assert (tiny_run.out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hybrid_negatives_are_measured_per_negative_weight(tiny_run):
    negatives = tiny_run.report["negative_prompts"]
    rows = negatives["negative_weight_curve"]
    assert negatives["negative_set"] == "union"
    assert all(p["n_negative_items"] == p["n_union_items"] for p in negatives["pairs"])
    assert [r["negative_weight"] for r in rows] == [0.0, 4.0]
    # the same latents at every weight: only the demotion changes, never the answer without one
    assert len({(r["hybrid_share_without"], r["hybrid_hits_without"]) for r in rows}) == 1
    # demotion acts on resemblance to the negative's latent, so the list resembles it less
    # (the union's share is the benchmark's proxy for the negative, and may move either way)
    key = "hybrid_negative_similarity_with"
    assert rows[1][key] < rows[0][key]
    assert (
        rows[0]["hybrid_negative_similarity_without"]
        == rows[1]["hybrid_negative_similarity_without"]
    )
    checked = negatives["target"]["hybrid_by_negative_weight"]["per_weight"]
    assert [r["negative_weight"] for r in checked] == [0.0, 4.0]
    assert negatives["default_negative_weight"] == 1.0  # restored after the sweep
    # the negative also guiding the beam's view: one point, the same list without a negative
    [contrast] = negatives["negative_contrast_curve"]
    assert contrast["negative_contrast"] == 1.0
    assert contrast["hybrid_share_without"] == rows[0]["hybrid_share_without"]
    assert "hybrid_by_negative_contrast" in negatives["target"]
    assert 0.0 <= negatives["hybrid_hits_through_negative"] <= 1.0


def test_the_edits_get_joint_at_k_beside_their_yardsticks(tiny_run):
    inversion = tiny_run.report["inversion"]
    joint = inversion["joint"]
    assert joint["ks"] == [10] and joint["n_neighbours"] == TINY_CONFIG.joint_neighbours
    assert 1 <= joint["n_prompts"] <= inversion["n_prompts"]
    assert set(joint["yardsticks"]) == {"seed_mean", "prompt_only", "hybrid_prompt_only"}
    assert [r["strength"] for r in joint["hybrid_curve"]] == [0.0, 1.0]
    points = [r for c in inversion["curves"].values() for r in c] + joint["hybrid_curve"]
    points += list(joint["yardsticks"].values()) + [inversion["prompt_only_reference"]]
    for r in points:
        for pattern in ("", "_cf"):
            # both conditions at once: never above either alone
            assert 0 <= r[f"joint{pattern}@10"] <= min(r[f"pattern{pattern}@10"], r["attribute@10"])
            # a share of 10 slots of the measured prompts
            assert r[f"joint{pattern}@10"] * 10 * joint["n_prompts"] == pytest.approx(
                round(r[f"joint{pattern}@10"] * 10 * joint["n_prompts"])
            )
    # the seeds' mean alone is what the API's latent mode ranks at strength 0 from their mean
    assert joint["seed_mean_matches_strength_0"] == 1.0
    for pattern in ("pattern", "pattern_cf"):
        assert set(joint["target"][pattern]) == {"fold_in", "mean", "hybrid"}
        for check in joint["target"][pattern].values():
            assert check["evaluable"] is True and isinstance(check["monotone"], bool)
    text = format_report(tiny_run.report)
    assert "Joint@K of the edits" in text and "| prompt_only alone | - |" in text
    merged = json.loads((tiny_run.out / "diffusion.json").read_text())["inversion"]["joint"]
    assert merged["yardsticks"] == joint["yardsticks"]


def test_the_inversion_curve_has_one_curve_per_seed_method(tiny_run):
    inversion = tiny_run.report["inversion"]
    assert inversion["n_prompts"] >= 1
    assert list(inversion["curves"]) == ["fold_in", "mean"]
    assert inversion["seed_method"] == "fold_in"
    assert inversion["curve"] == inversion["curves"]["fold_in"]
    assert [r["strength"] for r in inversion["curves"]["mean"]] == [0.0, 1.0]
    # a share of the inversion prompts: a whole number of them
    assert all(
        r["prompt_hits"] * inversion["n_prompts"]
        == pytest.approx(round(r["prompt_hits"] * inversion["n_prompts"]))
        for c in inversion["curves"].values()
        for r in c
    )
    assert (
        f"| fold_in | 1 | {inversion['curves']['fold_in'][1]['seed_cosine']:.3f}"
        in format_report(tiny_run.report)
    )


def test_the_fusion_goes_to_the_run_folder_and_the_models_to_a_copy(tiny_run):
    from text2tracks.hybrid import load_fusion

    report = tiny_run.report
    # the fitted fixed blend, under the first seed method, in the API's format
    fusion, settings, summary = load_fusion(tiny_run.out)
    assert settings.seed_method == "fold_in" and settings.n_samples == 2 and settings.latent_k == 20
    assert settings.beam_candidates == 10 and summary["source"] == "eval.bench_diffusion"
    assert fusion.alpha == report["systems"]["hybrid"]["alpha"]
    assert report["fusion"]["path"] == str(tiny_run.out / "fusion.json")
    # the models trained into the working copy, which holds no fusion either
    work = tiny_run.out / "diffusion_artifact"
    assert report["training"]["artifact"] == str(work)
    assert (work / "diffusion" / "model.safetensors").is_file()
    assert (work / "latent_regressor").is_dir()
    assert not (work / "diffusion" / "fusion.json").exists()
    # the head learns from the teacher, and its yardstick regressor learns the same target
    head = json.loads((work / "diffusion" / "train_config.json").read_text())["config"]
    regressor = json.loads((work / "latent_regressor" / "train_config.json").read_text())["config"]
    assert (head["contrastive_targets"], head["latent_target"]) == ("teacher", "teacher")
    assert regressor["regressor"] and regressor["latent_target"] == head["latent_target"]
    assert head["contrastive_negatives"] == TINY_CONFIG.head_contrastive_negatives


def test_the_rankings_are_the_apis(tiny_run):
    """recommend_arrays answers the first batch exactly as the benchmark ranked it, per mode."""
    parity = tiny_run.report["api_parity"]
    assert parity["n_prompts"] == min(len(tiny_run.prompts), TINY_CONFIG.batch_size)
    assert parity["generative"] is True
    assert parity["latent-only"] is True
    assert parity["hybrid"] is True


def test_the_artifact_stays_byte_identical_and_a_rerun_measures_the_same(tiny_run):
    assert _file_hashes(tiny_run.artifact) == tiny_run.before
    # --reuse-models evaluates the trained copy again: the same numbers, the artifact untouched
    again = tiny_run.rerun(replace(TINY_CONFIG, reuse_models=True, mean_samples=0))
    assert _file_hashes(tiny_run.artifact) == tiny_run.before
    assert again["training"]["encoders_tried"] == ["seq2seq"]
    assert set(again["systems"]) == set(tiny_run.report["systems"]) - {"latent-only-mean"}
    for name, system in again["systems"].items():
        assert system["hits@10"] == tiny_run.report["systems"][name]["hits@10"], name
