"""Baselines for prompt -> tracks retrieval, all behind one interface.

Every baseline::

    model = Baseline(...).fit(train_playlists, vocab, tracks=None, item_factors=None)
    items = model.recommend(prompts, k=10)   # int64 (n_prompts, k) catalogue item indices

``train_playlists`` are ``Playlist`` objects (training side of the split only), ``vocab`` the
catalogue (``ItemVocab``) built from them, ``tracks`` the ``{track_id: Track}`` metadata (BM25
needs it) and ``item_factors`` the CF item embeddings ``(n_items, dim)`` aligned with ``vocab``
(the dense bi-encoder needs them). Each row of ``recommend`` holds ``k`` distinct valid item
indices: what the method finds, best first, then the most popular training items it did not
already return. ``-1`` appears only when the catalogue holds fewer than ``k`` items. Ties between
equal scores go to the more popular item, so every result is deterministic.

* :class:`PopularityBaseline` - the most frequent catalogue tracks of the training playlists.
* :class:`ExactTitleBaseline` - tracks of training playlists whose normalised title equals the
  prompt, by vote count.
* :class:`TitleKNNBaseline` - TF-IDF character n-grams over training prompts; the most similar
  training playlists vote their tracks, weighted by similarity.
* :class:`BM25Baseline` - BM25 (``bm25s``) over track text, optionally expanded with the titles of
  the training playlists that hold the track.
* :class:`DenseBiEncoderBaseline` - a prompt tower trained contrastively into the frozen CF item
  space; retrieval by inner product (in :mod:`eval.dense_biencoder`).

The shared interface (:class:`Baseline`, :func:`rank_scores`) is in :mod:`eval.baseline_core`;
every name stays importable from here.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from eval.baseline_core import Baseline, rank_scores
from eval.dense_biencoder import DenseBiEncoderBaseline
from semantic_ids.interactions import ItemVocab
from text2tracks.teacher import TitleNeighbors

logger = logging.getLogger(__name__)

__all__ = [
    "Baseline",
    "PopularityBaseline",
    "ExactTitleBaseline",
    "TitleKNNBaseline",
    "BM25Baseline",
    "DenseBiEncoderBaseline",
    "normalize_title",
    "rank_scores",
    "BASELINES",
    "make_baseline",
]


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def normalize_title(text: str) -> str:
    """Title key for exact matching: NFKC, case-folded, punctuation, whitespace and controls removed.

    Letters of every script, digits, combining marks and symbols (emoji included) are kept, so
    "Chill Vibes!!" and "chill  vibes" share the key "chillvibes", and "🔥🔥" keeps its own key.
    A title made only of punctuation keeps its case-folded, stripped text as the key, so it still
    matches itself.
    """
    folded = unicodedata.normalize("NFKC", text or "").casefold()
    kept = "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LMNS")
    return kept or folded.strip()


# ---------------------------------------------------------------------------------------------
# Popularity
# ---------------------------------------------------------------------------------------------


class PopularityBaseline(Baseline):
    """The same list for every prompt: catalogue tracks by training playlist count."""

    name = "popularity"

    def recommend(self, prompts: Sequence[str], k: int = 10) -> np.ndarray:
        self._check_fitted()
        row = np.full(k, -1, dtype=np.int64)
        top = self.popularity_order[:k]
        row[: top.size] = top
        return np.tile(row, (len(list(prompts)), 1))


# ---------------------------------------------------------------------------------------------
# Exact title
# ---------------------------------------------------------------------------------------------


class ExactTitleBaseline(Baseline):
    """Votes of the training playlists whose normalised title (or whole prompt) equals the prompt.

    A training playlist is indexed under the key of its title and, when it has a description,
    also under the key of its full prompt (title + description), so a title-only query finds it
    and so does its exact prompt. An item's score is the number of matching playlists holding it;
    prompts with no match get the popularity list.
    """

    name = "exact_title"

    def fit(self, train_playlists, vocab, tracks=None, item_factors=None):
        self._fit_common(train_playlists, vocab)
        keys: dict[str, int] = {}
        rows, cols = [], []
        for r, playlist in enumerate(self.train_playlists):
            for key in {normalize_title(playlist.title), normalize_title(playlist.prompt)}:
                group = keys.setdefault(key, len(keys))
                rows.append(group)
                cols.append(r)
        groups = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)),
            shape=(len(keys), len(self.train_playlists)),
        )
        self._keys = keys
        self._votes = (groups @ self.interactions).tocsr()  # (n_keys, n_items)
        return self

    def scores(self, prompts):
        ids = np.array([self._keys.get(normalize_title(p), -1) for p in prompts], dtype=np.int64)
        found = ids >= 0
        select = sp.csr_matrix(
            (np.ones(int(found.sum()), dtype=np.float32), (np.flatnonzero(found), ids[found])),
            shape=(len(prompts), self._votes.shape[0]),
        )
        return select @ self._votes


# ---------------------------------------------------------------------------------------------
# Title kNN
# ---------------------------------------------------------------------------------------------


class TitleKNNBaseline(Baseline):
    """TF-IDF character n-grams over training prompts; the nearest playlists vote their tracks.

    score(prompt, item) = sum over the ``n_neighbors`` most similar training playlists ``p`` that
    hold the item of ``cos(prompt, p) ** similarity_power``. Similarity is the cosine of
    sublinear TF-IDF vectors of ``char_wb`` n-grams of the NFKC, case-folded prompt text.
    Defaults were chosen on the validation split of the MPD development data (see
    :func:`tune_title_knn`; split seed 0, 10% validation): ``char_wb`` (2, 4) n-grams,
    1000 neighbours, similarity ** 1.5 reached Hits@10 0.407 there, against 0.389 for 200
    neighbours with plain similarity; power 1.5 was best at every neighbour count from 200 up, and
    many weak neighbours with a sharpened weight act as a title-conditioned popularity prior.
    """

    name = "title_knn"

    def __init__(
        self,
        n_neighbors: int = 1000,
        ngram_range: tuple[int, int] = (2, 4),
        similarity_power: float = 1.5,
        min_df: int = 1,
    ) -> None:
        self.n_neighbors = int(n_neighbors)
        self.ngram_range = tuple(ngram_range)
        self.similarity_power = float(similarity_power)
        self.min_df = min_df

    def fit(self, train_playlists, vocab, tracks=None, item_factors=None):
        self._fit_common(train_playlists, vocab)
        # the same neighbours as the seq2seq's teacher (text2tracks.teacher)
        self._neighbors = TitleNeighbors(
            n_neighbors=self.n_neighbors,
            ngram_range=self.ngram_range,
            similarity_power=self.similarity_power,
            min_df=self.min_df,
        ).fit([p.prompt for p in self.train_playlists])
        return self

    def neighbor_weights(self, prompts) -> sp.csr_matrix:
        """``(n_prompts, n_train)`` similarity weights of each prompt's nearest playlists."""
        # the current n_neighbors / similarity_power (tune_title_knn changes them after fit)
        return self._neighbors.weights(
            list(prompts), n_neighbors=self.n_neighbors, similarity_power=self.similarity_power
        )

    def scores(self, prompts):
        return self.neighbor_weights(prompts) @ self.interactions


def tune_title_knn(
    train_playlists,
    validation_playlists,
    vocab: ItemVocab,
    grid: Mapping[str, Sequence] | None = None,
    k: int = 10,
    metric: str = "hits",
) -> tuple[dict, list[tuple[dict, float]]]:
    """Grid search of :class:`TitleKNNBaseline` settings on validation playlists only.

    Returns ``(best_params, [(params, mean metric@k), ...])``. The grid keys are constructor
    arguments; the default grid (9 settings, one vectoriser) covers ``n_neighbors`` and
    ``similarity_power`` at (2, 4) n-grams: on the MPD development data (2, 5) tied with (2, 4),
    and (1, 3) and (3, 5) were no better.
    """
    import itertools

    from eval.metrics import per_prompt_metrics, relevant_items

    grid = dict(
        grid
        or {
            "ngram_range": [(2, 4)],
            "n_neighbors": [50, 200, 1000],
            "similarity_power": [1.0, 1.5, 2.0],
        }
    )
    kept, relevant, _ = relevant_items(validation_playlists, vocab)
    prompts = [validation_playlists[i].prompt for i in kept]
    results: list[tuple[dict, float]] = []
    fitted: dict = {}
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        params = dict(zip(names, values, strict=True))
        build = {n: v for n, v in params.items() if n != "n_neighbors"}
        key = tuple(sorted((n, str(v)) for n, v in build.items()))
        if key not in fitted:
            fitted[key] = TitleKNNBaseline(**build).fit(train_playlists, vocab)
        model = fitted[key]
        model.n_neighbors = int(params.get("n_neighbors", 50))
        model.similarity_power = float(params.get("similarity_power", 1.0))
        score = float(per_prompt_metrics(model.recommend(prompts, k), relevant, k)[metric].mean())
        results.append((params, score))
    best = max(results, key=lambda item: item[1])[0]
    return best, results


# ---------------------------------------------------------------------------------------------
# BM25 over track text
# ---------------------------------------------------------------------------------------------


class BM25Baseline(Baseline):
    """BM25 (the ``bm25s`` library) with one document per catalogue track.

    A track's document is ``name artist album`` from ``tracks``; with ``expand_with_titles`` the
    prompts of the training playlists holding the track are appended, one copy per playlist
    (document expansion: a track in twenty "chill" playlists says "chill" twenty times, which
    BM25's saturating term frequency turns into a strong but bounded signal). Tokenisation is
    bm25s's: lower-case word tokens of two or more characters, English stop words removed.

    Measured on the validation split of the MPD development data (seed 0): Hits@10 0.223 without
    expansion, 0.215 with it, so expansion is off by default. Titles are short and shared by many
    playlists, and a popular track's document grows with every playlist holding it, so BM25's
    length normalisation works against exactly the tracks a title vote would favour (title kNN
    already uses that signal directly).
    """

    def __init__(self, expand_with_titles: bool = False, k1: float = 1.2, b: float = 0.75) -> None:
        self.expand_with_titles = bool(expand_with_titles)
        self.k1 = float(k1)
        self.b = float(b)
        self.name = "bm25_expanded" if self.expand_with_titles else "bm25"

    def fit(self, train_playlists, vocab, tracks=None, item_factors=None):
        import bm25s

        self._fit_common(train_playlists, vocab)
        tracks = tracks or {}
        texts = []
        for track_id in vocab.item_ids:
            track = tracks.get(track_id)
            parts = [] if track is None else [track.name, track.artist, track.album]
            texts.append(" ".join(p for p in parts if p))
        if self.expand_with_titles:
            by_item = self.interactions.tocsc()
            prompts = [p.prompt for p in self.train_playlists]
            for item in range(len(vocab)):
                holders = by_item.indices[by_item.indptr[item] : by_item.indptr[item + 1]]
                if holders.size:
                    texts[item] += " " + " ".join(prompts[r] for r in holders)
        if not any(t.strip() for t in texts):
            raise ValueError(
                "BM25 has no text to index: pass `tracks` with names/artists, or set "
                "expand_with_titles=True."
            )
        corpus_tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
        self._retriever = bm25s.BM25(k1=self.k1, b=self.b)
        self._retriever.index(corpus_tokens, show_progress=False)
        return self

    def scores(self, prompts):
        import bm25s

        tokenized = bm25s.tokenize(
            list(prompts), stopwords="en", return_ids=False, show_progress=False
        )
        vocab = self._retriever.vocab_dict
        out = np.zeros((len(prompts), len(self.vocab)), dtype=np.float32)
        for row, tokens in enumerate(tokenized):
            ids = [vocab[t] for t in tokens if t in vocab]
            if ids:
                out[row] = self._retriever.get_scores(ids)
        return out


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

BASELINES = {
    "popularity": PopularityBaseline,
    "exact_title": ExactTitleBaseline,
    "title_knn": TitleKNNBaseline,
    "bm25": BM25Baseline,
    "dense_biencoder": DenseBiEncoderBaseline,
}


def make_baseline(name: str, **kwargs) -> Baseline:
    """A baseline by its registry name, constructor arguments passed through."""
    try:
        return BASELINES[name](**kwargs)
    except KeyError:
        raise KeyError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}") from None
