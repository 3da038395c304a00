"""Joint@K of the inversion edits (eval.bench_diffusion_joint) on hand-made playlists whose answer
is known, against brute-force references, and its report, plot and target check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval.bench_diffusion_joint import (
    joint_sets,
    joint_target_check,
    nearest_items,
    prompt_title_playlists,
    track_playlist_matrix,
)
from eval.bench_diffusion_pairs import title_matcher, title_words
from eval.bench_diffusion_report import format_report, merge_into_results, plot_joint
from text2tracks.data import normalize_prompt

# Twelve tracks. Prompt 0 "rainy morning" with seeds {0, 2}: the seeds' playlists (0, 1) hold
# {1, 5, 6, 7}; playlists titled "rainy" or "morning" (0, 2, 4, 5; not "brainy") hold
# {0, 1, 4, 5, 8, 9, 11}. Prompt 1 "my songs" has no content word. Prompt 2 "gym" with seed
# {8}: its playlist (2) holds {9}; the "gym" playlist holds {2, 6, 7}.
TITLES = ["Rainy Day", "gym hits", "RAINY mood", "brainy stuff", "rainy", "Morning Coffee"]
ITEMS = [[0, 1, 5], [2, 6, 7], [8, 9], [10, 3], [1, 1], [11, 4]]
PROMPTS = ["rainy morning", "my songs", "gym"]
SEEDS = [np.array([0, 2]), np.array([3]), np.array([8])]
TOPS = np.array(
    [
        [1, 5, 6, 8, 3, 11, 10, -1],
        [4, 5, 6, 7, 8, 9, 10, 11],
        [9, 6, 2, 7, 0, 1, 3, 4],
    ]
)


def _factors() -> np.ndarray:
    """Tracks 0, 2 (prompt 0's seeds), 1 and 6 point one way; the rest elsewhere, each at its
    own angle; track 7 has no factor (outside the catalogue)."""
    angles = np.linspace(0.3, 1.5, 12)
    f = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    f[[0, 2, 1, 6]] = [1.0, 0.0]
    f[7] = 0.0
    return f


def _sets(n_neighbours: int = 2):
    items = [np.asarray(i, np.int64) for i in ITEMS]
    return joint_sets(TITLES, items, PROMPTS, SEEDS, _factors(), n_neighbours)


def test_title_playlists_match_any_content_word_as_title_matcher_does():
    titles = TITLES + ["rainy-day vibes", "RAINYDAY", "the morning after", "songs"]
    prompts = ["Rainy Morning!", "my songs", "rainy rainy", "vibes"]
    matrix, words = prompt_title_playlists(prompts, titles)
    assert words == [["rainy", "morning"], [], ["rainy"], ["vibes"]]
    normalised = [normalize_prompt(t) for t in titles]
    for row, prompt in enumerate(prompts):
        expected = [
            any(title_matcher(w).search(t) for w in title_words(prompt)) for t in normalised
        ]
        assert matrix[row].toarray().ravel().astype(bool).tolist() == expected, prompt
    assert matrix[0].indices.tolist() == [0, 2, 4, 5, 6, 8]  # not "brainy", not "rainyday"


def test_track_playlist_matrix_counts_a_track_once_per_playlist():
    m = track_playlist_matrix([np.asarray(i) for i in ITEMS], 12)
    assert m.shape == (12, 6)
    assert m[1].indices.tolist() == [0, 4] and m[1].data.tolist() == [1.0, 1.0]
    assert m[7].indices.tolist() == [1] and m[3].indices.tolist() == [3]
    with pytest.raises(ValueError, match="training items"):
        track_playlist_matrix([np.array([0, 12])], 12)


def test_hand_made_pattern_attribute_and_joint_are_exact():
    sets = _sets()
    assert sets.measured.tolist() == [0, 2]
    flags = sets.flags(TOPS)
    # prompt 0: top [1, 5, 6, 8, 3, 11, 10, -]
    assert flags["pattern"][0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert flags["attribute"][0].tolist() == [1, 1, 0, 1, 0, 1, 0, 0]
    assert flags["pattern_cf"][0].tolist() == [1, 0, 1, 0, 0, 0, 0, 0]  # neighbours {1, 6}
    # prompt 2: top [9, 6, 2, 7, ...]: 9 shares the seed's playlist; 2, 6, 7 are "gym" tracks
    assert flags["pattern"][2].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert flags["attribute"][2].tolist() == [0, 1, 1, 1, 0, 0, 0, 0]
    got = sets.measure(TOPS, ks=[4, 8])
    expected = {  # (prompt 0 + prompt 2) / 2; prompt 1 has no content word
        "pattern@4": (3 / 4 + 1 / 4) / 2,
        "attribute@4": (3 / 4 + 3 / 4) / 2,
        "joint@4": (2 / 4 + 0) / 2,
        "pattern@8": (3 / 8 + 1 / 8) / 2,
        "attribute@8": (4 / 8 + 3 / 8) / 2,
        "joint@8": (2 / 8 + 0) / 2,
        "pattern_cf@4": (2 / 4 + flags["pattern_cf"][2, :4].sum() / 4) / 2,
        "joint_cf@4": (1 / 4 + 0) / 2,
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    with pytest.raises(ValueError, match="cannot give K"):
        sets.measure(TOPS[:, :4], ks=[10])
    with pytest.raises(ValueError, match="rankings for"):
        sets.flags(TOPS[:2])


def test_co_occurrence_agrees_with_brute_force_on_random_playlists():
    rng = np.random.default_rng(0)
    n_items = 40
    items = [rng.choice(n_items, rng.integers(0, 6), replace=True) for _ in range(30)]
    titles = [f"t{i}" for i in range(30)]
    seeds = [rng.choice(n_items, 3, replace=False) for _ in range(5)]
    tops = rng.integers(-1, n_items, size=(5, 10))
    factors = rng.normal(size=(n_items, 4)).astype(np.float32)
    sets = joint_sets(titles, items, ["some words"] * 5, seeds, factors, 7)
    flags = sets.flags(tops)["pattern"]
    for b in range(5):
        for j, t in enumerate(tops[b]):
            shared = any(t in p and set(seeds[b]) & set(p.tolist()) for p in items)
            assert flags[b, j] == (t >= 0 and shared)


def test_nearest_items_agree_with_brute_force_and_skip_seeds_and_missing_factors():
    f = _factors()
    means = np.stack([f[s].mean(0) for s in SEEDS])
    for cosine in (True, False):
        got = nearest_items(f, means, 20, SEEDS, cosine=cosine, chunk=2)
        for b, seeds in enumerate(SEEDS):
            scores = f @ means[b]
            if cosine:
                scores = scores / (np.linalg.norm(f, axis=1) * np.linalg.norm(means[b]) + 1e-30)
            allowed = [i for i in range(12) if i not in seeds and i != 7]
            ranked = sorted(allowed, key=lambda i: -scores[i])
            row = got[b][got[b] >= 0].tolist()
            assert sorted(row) == sorted(allowed)  # padded with -1 past the catalogue
            assert np.all(np.diff(scores[row]) <= 1e-6)  # best first
            assert scores[row[0]] == pytest.approx(scores[ranked[0]])
    assert set(_sets().neighbourhood[0].tolist()) == {1, 6}


def _curve(joint, pattern, attribute):
    return [
        {"strength": s, "joint@10": j, "pattern@10": p, "attribute@10": a}
        for s, j, p, a in zip((0.0, 0.25, 0.5, 0.75, 1.0), joint, pattern, attribute, strict=True)
    ]


YARDSTICKS = {"seed_mean": {"joint@10": 0.10}, "prompt_only": {"joint@10": 0.15}}


def test_target_check_finds_the_strengths_above_both_yardsticks_and_a_monotone_curve():
    curve = _curve(
        joint=[0.05, 0.12, 0.20, 0.16, 0.08],
        pattern=[0.9, 0.7, 0.5, 0.5, 0.2],
        attribute=[0.1, 0.2, 0.4, 0.6, 0.6],
    )
    check = joint_target_check(curve[::-1], YARDSTICKS)  # order of the points does not matter
    assert check["evaluable"] is True
    assert check["joint_above_yardsticks_at"] == [0.5, 0.75]
    assert check["joint_above_yardsticks"] is True
    assert check["attribute_rises"] and check["pattern_falls"] and check["monotone"]
    assert check["joint_unimodal"] is True and check["joint_peak_strength"] == 0.5


def test_target_check_flags_non_monotone_and_non_unimodal_curves():
    bumpy = _curve(
        joint=[0.05, 0.20, 0.08, 0.18, 0.02],  # two peaks
        pattern=[0.9, 0.7, 0.8, 0.5, 0.2],  # rises at 0.5
        attribute=[0.1, 0.3, 0.2, 0.6, 0.7],  # falls at 0.5
    )
    check = joint_target_check(bumpy, YARDSTICKS)
    assert check["attribute_rises"] is False and check["pattern_falls"] is False
    assert check["monotone"] is False and check["joint_unimodal"] is False
    # above the seeds' mean but never above the prompt alone: not met
    low = _curve([0.12, 0.13, 0.14, 0.12, 0.11], [0.5] * 5, [0.5] * 5)
    low_check = joint_target_check(low, YARDSTICKS)
    assert low_check["joint_above_yardsticks_at"] == [] and not low_check["joint_above_yardsticks"]
    assert low_check["monotone"] is True  # flat is monotone
    missing = joint_target_check(_curve([None] * 5, [0.5] * 5, [0.5] * 5), YARDSTICKS)
    assert missing["evaluable"] is False
    with pytest.raises(ValueError, match="pattern"):
        joint_target_check(low, YARDSTICKS, pattern="_other")


def _report_with_joint():
    sets = _sets()
    point = sets.measure(np.pad(TOPS, ((0, 0), (0, 2)), constant_values=-1), ks=[10])
    curve = [
        {"strength": s, "seed_cosine": 0.5, "seed_hits": 0.1, "prompt_hits": 0.2} | point
        for s in (0.0, 1.0)
    ]
    yardsticks = {"seed_mean": point, "prompt_only": point}
    target = {
        name: {"mean": joint_target_check(curve, yardsticks, 10, pattern)}
        for name, pattern in (("pattern", ""), ("pattern_cf", "_cf"))
    }
    joint = {
        "ks": [10],
        "n_prompts": 2,
        "n_neighbours": 2,
        "definitions": {},
        "yardsticks": yardsticks,
        "seed_mean_matches_strength_0": 1.0,
        "hybrid_curve": curve,
        "target": target,
    }
    return {
        "n_prompts": 3,
        "n_seed_tracks": 2,
        "curve": curve,
        "curves": {"mean": curve},
        "joint": joint,
    }


def test_joint_rows_plot_and_record(tmp_path):
    from test_bench_diffusion import _report

    report = _report() | {"inversion": _report_with_joint()}
    text = format_report(report)
    point = report["inversion"]["curve"][0]
    assert "| joint@10 | pattern@10 | attribute@10 | joint_cf@10 | pattern_cf@10 |" in text
    assert f"| mean | 1 | {point['joint@10']:.3f} | {point['pattern@10']:.3f} |" in text
    assert "| hybrid | 0 |" in text and "| seed_mean alone | - |" in text
    assert "pattern, mean: Joint@10 above both yardsticks at strengths []" in text
    plot_joint(report["inversion"], tmp_path / "joint_at_k.png", 10)
    assert (tmp_path / "joint_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"systems": {}, "comparisons": {}}))
    record = merge_into_results(path, report)["diffusion"]["joint_at_k"]
    assert record["yardsticks"]["seed_mean"]["joint@10"] == pytest.approx(point["joint@10"])
    assert record["target"]["pattern"]["mean"]["evaluable"] is True
