"""Hybrid mode's first-code diversity: the fused list's top spread over first ID codes as the
generative list is, the penalty fitted with the blend, saved with it, and used by the API."""

from __future__ import annotations

import json

import numpy as np
import pytest

from text2tracks.rerank import (
    FixedBlendFusion,
    GatedFusion,
    fusion_from_dict,
    per_prompt_metric,
    pool_candidates,
    prompt_features,
    top_k,
    with_groups,
)


def _crowded(n: int = 60, seed: int = 0):
    """Both views put three items of one first code on top (group 0); the relevant item is the
    best of another first code (group 1), fourth in both views. Hits@3 needs the spread."""
    rng = np.random.default_rng(seed)
    items, beam, lat, relevant = [], [], [], []
    for i in range(n):
        base = 10 * i
        order = base + np.arange(6)
        items.append(order)
        beam.append(-np.arange(6.0) * 0.1 - rng.random() * 0.01)
        lat.append(1.0 - np.arange(6.0) * 0.05)
        relevant.append({int(base + 3)})
    items = np.array(items)
    cands = pool_candidates(items, np.array(beam, np.float32), items, np.array(lat, np.float32))
    item_groups = np.zeros(10 * n, dtype=np.int64)
    item_groups[(items[:, 3:]).ravel()] = np.tile([1, 2, 2], n)
    return cands, relevant, item_groups


def test_top_k_spreads_its_top_over_first_codes_as_diversify_does():
    cands, relevant, groups = _crowded()
    cands = with_groups(cands, groups)
    scores = np.where(cands.items >= 0, cands.generative, -np.inf)
    plain, _ = top_k(cands, scores, 3)
    spread, spread_scores = top_k(cands, scores, 3, diversity=1.0)
    assert per_prompt_metric(plain, relevant, "hits", 3).mean() == 0
    # 0 (group 0), then 3 (group 1: -0.3 beats 1's -0.1 - 1), then 4 (group 2: -0.4 beats
    # 1's -1.1)
    assert spread[0].tolist() == [0, 3, 4]
    assert per_prompt_metric(spread, relevant, "hits", 3).mean() == 1
    assert (np.diff(spread_scores, axis=1) <= 1e-9).all()
    # exclusions still hold, and the padding of a short list too
    excluded, _ = top_k(cands, scores, 8, exclude=[{3}] * len(cands), diversity=1.0)
    assert 3 not in excluded[0].tolist() and excluded[0, -3:].tolist() == [-1, -1, -1]


def test_a_diversifying_fusion_refuses_candidates_without_groups():
    cands, _, _ = _crowded()
    with pytest.raises(ValueError, match="carry no groups; gather them with item_groups"):
        FixedBlendFusion(0.5, diversity=0.5).fuse(cands, k=3)


def test_the_fit_picks_the_penalty_that_pays_and_saves_it():
    cands, relevant, groups = _crowded()
    # without groups nothing can be spread: the penalty stays 0
    assert FixedBlendFusion().fit(cands, relevant, metric="hits", k=3).diversity == 0.0
    cands = with_groups(cands, groups)
    fixed = FixedBlendFusion().fit(cands, relevant, metric="hits", k=3)
    assert fixed.diversity > 0 and fixed.diversity_scores_[0.0] == 0.0
    assert fixed.diversity_scores_[fixed.diversity] == 1.0
    assert per_prompt_metric(fixed.fuse(cands, k=3)[0], relevant, "hits", 3).mean() == 1.0
    again = fusion_from_dict(json.loads(json.dumps(fixed.to_dict())))
    assert again.diversity == fixed.diversity
    np.testing.assert_array_equal(again.fuse(cands, k=3)[0], fixed.fuse(cands, k=3)[0])
    gate = GatedFusion().fit(cands, relevant, prompt_features(cands), metric="hits", k=3)
    assert gate.diversity == fixed.diversity
    assert fusion_from_dict(gate.to_dict()).diversity == gate.diversity
    # a file from before the penalty existed reads as 0
    old = {k: v for k, v in fixed.to_dict().items() if k != "diversity"}
    assert fusion_from_dict(old).diversity == 0.0
    with pytest.raises(ValueError, match="diversity must be a finite number >= 0"):
        FixedBlendFusion(0.5, diversity=-1.0)


def test_the_api_hybrid_mode_spreads_its_list_with_the_fusions_penalty(tmp_path):
    from tiny_artifact import add_tiny_diffusion, build_tiny_artifact

    from text2tracks import Text2Tracks
    from text2tracks.hybrid import default_fusion

    artifact = add_tiny_diffusion(build_tiny_artifact(tmp_path), steps=50)
    rec = Text2Tracks.from_pretrained(artifact, device="cpu")
    prompts = ["party", "sad jazz for a rainy day", "workout hip hop"]
    first = rec.trie.item_nodes[0]

    def first_codes(penalty: float) -> list[list[int]]:
        rec.fusion = FixedBlendFusion(0.95, "zscore", penalty)
        ids = rec.recommend_arrays(prompts, k=6, mode="hybrid", seed=0)[0]
        return [[int(first[rec.catalog.index_of(t)]) for t in row] for row in ids]

    crowded, spread = first_codes(0.0), first_codes(100.0)
    # a huge penalty takes one candidate per first code before any second one
    for row_c, row_s in zip(crowded, spread, strict=True):
        distinct = len(set(row_s))
        assert distinct >= len(set(row_c))
        assert len(set(row_s[:distinct])) == distinct
    assert sum(len(set(r)) for r in spread) > sum(len(set(r)) for r in crowded)
    assert default_fusion().diversity > 0
