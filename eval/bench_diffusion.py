"""Diffusion-head benchmark: latent-only, regressor, hybrid re-ranking, negative prompts, inversion.

    python -m eval.bench_diffusion --benchmark-dir DIR --train PATH [--budget-minutes M]

Works on a finished ``python -m eval.benchmark`` output folder (``DIR/artifact`` with ``cf/``,
``semantic_ids/``, ``seq2seq/``; ``DIR/results.json`` with the split parameters). It re-creates
the benchmark's split (same test prompts, same validation playlists), trains the diffusion head
(frozen seq2seq encoder, and the byte encoder when the budget allows; the better on validation is
kept in ``DIR/artifact/diffusion``) and the plain prompt -> latent regressor with the chosen
encoder, then adds to ``DIR/results.json`` (re-read, keys added, written atomically):

* ``latent-only``: diffusion samples (several per prompt), faiss around each, pooled;
* ``latent-regressor``: the regressor's single latent, faiss;
* ``generative``: top k of the same constrained beam search that feeds the hybrid
  (``--candidates`` items per prompt), so that hybrid and generative share their decoding;
* ``hybrid``: beam + latent candidates, :class:`~text2tracks.rerank.FixedBlendFusion` fitted on
  validation prompts; ``hybrid-gated``: :class:`~text2tracks.rerank.GatedFusion`;
  ``hybrid-regressor``: the fixed blend with the regressor's latent instead of the head's.

and paired bootstrap comparisons (``hybrid vs generative`` and others). It also writes
``DIR/diffusion.json`` (everything, with the negative-prompt and inversion curves and the
sampling cost), ``DIR/negative_prompts.png`` and ``DIR/inversion.png``.

Negative prompts: pairs (positive test prompt, negative word) are chosen from the data: negative
words are frequent training-title words (a preferred list first, e.g. "christmas", "worship"),
each paired with the positive title word whose training playlists hold most tracks of the
negative's playlists (so there is something to steer away from). For each guidance weight, the
share of the top k that occurs in training playlists whose normalised titles match the negative
is measured with and without the negative prompt (same starting noise), beside Hits@k.

Inversion: each test prompt gets seed tracks from another test playlist whose title shares no
word with it; the seed latent (``seed_latent(..., method)`` for each of ``--seed-methods``:
the API's ``mean`` and the ALS ``fold_in``) is edited towards the prompt with
:meth:`~text2tracks.diffusion.DiffusionHead.edit` at each strength; the top k (seed tracks
excluded) is scored for similarity to the seeds (cosine of item factors to the seeds' mean
factor; Hits@k against the seed playlist's other tracks) and relevance to the prompt (Hits@k).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from eval.metrics import evaluate_rankings, format_table, paired_bootstrap_diff, relevant_items
from text2tracks.artifacts import (
    CATALOG_COMPONENT,
    CF_COMPONENT,
    DIFFUSION_COMPONENT,
    REGRESSOR_COMPONENT,
    SEQ2SEQ_COMPONENT,
    write_json_atomic,
)
from text2tracks.rerank import per_prompt_metric

PREFERRED_NEGATIVES = (
    "christmas",
    "worship",
    "sleep",
    "country",
    "gospel",
    "halloween",
    "kids",
    "disney",
    "classical",
    "metal",
)
PREFERRED_POSITIVES = (
    "party",
    "workout",
    "summer",
    "chill",
    "gym",
    "running",
    "road",
    "pop",
    "rap",
    "throwback",
    "vibes",
    "dance",
)
# Words that say nothing about the music: never a positive or negative word.
STOPWORDS = frozenset(
    "the and for with you your my our this that from are was not all new old best good one "
    "songs song music playlist playlists mix list tracks track stuff time day days vol volume "
    "de la el en le les los las del".split()
)
_WORD = re.compile(r"\w+")


def _log(message: str) -> None:
    print(f"[bench_diffusion {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class DiffusionBenchConfig:
    """Settings of :func:`run_diffusion_benchmark`; each field is one CLI flag (``--snake-case``).

    Attributes:
        budget_minutes: training time of all models together: the head(s) get 70% (split
            between the encoders tried), the regressor 30%.
        encoders: comma-separated encoders of the head to try, in order (``seq2seq``, ``bytes``).
        min_minutes_per_model: an extra encoder is tried only if its share is at least this.
        head_epochs, regressor_epochs: epoch caps (time usually stops training first).
        hidden, n_blocks, lr, train_batch_size: model width/depth and optimiser (both models).
        k: cut-off of the metrics. candidates: beam candidates per prompt (>= k) for the
            generative and hybrid systems; beams: beam width (at least ``candidates``).
        n_samples: diffusion samples per prompt; latent_k: faiss neighbours per sample.
        mean_samples: samples of the ``latent-only-mean`` system, whose similarities are pooled
            by their mean (the inner product with the samples' mean: an estimate of the
            conditional mean, what a regressor predicts); 0 leaves the system out.
        reuse_models: evaluate the head and regressor already in the artifact (``diffusion/``,
            ``latent_regressor/``, from an earlier run) instead of training them again.
        guidance_weight: w of the head for retrieval (0 = the head's configured default).
        guidance_grid: weights of the negative-prompt curve.
        n_negative_pairs, prompts_per_pair, min_title_playlists: negative-prompt pairs, test
            prompts per pair, and how many training titles a word needs to be considered.
        max_contamination: a pair whose positive playlists are mostly made of the negative's
            items is a near-synonym ("rap" / "hip"), not a contrast: skipped above this share.
        strengths, n_seed_tracks, max_inversion_prompts: the inversion curve.
        seed_methods: comma-separated ways of turning the seed tracks into the starting latent
            (``mean``, ``fold_in``; see :func:`text2tracks.diffusion.seed_latent`), one inversion
            curve each; the first is written into the artifact's hybrid settings.
        max_validation_prompts: validation prompts used to fit the fusions (0 = all).
        latency_prompts: prompts timed one by one for the sampling cost.
        batch_size: prompts per beam-search / sampling batch.
        n_bootstrap, seed, num_threads (0 = torch's default), progress.
    """

    budget_minutes: float = 10.0
    encoders: str = "seq2seq,bytes"
    min_minutes_per_model: float = 1.0
    head_epochs: int = 2000
    regressor_epochs: int = 200
    hidden: int = 512
    n_blocks: int = 4
    lr: float = 1e-3
    train_batch_size: int = 256
    k: int = 10
    candidates: int = 50
    beams: int = 50
    n_samples: int = 4
    mean_samples: int = 16
    latent_k: int = 100
    guidance_weight: float = 0.0
    guidance_grid: str = "1,2,3,5,7.5"
    n_negative_pairs: int = 6
    prompts_per_pair: int = 30
    min_title_playlists: int = 5
    max_contamination: float = 0.6
    strengths: str = "0,0.25,0.5,0.75,1"
    seed_methods: str = "mean,fold_in"
    n_seed_tracks: int = 5
    max_inversion_prompts: int = 200
    max_validation_prompts: int = 1000
    latency_prompts: int = 20
    batch_size: int = 32
    n_bootstrap: int = 1000
    seed: int = 0
    num_threads: int = 0
    progress: bool = True
    reuse_models: bool = False

    def __post_init__(self) -> None:
        if not self.budget_minutes > 0:
            raise ValueError(f"budget_minutes must be > 0, got {self.budget_minutes}")
        bad = [e for e in self.encoder_list if e not in ("seq2seq", "bytes")]
        if bad or not self.encoder_list:
            raise ValueError(f"encoders must list 'seq2seq' and/or 'bytes', got {self.encoders!r}")
        for name in (
            "head_epochs",
            "regressor_epochs",
            "hidden",
            "n_blocks",
            "train_batch_size",
            "k",
            "candidates",
            "beams",
            "n_samples",
            "latent_k",
            "n_negative_pairs",
            "prompts_per_pair",
            "min_title_playlists",
            "n_seed_tracks",
            "batch_size",
            "latency_prompts",
            "n_bootstrap",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in (
            "max_inversion_prompts",
            "max_validation_prompts",
            "num_threads",
            "seed",
            "mean_samples",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.candidates < self.k:
            raise ValueError(f"candidates ({self.candidates}) must be >= k ({self.k})")
        if self.latent_k < self.k:
            raise ValueError(f"latent_k ({self.latent_k}) must be >= k ({self.k})")
        if not 0 < self.max_contamination <= 1:
            raise ValueError(f"max_contamination must be in (0, 1], got {self.max_contamination}")
        if not (self.lr > 0 and self.guidance_weight >= 0 and self.min_minutes_per_model >= 0):
            raise ValueError("lr must be > 0, guidance_weight and min_minutes_per_model >= 0")
        if not self.grid or any(w <= 0 for w in self.grid):
            raise ValueError(
                f"guidance_grid must hold positive weights, got {self.guidance_grid!r}"
            )
        if not self.strength_list or any(not 0 <= s <= 1 for s in self.strength_list):
            raise ValueError(f"strengths must lie in [0, 1], got {self.strengths!r}")
        from text2tracks.hybrid import SEED_METHODS

        methods = self.seed_method_list
        if not methods or len(set(methods)) != len(methods) or set(methods) - set(SEED_METHODS):
            raise ValueError(
                f"seed_methods must list distinct methods of {SEED_METHODS}, "
                f"got {self.seed_methods!r}"
            )

    @property
    def encoder_list(self) -> list[str]:
        return [e.strip() for e in self.encoders.split(",") if e.strip()]

    @property
    def grid(self) -> list[float]:
        return [float(w) for w in _split_floats(self.guidance_grid, "guidance_grid")]

    @property
    def seed_method_list(self) -> list[str]:
        return [m.strip() for m in self.seed_methods.split(",") if m.strip()]

    @property
    def strength_list(self) -> list[float]:
        return [float(s) for s in _split_floats(self.strengths, "strengths")]


def _split_floats(text: str, name: str) -> list[float]:
    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError as err:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from err


# ------------------------------------------------------------------------------------ titles


def title_words(title: str) -> list[str]:
    """Distinct words (``\\w+``, 3+ characters, not only digits, not in :data:`STOPWORDS`) of a
    normalised title."""
    from text2tracks.data import normalize_prompt

    words = [
        w
        for w in _WORD.findall(normalize_prompt(title))
        if len(w) >= 3 and not w.isdigit() and w not in STOPWORDS
    ]
    return list(dict.fromkeys(words))


def title_matcher(word: str) -> re.Pattern:
    """The regex a normalised title must match to count as a ``word`` playlist."""
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)")


def select_negative_pairs(
    train_titles: list[str],
    train_items: list[np.ndarray],
    test_titles: list[str],
    n_pairs: int = 6,
    prompts_per_pair: int = 30,
    min_playlists: int = 5,
    max_contamination: float = 0.6,
    preferred_negatives: tuple[str, ...] = PREFERRED_NEGATIVES,
    preferred_positives: tuple[str, ...] = PREFERRED_POSITIVES,
) -> list[dict[str, Any]]:
    """Choose (positive word, negative word) pairs and their positive test prompts, from the data.

    Negative candidates: the preferred words that title at least ``min_playlists`` training
    playlists, then the most frequent training-title words. For each negative N, the positive
    word P (titling at least ``min_playlists`` training playlists and some test prompt that does
    not match N) is the one whose training playlists (not matching N) hold the largest mean share
    of items of N's playlists ("contamination": something to steer away from; preferred positives
    win ties), among those with at most ``max_contamination`` (above it the words are near-synonyms,
    e.g. "rap" / "hip"). Each word is used once; pairs with no contamination are dropped.

    Returns ``[{"positive", "negative", "prompt_indices", "contamination", "negative_items"}]``
    (``prompt_indices`` into ``test_titles``; ``negative_items`` a sorted int64 array).
    """
    from text2tracks.data import normalize_prompt

    train_norm = [normalize_prompt(t) for t in train_titles]
    test_norm = [normalize_prompt(t) for t in test_titles]
    df = Counter(w for t in train_titles for w in title_words(t))
    frequent = [w for w, c in df.most_common() if c >= min_playlists]
    negatives = [w for w in preferred_negatives if df.get(w, 0) >= min_playlists]
    negatives += [w for w in frequent if w not in negatives]
    negatives = negatives[: max(4 * n_pairs, 20)]
    test_df = Counter(w for t in test_titles for w in title_words(t))
    positives = [w for w in frequent if test_df.get(w, 0) > 0]
    positives.sort(key=lambda w: (w not in preferred_positives, -df[w]))
    positives = positives[:60]

    def matches(word: str, titles: list[str]) -> np.ndarray:
        pattern = title_matcher(word)
        return np.array([bool(pattern.search(t)) for t in titles], dtype=bool)

    words = list(dict.fromkeys(negatives + positives))
    train_match = {w: matches(w, train_norm) for w in words}
    test_match = {w: matches(w, test_norm) for w in words}
    pairs: list[dict[str, Any]] = []
    used: set[str] = set()
    for neg in negatives:
        if len(pairs) >= n_pairs:
            break
        if neg in used:
            continue
        rows = np.flatnonzero(train_match[neg])
        neg_items = np.unique(
            np.concatenate([np.asarray(train_items[i], np.int64) for i in rows])
            if rows.size
            else np.zeros(0, np.int64)
        )
        # per training playlist, the share of its items among the negative's items
        share = np.array(
            [np.isin(items, neg_items).mean() if len(items) else 0.0 for items in train_items]
        )
        best = None
        for pos in positives:
            if pos in used or neg in pos or pos in neg:  # "00s" / "2000s" are one idea
                continue
            prompts = np.flatnonzero(test_match[pos] & ~test_match[neg])
            mask = train_match[pos] & ~train_match[neg]
            if prompts.size == 0 or not mask.any():
                continue
            key = (float(share[mask].mean()), pos in preferred_positives)
            if key[0] > max_contamination:
                continue
            if best is None or key > best[0]:
                best = (key, pos, prompts)
        if best is None or best[0][0] <= 0:
            continue
        (contamination, _), pos, prompts = best
        used.update((pos, neg))
        pairs.append(
            {
                "positive": pos,
                "negative": neg,
                "prompt_indices": [int(i) for i in prompts[:prompts_per_pair]],
                "contamination": contamination,
                "negative_items": neg_items,
            }
        )
    return pairs


def select_seed_playlists(
    titles: list[str],
    relevant: list[np.ndarray],
    n_seed_tracks: int,
    max_prompts: int,
    seed: int = 0,
) -> list[tuple[int, int]]:
    """Pairs ``(prompt index, seed playlist index)`` of test playlists: the seed playlist shares no
    title word and no relevant track with the prompt's and holds more than ``n_seed_tracks``
    catalogue tracks (the rest measure closeness to it)."""
    rng = np.random.default_rng(seed)
    words = [set(title_words(t)) for t in titles]
    sets = [set(map(int, r)) for r in relevant]
    donors = [j for j, r in enumerate(relevant) if len(r) > n_seed_tracks]
    order = rng.permutation(len(titles))
    pairs = []
    for i in order:
        if max_prompts and len(pairs) >= max_prompts:
            break
        for j in rng.permutation(donors)[:50]:
            if j != i and not (words[i] & words[j]) and not (sets[i] & sets[j]):
                pairs.append((int(i), int(j)))
                break
    return pairs


# ------------------------------------------------------------------------------------ metrics


def negative_share(items: np.ndarray, negative_items: np.ndarray, k: int) -> np.ndarray:
    """Per prompt, the share of the top ``k`` (-1 = none) that lies in ``negative_items``."""
    top = np.asarray(items)[:, :k]
    return np.isin(top, np.asarray(negative_items, dtype=np.int64)).sum(1) / float(k)


def seed_similarity(
    items: np.ndarray, item_factors: np.ndarray, seed_means: np.ndarray, k: int
) -> np.ndarray:
    """Per prompt, mean cosine of the top-k items' factors to the seed tracks' mean factor."""
    top = np.asarray(items)[:, :k]
    f = item_factors[np.clip(top, 0, None)]
    f = f / (np.linalg.norm(f, axis=-1, keepdims=True) + 1e-12)
    s = seed_means / (np.linalg.norm(seed_means, axis=-1, keepdims=True) + 1e-12)
    cos = np.einsum("bkd,bd->bk", f, s).astype(np.float64)
    return np.nanmean(np.where(top >= 0, cos, np.nan), axis=1)


def target_check(curve: list[dict[str, Any]], view: str = "latent") -> dict[str, Any]:
    """The negative-prompt target per guidance weight: share falls by >= half, Hits@k by <= 10%."""
    rows = []
    for point in curve:
        without, with_neg = point[f"{view}_share_without"], point[f"{view}_share_with"]
        h0, h1 = point[f"{view}_hits_without"], point[f"{view}_hits_with"]
        share_ratio = with_neg / without if without > 0 else None
        hits_ratio = h1 / h0 if h0 > 0 else None
        ok = (
            share_ratio is not None
            and share_ratio <= 0.5
            and (hits_ratio is None or hits_ratio >= 0.9)
            and (h0 > 0 or h1 >= h0)
        )
        rows.append(
            {"w": point["w"], "share_ratio": share_ratio, "hits_ratio": hits_ratio, "meets": ok}
        )
    return {"per_weight": rows, "met_at": [r["w"] for r in rows if r["meets"]]}


# ------------------------------------------------------------------------------------ model parts


class _Context:
    """Everything loaded from the artifact once: CF factors, seq2seq, trie, index."""

    def __init__(self, artifact: Path) -> None:
        from semantic_ids.catalog import SemanticIDCatalog
        from semantic_ids.cf import CFModel
        from semantic_ids.interactions import ItemVocab
        from text2tracks.diffusion import FrozenSeq2SeqEncoder
        from text2tracks.modeling import MODEL_INFO_NAME, load_seq2seq
        from text2tracks.rerank import build_index
        from text2tracks.trie import FlatTrie

        self.artifact = artifact
        self.vocab = ItemVocab.load(artifact / CF_COMPONENT)
        self.item_factors = np.ascontiguousarray(
            CFModel.load(artifact / CF_COMPONENT).item_factors, dtype=np.float32
        )
        catalog = SemanticIDCatalog.load(artifact / CATALOG_COMPONENT / "catalog")
        self.catalog_to_vocab = self.vocab.indices(catalog.item_ids, skip_unknown=False)
        self.trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
        self.model, self.tokenizer, self.layout = load_seq2seq(artifact / SEQ2SEQ_COMPONENT)
        info = artifact / SEQ2SEQ_COMPONENT / MODEL_INFO_NAME
        config = json.loads(info.read_text()).get("model_config", {}) if info.is_file() else {}
        self.max_prompt_length = int((config or {}).get("max_prompt_length", 64))
        self.frozen = FrozenSeq2SeqEncoder(self.model, self.tokenizer)
        self.index = build_index(self.item_factors)

    def beam(self, prompts: list[str], n: int, beams: int) -> tuple[np.ndarray, np.ndarray]:
        """Constrained beam search: ``(vocab item indices (b, n), log-probs (b, n))``."""
        import torch

        from text2tracks.data import normalize_prompt
        from text2tracks.decoding import constrained_generate

        enc = self.tokenizer(
            [normalize_prompt(p) for p in prompts],
            padding=True,
            truncation=True,
            max_length=self.max_prompt_length,
            return_tensors="pt",
        )
        with torch.inference_mode():
            items, scores = constrained_generate(
                self.model,
                enc["input_ids"],
                enc["attention_mask"],
                self.trie,
                self.layout,
                k=n,
                num_beams=max(n, beams),
            )
        return self.catalog_to_vocab[items], scores


def _batched(fn, prompts: list[str], batch_size: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    outs = [
        fn(prompts[i : i + batch_size])
        for i in tqdm(
            range(0, len(prompts), batch_size), desc=desc, disable=not progress, leave=False
        )
    ]
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate([o[j] for o in outs]) for j in range(len(outs[0])))
    return np.concatenate(outs)


def _encode(model, prompts: list[str], batch_size: int = 256):
    import torch

    with torch.no_grad():
        return torch.cat(
            [
                model.encode(prompts[i : i + batch_size]).cpu()
                for i in range(0, len(prompts), batch_size)
            ]
        )


def _noise(n: int, n_samples: int, dim: int, seed: int):
    import torch

    return torch.randn((n * n_samples, dim), generator=torch.Generator().manual_seed(seed))


def _sample(
    head, cond, noise, n_samples: int, w: float, negative_cond=None, batch_size: int = 256
) -> np.ndarray:
    """Head samples ``(n, n_samples, dim)`` from fixed starting noise (paired comparisons)."""
    outs = []
    for i in range(0, cond.shape[0], batch_size):
        neg = None if negative_cond is None else negative_cond[i : i + batch_size]
        outs.append(
            head.sample(
                cond[i : i + batch_size],
                negative_cond=neg,
                guidance_weight=w,
                n_samples=n_samples,
                noise=noise[i * n_samples : (i + batch_size) * n_samples],
            )
            .cpu()
            .numpy()
        )
    return np.concatenate(outs)


# ------------------------------------------------------------------------------------ training


def _train_models(
    ctx: _Context, train_path: str, config: DiffusionBenchConfig, out_dir: Path
) -> dict:
    """Train the head(s) and the regressor under the budget; returns models and summaries."""
    from text2tracks.artifacts import component_writer
    from text2tracks.diffusion import DiffusionHead, PromptToLatentRegressor
    from training.train_diffusion import DiffusionTrainConfig, train

    encoders = config.encoder_list
    head_minutes = 0.7 * config.budget_minutes
    while len(encoders) > 1 and head_minutes / len(encoders) < config.min_minutes_per_model:
        _log(f"budget too small for the {encoders[-1]} encoder too; skipping it")
        encoders = encoders[:-1]
    common = dict(
        artifact=str(ctx.artifact),
        playlists=str(train_path),
        hidden=config.hidden,
        n_blocks=config.n_blocks,
        lr=config.lr,
        batch_size=config.train_batch_size,
        eval_every=0,
        eval_prompts=min(500, config.max_validation_prompts or 500),
        eval_k=config.k,
        seed=config.seed,
        num_threads=config.num_threads,
        progress=config.progress,
        log_every=50,
        warmup_steps=100,
        fit_fusion=False,
    )  # the benchmark fits (and stores) the fusion itself
    runs_dir = out_dir / "diffusion_runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    heads, summaries = {}, {}
    for encoder in encoders:
        cfg = DiffusionTrainConfig(
            encoder=encoder,
            epochs=config.head_epochs,
            max_minutes=head_minutes / len(encoders),
            **common,
        )
        _log(f"training the diffusion head ({encoder} encoder, {cfg.max_minutes:.2f} min)")
        summaries[f"head-{encoder}"] = train(cfg)
        saved = runs_dir / f"diffusion-{encoder}"
        shutil.rmtree(saved, ignore_errors=True)
        shutil.copytree(ctx.artifact / DIFFUSION_COMPONENT, saved)
        heads[encoder] = DiffusionHead.load(
            saved, encoder=ctx.frozen if encoder == "seq2seq" else None
        )
    key = f"hits@{config.k}"
    best = max(
        encoders, key=lambda e: (summaries[f"head-{e}"]["final_eval"].get(key, 0.0), e == "seq2seq")
    )
    if best != encoders[-1]:  # the last one trained sits in the artifact: put the best there
        summary = summaries[f"head-{best}"]
        info = {
            "kind": "diffusion_head",
            "encoder": best,
            "steps": summary["steps"],
            **summary["final_eval"],
        }
        with component_writer(ctx.artifact, DIFFUSION_COMPONENT, info) as tmp:
            shutil.rmtree(tmp)
            shutil.copytree(runs_dir / f"diffusion-{best}", tmp)
    _log(
        f"head encoder on validation: "
        f"{ {e: summaries[f'head-{e}']['final_eval'] for e in encoders} } -> {best}"
    )
    cfg = DiffusionTrainConfig(
        encoder=best,
        regressor=True,
        epochs=config.regressor_epochs,
        max_minutes=0.3 * config.budget_minutes,
        **common,
    )
    _log(f"training the regressor ({best} encoder, {cfg.max_minutes:.2f} min)")
    summaries["regressor"] = train(cfg)
    regressor = PromptToLatentRegressor.load(
        ctx.artifact / REGRESSOR_COMPONENT, encoder=ctx.frozen if best == "seq2seq" else None
    )
    return {
        "heads": heads,
        "best": best,
        "regressor": regressor,
        "summaries": summaries,
        "encoders_tried": encoders,
    }


def _load_models(ctx: _Context, out_dir: Path) -> dict:
    """The head and regressor an earlier run left in the artifact, with that run's summaries."""
    from text2tracks.diffusion import DiffusionHead, PromptToLatentRegressor

    missing = [
        d for d in (DIFFUSION_COMPONENT, REGRESSOR_COMPONENT) if not (ctx.artifact / d).is_dir()
    ]
    if missing:
        raise ValueError(f"--reuse-models: {ctx.artifact} has no {missing}; run without it first")
    config_path = ctx.artifact / DIFFUSION_COMPONENT / "config.json"
    encoder = json.loads(config_path.read_text()).get("encoder", {}).get("kind", "seq2seq")
    frozen = ctx.frozen if encoder == "seq2seq" else None
    head = DiffusionHead.load(ctx.artifact / DIFFUSION_COMPONENT, encoder=frozen)
    regressor = PromptToLatentRegressor.load(ctx.artifact / REGRESSOR_COMPONENT, encoder=frozen)
    previous = out_dir / "diffusion.json"
    training = json.loads(previous.read_text()).get("training", {}) if previous.is_file() else {}
    _log(f"reusing the trained head ({encoder} encoder) and regressor from {ctx.artifact}")
    return {
        "heads": {encoder: head},
        "best": encoder,
        "regressor": regressor,
        "summaries": training.get("summaries", {}),
        "encoders_tried": training.get("encoders_tried", [encoder]),
        "reused": True,
    }


# ------------------------------------------------------------------------------------ main


def run_diffusion_benchmark(
    artifact: str | Path,
    train_path: str | Path,
    out_dir: str | Path,
    prompts: list[str],
    relevant: list[np.ndarray],
    validation: list,
    train_playlists: list | None = None,
    *,
    config: DiffusionBenchConfig | None = None,
    budget_minutes: float | None = None,
    n_skipped: int = 0,
) -> dict[str, Any]:
    """Train and evaluate the diffusion head on the benchmark's split.

    Args:
        artifact: the benchmark's artifact (``cf/``, ``semantic_ids/``, trained ``seq2seq/``); the
            head is saved into its ``diffusion/``, the regressor into ``latent_regressor/``.
        train_path: the playlists the artifact was built from (``--train`` of the benchmark).
        out_dir: where ``diffusion.json``, ``negative_prompts.png`` and ``inversion.png`` go.
        prompts, relevant: the test prompts and their relevant vocab item indices, exactly as
            the benchmark scores them (``relevant_items(test, vocab)``).
        validation: the validation ``Playlist`` objects (fusion weights are fitted on them).
        train_playlists: the training ``Playlist`` objects (titles for the negative prompts);
            None re-splits ``train_path`` with ``artifact/cf/split.json``.
        config: :class:`DiffusionBenchConfig`; ``budget_minutes`` overrides its budget.
        n_skipped: test prompts without catalogue tracks (reported with the metrics).

    Returns ``{"systems", "comparisons", "per_prompt", ...}``: the systems and comparisons are
    in the benchmark's ``results.json`` format; ``per_prompt`` holds per-prompt metric arrays.
    """
    import torch

    from text2tracks.diffusion import seed_latent
    from text2tracks.hybrid import HybridSettings, save_fusion
    from text2tracks.rerank import (
        FixedBlendFusion,
        GatedFusion,
        latent_candidates,
        pool_candidates,
        prompt_features,
        rerank,
    )

    config = config or DiffusionBenchConfig()
    if budget_minutes is not None:
        config = replace(config, budget_minutes=float(budget_minutes))
    if len(prompts) != len(relevant) or not prompts:
        raise ValueError(
            f"need as many relevant sets as prompts (>= 1), got {len(prompts)} and {len(relevant)}"
        )
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    artifact, out_dir = Path(artifact), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k, progress = config.k, config.progress
    ctx = _Context(artifact)
    if train_playlists is None:
        train_playlists = _training_playlists(artifact, train_path)
    n_items = len(ctx.vocab)
    started_all = time.perf_counter()

    # 1. Train the head(s) and the regressor (or take them from an earlier run).
    trained = (
        _load_models(ctx, out_dir)
        if config.reuse_models
        else _train_models(ctx, str(train_path), config, out_dir)
    )
    head, regressor = trained["heads"][trained["best"]], trained["regressor"]
    w = config.guidance_weight or head.config.guidance_weight
    dim = ctx.item_factors.shape[1]

    # 2. Validation prompts for the fusions.
    kept, val_relevant, _ = relevant_items(validation, ctx.vocab)
    val_prompts = [validation[i].prompt for i in kept]
    if config.max_validation_prompts and len(val_prompts) > config.max_validation_prompts:
        pick = np.sort(
            np.random.default_rng(config.seed).choice(
                len(val_prompts), config.max_validation_prompts, replace=False
            )
        )
        val_prompts, val_relevant = [val_prompts[i] for i in pick], [val_relevant[i] for i in pick]
    if not val_prompts:
        raise ValueError("no validation prompt holds a catalogue track: cannot fit the fusion")
    val_sets = [set(map(int, r)) for r in val_relevant]
    test_sets = [set(map(int, r)) for r in relevant]

    # 3. Candidates of both views, test and validation.
    _log(
        f"beam search ({config.candidates} candidates) for {len(prompts)} test and "
        f"{len(val_prompts)} validation prompts"
    )
    beam = lambda ps: ctx.beam(ps, config.candidates, config.beams)  # noqa: E731
    test_beam = _batched(beam, prompts, config.batch_size, "beam test", progress)
    val_beam = _batched(beam, val_prompts, config.batch_size, "beam validation", progress)
    test_cond, val_cond = _encode(head, prompts), _encode(head, val_prompts)
    test_noise = _noise(len(prompts), config.n_samples, dim, config.seed)
    val_noise = _noise(len(val_prompts), config.n_samples, dim, config.seed + 1)
    test_lat = _sample(head, test_cond, test_noise, config.n_samples, w)
    val_lat = _sample(head, val_cond, val_noise, config.n_samples, w)
    test_reg = regressor.predict(_encode(regressor, prompts)).cpu().numpy()
    val_reg = regressor.predict(_encode(regressor, val_prompts)).cpu().numpy()

    def cands(beam_out, latents):
        items, sims = latent_candidates(latents, ctx.item_factors, config.latent_k, ctx.index)
        return pool_candidates(beam_out[0], beam_out[1], items, sims, latents, ctx.item_factors)

    val_c, test_c = cands(val_beam, val_lat), cands(test_beam, test_lat)
    val_c_reg, test_c_reg = cands(val_beam, val_reg), cands(test_beam, test_reg)
    fixed = FixedBlendFusion().fit(val_c, val_sets, metric="hits", k=k)
    fixed_reg = FixedBlendFusion().fit(val_c_reg, val_sets, metric="hits", k=k)
    gate = GatedFusion(seed=config.seed).fit(
        val_c, val_sets, prompt_features(val_c, val_lat, val_prompts), metric="ndcg", k=k
    )
    _log(f"fixed alpha {fixed.alpha} (regressor {fixed_reg.alpha}); gate fitted")
    # What the API will use: the fixed blend, under the settings it was fitted with.
    save_fusion(
        artifact / DIFFUSION_COMPONENT,
        fixed,
        HybridSettings(
            n_samples=config.n_samples,
            beam_candidates=config.candidates,
            latent_k=config.latent_k,
            pool="max",
            seed_method=config.seed_method_list[0],
        ),
        validation={
            "prompts": len(val_prompts),
            "metric": "hits",
            "k": k,
            "alpha": fixed.alpha,
            "source": "eval.bench_diffusion",
        },
    )

    rankings = {
        "generative": test_beam[0][:, :k],
        "latent-only": rerank(
            "latent",
            k,
            latents=test_lat,
            item_factors=ctx.item_factors,
            index=ctx.index,
            latent_k=config.latent_k,
        )[0],
        "latent-regressor": rerank(
            "latent",
            k,
            latents=test_reg,
            item_factors=ctx.item_factors,
            index=ctx.index,
            latent_k=config.latent_k,
        )[0],
        "hybrid": fixed.fuse(test_c, k=k)[0],
        "hybrid-gated": gate.fuse(test_c, k=k, features=prompt_features(test_c, test_lat, prompts))[
            0
        ],
        "hybrid-regressor": fixed_reg.fuse(test_c_reg, k=k)[0],
    }
    if config.mean_samples:
        mean_noise = _noise(len(prompts), config.mean_samples, dim, config.seed + 3)
        mean_lat = _sample(head, test_cond, mean_noise, config.mean_samples, w)
        rankings["latent-only-mean"] = rerank(
            "latent",
            k,
            latents=mean_lat.mean(axis=1, keepdims=True),
            item_factors=ctx.item_factors,
            index=ctx.index,
            latent_k=config.latent_k,
        )[0]
    extras = {
        "generative": {
            "candidates": config.candidates,
            "beams": max(config.candidates, config.beams),
        },
        "latent-only": {
            "encoder": trained["best"],
            "n_samples": config.n_samples,
            "guidance_weight": w,
            "ddim_steps": head.config.ddim_steps,
        },
        "latent-regressor": {"encoder": trained["best"]},
        "hybrid": {
            "alpha": fixed.alpha,
            "alpha_grid_validation": dict(
                zip(map(float, fixed.grid_), map(float, fixed.grid_scores_), strict=True)
            ),
        },
        "hybrid-gated": {
            "alphas_test_mean": float(
                gate.alphas(test_c, prompt_features(test_c, test_lat, prompts)).mean()
            ),
            "fixed_alpha": gate.fixed_alpha_,
        },
        "hybrid-regressor": {"alpha": fixed_reg.alpha},
        "latent-only-mean": {
            "n_samples": config.mean_samples,
            "pool": "mean of samples",
            "guidance_weight": w,
        },
    }
    systems, per_prompt = {}, {}
    for name, ranked in rankings.items():
        metrics = evaluate_rankings(
            ranked,
            relevant,
            k=k,
            n_items=n_items,
            n_bootstrap=config.n_bootstrap,
            n_skipped=n_skipped,
            return_per_prompt=True,
        )
        per_prompt[name] = metrics.pop("per_prompt")
        systems[name] = {**metrics, **extras[name]}
        _log(f"{name}: hits@{k} {metrics[f'hits@{k}']:.4f}")
    comparisons = {}
    for a, b in (
        ("hybrid", "generative"),
        ("hybrid-gated", "hybrid"),
        ("latent-only", "latent-regressor"),
        ("hybrid", "hybrid-regressor"),
        ("hybrid-gated", "generative"),
    ):
        diff = paired_bootstrap_diff(
            per_prompt[a]["hits"], per_prompt[b]["hits"], n_bootstrap=config.n_bootstrap
        )
        base = systems[b][f"hits@{k}"]
        diff["relative"] = systems[a][f"hits@{k}"] / base - 1 if base else None
        comparisons[f"{a} vs {b}"] = diff
    rel = comparisons["hybrid vs generative"]["relative"]
    target = {
        "hybrid_relative_gain": rel,
        "meets_5pct": bool(rel is not None and rel >= 0.05),
        "gate_pays": bool(systems["hybrid-gated"][f"hits@{k}"] > systems["hybrid"][f"hits@{k}"]),
    }

    # 4. Negative prompts.
    negative = _negative_prompts(
        ctx, head, fixed, config, prompts, test_sets, test_beam, train_playlists, w
    )

    # 5. DDIM inversion.
    inversion = _inversion(
        ctx, head, config, prompts, relevant, test_cond, seed_latent, latent_candidates
    )

    # 6. Sampling cost.
    latency = _latency(ctx, head, fixed, config, prompts, w)

    report = {
        "systems": systems,
        "comparisons": comparisons,
        "target": target,
        "training": {
            "summaries": trained["summaries"],
            "encoders_tried": trained["encoders_tried"],
            "encoder_chosen": trained["best"],
        },
        "fusion": {
            "fixed": fixed.to_dict(),
            "fixed_regressor": fixed_reg.to_dict(),
            "gated": gate.to_dict(),
        },
        "negative_prompts": negative,
        "inversion": inversion,
        "latency": latency,
        "n_test_prompts": len(prompts),
        "n_validation_prompts": len(val_prompts),
        "config": asdict(config),
        "elapsed_s": time.perf_counter() - started_all,
    }
    _plot_negative(negative, out_dir / "negative_prompts.png", k)
    _plot_inversion(inversion, out_dir / "inversion.png", k)
    write_json(out_dir / "diffusion.json", report)
    report["per_prompt"] = per_prompt
    return report


def _training_playlists(artifact: Path, train_path: str | Path) -> list:
    from semantic_ids.playlists import read_playlists, split_playlists
    from text2tracks.artifacts import read_json

    info = read_json(artifact / CF_COMPONENT / "split.json", "split parameters")
    return split_playlists(
        read_playlists(train_path).playlists,
        validation_fraction=info["validation_fraction"],
        test_fraction=info["test_fraction"],
        seed=info["seed"],
    ).train


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically, keys in insertion order, numpy values as plain numbers."""
    write_json_atomic(path, payload, sort_keys=False, default=_json_default)


def _json_default(value: Any):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, set)):
        return sorted(value) if isinstance(value, set) else value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _negative_prompts(
    ctx, head, fixed, config, prompts, test_sets, test_beam, train_playlists, w_default
):
    from text2tracks.rerank import latent_candidates, pool_candidates, rerank

    k = config.k
    train_items = [ctx.vocab.indices(p.track_ids, skip_unknown=True) for p in train_playlists]
    pairs = select_negative_pairs(
        [p.title for p in train_playlists],
        train_items,
        [p for p in prompts],
        config.n_negative_pairs,
        config.prompts_per_pair,
        config.min_title_playlists,
        config.max_contamination,
    )
    if not pairs:
        _log("negative prompts: no pair found in the data")
        return {"pairs": [], "curve": [], "target": None}
    idx = np.concatenate([np.asarray(p["prompt_indices"], dtype=np.int64) for p in pairs])
    neg_words = [p["negative"] for p in pairs for _ in p["prompt_indices"]]
    sub_prompts = [prompts[i] for i in idx]
    rel = [test_sets[i] for i in idx]
    cond, neg_cond = _encode(head, sub_prompts), _encode(head, neg_words)
    noise = _noise(len(idx), config.n_samples, ctx.item_factors.shape[1], config.seed + 7)
    beam_items, beam_scores = test_beam[0][idx], test_beam[1][idx]
    _log(
        f"negative prompts: {[(p['positive'], p['negative'], len(p['prompt_indices'])) for p in pairs]}"
    )

    def views(latents):
        lat_items = rerank(
            "latent",
            k,
            latents=latents,
            item_factors=ctx.item_factors,
            index=ctx.index,
            latent_k=config.latent_k,
        )[0]
        items, sims = latent_candidates(latents, ctx.item_factors, config.latent_k, ctx.index)
        c = pool_candidates(beam_items, beam_scores, items, sims, latents, ctx.item_factors)
        return {"latent": lat_items, "hybrid": fixed.fuse(c, k=k)[0]}

    bounds = np.cumsum([0] + [len(p["prompt_indices"]) for p in pairs])

    def share(items):
        return float(
            np.concatenate(
                [
                    negative_share(items[a:b], p["negative_items"], k)
                    for p, a, b in zip(pairs, bounds[:-1], bounds[1:], strict=True)
                ]
            ).mean()
        )

    curve = []
    for w in config.grid:
        row: dict[str, Any] = {"w": w}
        for label, neg in (("without", None), ("with", neg_cond)):
            out = views(_sample(head, cond, noise, config.n_samples, w, negative_cond=neg))
            for view, items in out.items():
                row[f"{view}_share_{label}"] = share(items)
                row[f"{view}_hits_{label}"] = float(per_prompt_metric(items, rel, "hits", k).mean())
        curve.append(row)
        _log(f"negative w={w}: { {key: round(v, 4) for key, v in row.items()} }")
    generative_share = share(beam_items[:, :k])
    return {
        "pairs": [
            {key: v for key, v in p.items() if key != "negative_items"}
            | {
                "n_negative_items": len(p["negative_items"]),
                "n_prompts": len(p["prompt_indices"]),
                "prompts": [prompts[i] for i in p["prompt_indices"][:5]],
            }
            for p in pairs
        ],
        "n_prompts": int(len(idx)),
        "curve": curve,
        "generative_share": generative_share,
        "default_w": w_default,
        "target": {
            "latent": target_check(curve, "latent"),
            "hybrid": target_check(curve, "hybrid"),
        },
    }


def _inversion(ctx, head, config, prompts, relevant, test_cond, seed_latent, latent_candidates):
    import torch

    k = config.k
    pairs = select_seed_playlists(
        prompts, relevant, config.n_seed_tracks, config.max_inversion_prompts, config.seed
    )
    if not pairs:
        _log("inversion: no seed playlist pairs found")
        return {"curve": [], "curves": {}, "n_prompts": 0}
    pi = np.array([p for p, _ in pairs])
    seeds = [relevant[j][: config.n_seed_tracks] for _, j in pairs]
    seed_rest = [set(map(int, relevant[j][config.n_seed_tracks :])) for _, j in pairs]
    prompt_rel = [set(map(int, relevant[i])) for i in pi]
    seed_means = np.stack([ctx.item_factors[s].mean(0) for s in seeds])
    exclude = [set(map(int, s)) for s in seeds]
    cond = test_cond[pi]
    curves = {}
    for method in config.seed_method_list:
        seed_lat = np.stack([seed_latent(ctx.item_factors, s, method) for s in seeds])
        curves[method] = []
        for strength in config.strength_list:
            lat = head.edit(torch.from_numpy(seed_lat), cond, strength=strength).cpu().numpy()
            items, _ = latent_candidates(lat, ctx.item_factors, k, ctx.index, exclude=exclude)
            row = {
                "strength": strength,
                "seed_cosine": float(
                    np.nanmean(seed_similarity(items, ctx.item_factors, seed_means, k))
                ),
                "seed_hits": float(per_prompt_metric(items, seed_rest, "hits", k).mean()),
                "prompt_hits": float(per_prompt_metric(items, prompt_rel, "hits", k).mean()),
            }
            curves[method].append(row)
            _log(f"inversion ({method}) strength {strength}: {row}")
    method = config.seed_method_list[0]
    curve = curves[method]
    # Reference: plain samples from the prompt (no seed), one per prompt.
    noise = _noise(len(pi), 1, ctx.item_factors.shape[1], config.seed + 11)
    plain = _sample(head, cond, noise, 1, head.config.guidance_weight)
    items, _ = latent_candidates(plain, ctx.item_factors, k, ctx.index, exclude=exclude)
    reference = {
        "seed_cosine": float(np.nanmean(seed_similarity(items, ctx.item_factors, seed_means, k))),
        "seed_hits": float(per_prompt_metric(items, seed_rest, "hits", k).mean()),
        "prompt_hits": float(per_prompt_metric(items, prompt_rel, "hits", k).mean()),
    }
    first, last = curve[0], curve[-1]
    return {
        "n_prompts": len(pairs),
        "n_seed_tracks": config.n_seed_tracks,
        "seed_method": method,
        "curve": curve,
        "curves": curves,
        "prompt_only_reference": reference,
        "similarity_falls": bool(last["seed_cosine"] < first["seed_cosine"]),
        "relevance_rises": bool(last["prompt_hits"] > first["prompt_hits"]),
        "examples": [{"prompt": prompts[i], "seed_playlist": prompts[j]} for i, j in pairs[:5]],
    }


def _latency(ctx, head, fixed, config, prompts, w) -> dict[str, Any]:
    """Median per-prompt cost of each hybrid stage at batch 1, and per prompt when batched."""
    import torch

    from text2tracks.rerank import latent_candidates, pool_candidates

    k, steps = config.k, head.config.ddim_steps
    timed = (prompts * (config.latency_prompts // len(prompts) + 1))[: config.latency_prompts]

    def stages(batch: list[str]) -> dict[str, float]:
        t = {}
        t0 = time.perf_counter()
        beam_items, beam_scores = ctx.beam(batch, config.candidates, config.beams)
        t["beam"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            cond = head.encode(batch)
            t["head_encode"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            lat = (
                head.sample(cond, n_samples=config.n_samples, guidance_weight=w, steps=steps)
                .cpu()
                .numpy()
            )
            t["head_sample"] = time.perf_counter() - t1
        t["head"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        items, sims = latent_candidates(lat, ctx.item_factors, config.latent_k, ctx.index)
        t["faiss"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        fixed.fuse(
            pool_candidates(beam_items, beam_scores, items, sims, lat, ctx.item_factors), k=k
        )
        t["fusion"] = time.perf_counter() - t0
        t["total"] = t["beam"] + t["head"] + t["faiss"] + t["fusion"]
        return t

    stages(timed[:1])  # warm-up
    singles = [stages([p]) for p in timed]
    one = {f"{name}_ms": 1000 * statistics.median(s[name] for s in singles) for name in singles[0]}
    batch = (prompts * (64 // len(prompts) + 1))[:64]
    batched = stages(batch)
    per = {f"{name}_ms": 1000 * v / len(batch) for name, v in batched.items()}
    return {
        "ddim_steps": steps,
        "n_samples": config.n_samples,
        "guidance_weight": w,
        "candidates": config.candidates,
        "batch1": one,
        "batch64_per_prompt": per,
        "head_share_batch1": one["head_ms"] / one["total_ms"],
        "head_share_batch64": per["head_ms"] / per["total_ms"],
        "threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------------ plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_negative(negative: dict, path: Path, k: int) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    curve = negative.get("curve", [])
    ws = [r["w"] for r in curve]
    for view, color in (("latent", "tab:blue"), ("hybrid", "tab:orange")):
        for label, style in (("without", "--"), ("with", "-")):
            if curve:
                axes[0].plot(
                    ws,
                    [r[f"{view}_share_{label}"] for r in curve],
                    style,
                    marker="o",
                    color=color,
                    label=f"{view}, {label} negative",
                )
                axes[1].plot(
                    ws,
                    [r[f"{view}_hits_{label}"] for r in curve],
                    style,
                    marker="o",
                    color=color,
                    label=f"{view}, {label} negative",
                )
    if negative.get("generative_share") is not None:
        axes[0].axhline(
            negative["generative_share"], linestyle=":", color="grey", label="generative (beam)"
        )
    axes[0].set_ylabel(f"share of top {k} in negative-titled training playlists")
    axes[1].set_ylabel(f"Hits@{k} on the positive prompt")
    for ax in axes:
        ax.set_xlabel("guidance weight w")
        ax.legend(fontsize=7)
    pairs = ", ".join(f"{p['positive']} / -{p['negative']}" for p in negative.get("pairs", []))
    fig.suptitle(f"negative prompts ({negative.get('n_prompts', 0)} prompts: {pairs})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_inversion(inversion: dict, path: Path, k: int) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (method, curve), style in zip(inversion["curves"].items(), ("-", "--", ":"), strict=False):
        xs = [r["strength"] for r in curve]
        axes[0].plot(
            xs,
            [r["seed_cosine"] for r in curve],
            style,
            marker="o",
            color="tab:blue",
            label=f"cosine to seed mean factor ({method})",
        )
        axes[0].plot(
            xs,
            [r["seed_hits"] for r in curve],
            style,
            marker="s",
            color="tab:orange",
            label=f"Hits@{k} vs seed playlist ({method})",
        )
        axes[1].plot(
            xs,
            [r["prompt_hits"] for r in curve],
            style,
            marker="o",
            color="tab:green",
            label=f"Hits@{k} vs prompt playlist ({method})",
        )
    ref = inversion.get("prompt_only_reference")
    if ref:
        axes[1].axhline(
            ref["prompt_hits"], linestyle=":", color="grey", label="prompt only (no seed)"
        )
    axes[0].set_ylabel("similarity to the seed tracks")
    axes[1].set_ylabel("relevance to the prompt")
    for ax in axes:
        ax.set_xlabel("edit strength")
        ax.legend(fontsize=7)
    fig.suptitle(f"DDIM inversion edits ({inversion.get('n_prompts', 0)} prompts)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------ report


def format_report(report: dict, k: int = 10) -> str:
    """The systems table, comparisons, negative-prompt and inversion curves, and the cost."""
    columns = [f"hits@{k}", f"recall@{k}", f"ndcg@{k}", "mrr", f"coverage@{k}"]
    lines = [
        format_table(report["systems"], columns=columns),
        "",
        "| comparison | Hits diff | 95% CI | relative | p |",
        "|---|---|---|---|---|",
    ]
    for name, c in report["comparisons"].items():
        relative = f"{100 * c['relative']:+.1f}%" if c.get("relative") is not None else "-"
        lines.append(
            f"| {name} | {c['diff']:+.4f} | [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}] | "
            f"{relative} | {c['p_value']:.3f} |"
        )
    neg = report["negative_prompts"]
    if neg.get("curve"):
        lines += [
            "",
            f"negative prompts ({neg['n_prompts']} prompts; pairs "
            f"{[(p['positive'], p['negative']) for p in neg['pairs']]}):",
            "| w | latent share w/o -> with | latent hits w/o -> with | hybrid share w/o -> with "
            "| hybrid hits w/o -> with |",
            "|---|---|---|---|---|",
        ]
        for r in neg["curve"]:
            lines.append(
                f"| {r['w']:g} | {r['latent_share_without']:.3f} -> {r['latent_share_with']:.3f} | "
                f"{r['latent_hits_without']:.3f} -> {r['latent_hits_with']:.3f} | "
                f"{r['hybrid_share_without']:.3f} -> {r['hybrid_share_with']:.3f} | "
                f"{r['hybrid_hits_without']:.3f} -> {r['hybrid_hits_with']:.3f} |"
            )
        lines.append(
            f"target met at w = latent {neg['target']['latent']['met_at']}, "
            f"hybrid {neg['target']['hybrid']['met_at']}"
        )
    inv = report["inversion"]
    if inv.get("curve"):
        lines += [
            "",
            f"inversion ({inv['n_prompts']} prompts, {inv['n_seed_tracks']} seed tracks):",
            "| seed latent | strength | cosine to seeds | Hits vs seed playlist | Hits vs prompt |",
            "|---|---|---|---|---|",
        ]
        for method, curve in inv["curves"].items():
            for r in curve:
                lines.append(
                    f"| {method} | {r['strength']:g} | {r['seed_cosine']:.3f} | "
                    f"{r['seed_hits']:.3f} | {r['prompt_hits']:.3f} |"
                )
    lat = report["latency"]
    lines += [
        "",
        f"sampling cost ({lat['ddim_steps']} DDIM steps, {lat['n_samples']} samples): head "
        f"{lat['batch1']['head_ms']:.1f} ms of {lat['batch1']['total_ms']:.1f} ms per prompt at "
        f"batch 1 ({100 * lat['head_share_batch1']:.1f}%), {lat['batch64_per_prompt']['head_ms']:.2f}"
        f" of {lat['batch64_per_prompt']['total_ms']:.2f} ms batched "
        f"({100 * lat['head_share_batch64']:.1f}%)",
        f"head encoder: tried {report['training']['encoders_tried']}, chose "
        f"{report['training']['encoder_chosen']}; hybrid vs generative "
        f"{report['target']['hybrid_relative_gain']}; gate pays: {report['target']['gate_pays']}",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ CLI


def load_benchmark_split(bench_dir: Path, train_path: str) -> dict[str, Any]:
    """Re-create the benchmark's split and test prompts from ``bench_dir/results.json``."""
    from eval.benchmark import _load_split
    from semantic_ids.interactions import ItemVocab

    results = json.loads((bench_dir / "results.json").read_text())
    cfg = results["config"]
    args = SimpleNamespace(
        train=str(train_path),
        test=cfg.get("test"),
        validation_fraction=cfg["validation_fraction"],
        test_fraction=cfg["test_fraction"],
        split_seed=cfg["split_seed"],
    )
    data = _load_split(args)
    recorded = results.get("split", {})
    for name in ("train", "validation", "test"):
        if name in recorded and recorded[name] != len(data[name]):
            raise ValueError(
                f"{train_path} split with {bench_dir}/results.json gives {len(data[name])} "
                f"{name} playlists, the benchmark had {recorded[name]}: pass its --train"
            )
    vocab = ItemVocab.load(bench_dir / "artifact" / CF_COMPONENT)
    kept, relevant, n_skipped = relevant_items(data["test"], vocab)
    if cfg.get("max_test_prompts"):
        kept, relevant = kept[: cfg["max_test_prompts"]], relevant[: cfg["max_test_prompts"]]
    prompts = [data["test"][i].prompt for i in kept]
    expected = recorded.get("test_prompts_evaluated")
    if expected is not None and expected != len(prompts):
        raise ValueError(f"{len(prompts)} test prompts re-created, the benchmark scored {expected}")
    return {
        "results": results,
        "prompts": prompts,
        "relevant": relevant,
        "n_skipped": n_skipped,
        "validation": data["validation"],
        "train": data["train"],
    }


def merge_into_results(path: Path, report: dict) -> dict:
    """Re-read ``results.json``, add the systems and comparisons (keeping the others), write atomically."""
    results = json.loads(path.read_text())
    results.setdefault("systems", {}).update(report["systems"])
    results.setdefault("comparisons", {}).update(report["comparisons"])
    results["diffusion"] = {
        "target": report["target"],
        "training": report["training"],
        "latency": report["latency"],
        "negative_prompts_target": report["negative_prompts"].get("target"),
        "inversion_curve": report["inversion"].get("curve"),
        "inversion_curves": report["inversion"].get("curves"),
    }
    write_json(path, results)
    return json.loads(path.read_text())


def build_parser() -> argparse.ArgumentParser:
    """``--benchmark-dir``, ``--train``, then one flag per field of :class:`DiffusionBenchConfig`."""
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench_diffusion",
        description="Train the diffusion head on a finished eval.benchmark folder and add the "
        "latent, regressor and hybrid systems, negative-prompt and inversion curves.",
    )
    parser.add_argument(
        "--benchmark-dir", required=True, help="output folder of python -m eval.benchmark"
    )
    parser.add_argument("--train", required=True, help="the --train playlists of that benchmark")
    defaults = DiffusionBenchConfig()
    for f in fields(DiffusionBenchConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(
                flag, type=type(default), default=default, help=f"default {default}"
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    bench_dir, train_path = Path(args.pop("benchmark_dir")), args.pop("train")
    try:
        config = DiffusionBenchConfig(**args)
    except ValueError as err:
        parser.error(str(err))
    if (
        not (bench_dir / "results.json").is_file()
        or not (bench_dir / "artifact" / SEQ2SEQ_COMPONENT).is_dir()
    ):
        parser.error(
            f"{bench_dir} is not a finished eval.benchmark folder (results.json, artifact/seq2seq)"
        )
    split = load_benchmark_split(bench_dir, train_path)
    if split["results"]["config"].get("k", config.k) != config.k:
        _log(f"note: the benchmark used k={split['results']['config']['k']}, this run k={config.k}")
    report = run_diffusion_benchmark(
        bench_dir / "artifact",
        train_path,
        bench_dir,
        split["prompts"],
        split["relevant"],
        split["validation"],
        split["train"],
        config=config,
        n_skipped=split["n_skipped"],
    )
    results = merge_into_results(bench_dir / "results.json", report)
    try:
        from eval.benchmark import _markdown

        (bench_dir / "results.md").write_text(_markdown(results, config.k))
    except (ImportError, KeyError) as err:  # the table is a convenience; results.json is the record
        _log(f"results.md not rewritten: {err}")
    print(format_report(report, config.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
