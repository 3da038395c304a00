"""The latent-only continuation benchmark (:mod:`eval.continuation_latent`) on a fake recommender
whose answers are known: items on two axes, a seeded "head" that answers the mean of its seeds
and a plain one that answers by title."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from eval.continuation import CATEGORIES, make_tasks, summarise
from eval.continuation_latent import SYSTEMS, evaluate, rank_latents
from semantic_ids.playlists import Playlist
from text2tracks.hybrid import HybridSettings
from text2tracks.latent_search import build_index

N = 20  # items 0..9 on axis 0 ("a"), 10..19 on axis 1 ("b")
FACTORS = np.zeros((N, 2), np.float32)
FACTORS[:10, 0] = np.linspace(1.0, 2.0, 10)
FACTORS[10:, 1] = np.linspace(1.0, 2.0, 10)
IDS = [f"t{i}" for i in range(N)]


@dataclass
class _Catalog:
    item_ids: list


class _Fake:
    def __init__(self, reads_seeds: bool) -> None:
        self.catalog = _Catalog(IDS)
        self.item_factors = FACTORS
        self.hybrid_settings = HybridSettings()
        self.head_reads_seeds = reads_seeds

    def latent_index(self):
        return FACTORS, build_index(FACTORS)

    def sample_latents(self, texts, seed_tracks=None, batch_size=32):
        out = []
        for i, text in enumerate(texts):
            seeds = None if seed_tracks is None else seed_tracks[i]
            if seeds:
                out.append(FACTORS[[IDS.index(t) for t in seeds]].mean(0))
            else:
                out.append(np.array([1.0, 0.0] if text == "a" else [0.0, 1.0], np.float32))
        return np.stack(out)[:, None, :]


def test_rank_latents_never_returns_seeds():
    ranked = rank_latents(_Fake(True), FACTORS[[9]][None], [np.array([9, 8])], k=5)
    assert ranked == [["t7", "t6", "t5", "t4", "t3"]]


def test_every_system_is_scored_where_it_applies():
    # Playlists titled "b" whose tracks are the a-axis items: the seeds say more than the title.
    playlists = [Playlist(str(p), "b", IDS[:10]) for p in range(4)]
    wanted = {"title_only", "title_first5", "first5"}
    tasks = make_tasks(
        playlists, {t: i for i, t in enumerate(IDS)}, 0, [c for c in CATEGORIES if c.name in wanted]
    )
    evaluated = evaluate(_Fake(True), _Fake(False), tasks, k=10, batch=2, log=lambda _: None)
    assert set(evaluated["title_only"]["per_prompt"]) == {"latent_seeded_text"}
    assert set(evaluated["title_first5"]["per_prompt"]) == set(SYSTEMS)
    assert "latent_seeded_text" not in evaluated["first5"]["per_prompt"]
    first5 = evaluated["title_first5"]["per_prompt"]
    assert first5["latent_seeded"]["r_precision"].mean() == pytest.approx(1.0)
    assert first5["seed_mean"]["r_precision"].mean() == pytest.approx(1.0)
    assert first5["latent_plain"]["r_precision"].mean() == pytest.approx(0.0)
    assert evaluated["title_first5"]["notes"]["seed_mean"] == {"unanswered": 0}
    summary = summarise(evaluated, n_bootstrap=20)
    assert summary["overall"]["latent_seeded"]["categories"] == 2


def test_prompts_a_row_cannot_answer_are_misses_and_counted():
    # seeds outside the catalogue and no title: only latent_plain (the hidden title) answers
    playlists = [Playlist("0", "a", tuple(f"x{i}" for i in range(5)) + tuple(IDS[:5]))]
    first5 = [c for c in CATEGORIES if c.name == "first5"]
    tasks = make_tasks(playlists, {t: i for i, t in enumerate(IDS)}, 0, first5)
    evaluated = evaluate(_Fake(True), _Fake(False), tasks, k=10, batch=2, log=lambda _: None)
    notes, per_prompt = evaluated["first5"]["notes"], evaluated["first5"]["per_prompt"]
    assert notes["latent_seeded"] == notes["seed_mean"] == {"unanswered": 1}
    assert notes["latent_plain"] == {"unanswered": 0}
    assert per_prompt["latent_seeded"]["clicks"][0] == 51
    assert per_prompt["latent_plain"]["hits@10"][0] == 1.0
