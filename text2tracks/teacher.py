"""A title-kNN teacher: per training playlist, a weighted list of target tracks for the seq2seq.

Training the generator on each playlist's own tracks, one at a time, asks it to learn
``p(track | title)`` from very noisy samples: two "chill" playlists share few tracks. A teacher
that has already pooled the evidence gives a far cleaner target (DGR, ACL 2024, distils a
ranker's list into a generative retriever the same way). The teacher here is the title kNN that
is also the strongest baseline on MPD titles:

    score(prompt, item) = sum over the ``n_neighbors`` training playlists q most similar to the
                          prompt (cosine of sublinear TF-IDF ``char_wb`` n-grams) that hold the
                          item, of ``cos(prompt, q) ** similarity_power``

Per training playlist ``p`` the teacher scores the items for ``p``'s prompt over the *other*
training playlists (``leave_out=True``: ``p``'s own vote is removed, so that a title seen once
does not teach the model to copy its own tracks, which a held-out playlist never has), keeps the
``top_items`` best and blends in ``p``'s own tracks with weight ``own_weight`` (the ground truth
keeps the model honest where the teacher is weak, e.g. prompts with no similar title). The
result is a probability over items per playlist; :class:`text2tracks.data.Seq2SeqPairs` draws
the epoch's targets from it with replacement, so the model's maximum-likelihood answer is the
teacher's distribution and beam search returns its head.

Written with scikit-learn's ``TfidfVectorizer`` and scipy sparse products; the top-N per row
selection and the blending are the only hand-written parts (no library keeps the N largest
entries of each row of a sparse matrix).

No torch here: the teacher runs once before training, on CPU, in seconds.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["TitleNeighbors", "TeacherTargets", "keep_top_per_row", "prompt_text", "teacher_targets"]


def prompt_text(text: str) -> str:
    """Preprocessing of prompt text before n-gram features: NFKC and case folding."""
    return unicodedata.normalize("NFKC", text or "").casefold()


def keep_top_per_row(matrix: sp.csr_matrix, n: int, power: float) -> sp.csr_matrix:
    """Keep the ``n`` largest positive entries of each row (ties to the lower column), ** power."""
    matrix = matrix.tocsr()
    matrix.eliminate_zeros()
    lengths = np.diff(matrix.indptr)
    if lengths.size == 0 or lengths.max(initial=0) <= n:
        kept = matrix.copy()
    else:
        rows = np.repeat(np.arange(matrix.shape[0]), lengths)
        # within each row: descending value, then ascending column
        order = np.lexsort((matrix.indices, -matrix.data, rows))
        rank = np.arange(order.size) - np.repeat(matrix.indptr[:-1], lengths)
        keep = order[rank < n]
        kept = sp.csr_matrix(
            (matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape
        )
    kept.data = np.power(np.maximum(kept.data, 0.0), power).astype(np.float32)
    return kept


class TitleNeighbors:
    """TF-IDF character n-gram similarity between prompts and a fixed set of training prompts.

    Args:
        n_neighbors: similar training prompts kept per query.
        ngram_range: ``char_wb`` n-gram sizes.
        similarity_power: kept similarities are raised to this power (sharpening).
        min_df: the vectoriser's minimum document frequency.
    """

    def __init__(
        self,
        n_neighbors: int = 1000,
        ngram_range: tuple[int, int] = (2, 4),
        similarity_power: float = 1.5,
        min_df: int = 1,
    ) -> None:
        if n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}")
        self.n_neighbors = int(n_neighbors)
        self.ngram_range = tuple(ngram_range)
        self.similarity_power = float(similarity_power)
        self.min_df = min_df

    def fit(self, texts: Sequence[str]) -> TitleNeighbors:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer_ = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=self.ngram_range,
            preprocessor=prompt_text,
            sublinear_tf=True,
            min_df=self.min_df,
            dtype=np.float32,
        )
        self.train_vectors_ = self.vectorizer_.fit_transform(list(texts)).tocsr()
        return self

    def weights(
        self,
        prompts: Sequence[str],
        n_neighbors: int | None = None,
        similarity_power: float | None = None,
    ) -> sp.csr_matrix:
        """``(n_prompts, n_train)`` sharpened similarities to each prompt's nearest neighbours.

        ``n_neighbors`` / ``similarity_power`` override the constructor's for this call (the
        vectoriser does not depend on them, so a grid over them reuses one fit).
        """
        if not hasattr(self, "train_vectors_"):
            raise RuntimeError("TitleNeighbors.weights called before fit()")
        queries = self.vectorizer_.transform(list(prompts)).tocsr()
        sims = (queries @ self.train_vectors_.T).tocsr()
        return keep_top_per_row(
            sims,
            self.n_neighbors if n_neighbors is None else int(n_neighbors),
            self.similarity_power if similarity_power is None else float(similarity_power),
        )


@dataclass
class TeacherTargets:
    """Per playlist, target items and their probabilities (each row sums to 1).

    ``items[p]`` int64 and ``weights[p]`` float64 hold the same number of entries; a playlist
    without a catalogue track and without teacher evidence has empty arrays.
    """

    items: list[np.ndarray]
    weights: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.items)


def teacher_targets(
    prompts: Sequence[str],
    relevant: Sequence[Sequence[int]],
    n_items: int,
    top_items: int = 200,
    own_weight: float = 0.0,
    leave_out: bool = True,
    n_neighbors: int = 1000,
    similarity_power: float = 1.5,
    chunk_rows: int = 512,
) -> TeacherTargets:
    """Title-kNN targets for every training playlist (see the module docstring).

    Args:
        prompts: per training playlist, its prompt text.
        relevant: per training playlist, its catalogue item indices.
        n_items: catalogue size.
        top_items: teacher items kept per playlist (the tail carries little probability).
        own_weight: in [0, 1]; the share of probability given to the playlist's own tracks
            (uniform over them); the teacher's list gets ``1 - own_weight``. 1 is plain
            one-playlist training.
        leave_out: remove the playlist's own vote from its teacher scores.
        n_neighbors, similarity_power: the kNN's settings.
        chunk_rows: playlists scored per dense block (memory: ``chunk_rows * n_items`` floats).

    Returns:
        :class:`TeacherTargets` aligned with ``prompts``.
    """
    n = len(prompts)
    if len(relevant) != n:
        raise ValueError(f"prompts and relevant differ in length: {n} and {len(relevant)}")
    if not 0.0 <= own_weight <= 1.0:
        raise ValueError(f"own_weight must be in [0, 1], got {own_weight}")
    if top_items < 1:
        raise ValueError(f"top_items must be >= 1, got {top_items}")
    interactions = _interaction_matrix(relevant, n_items)
    neighbors = TitleNeighbors(n_neighbors=n_neighbors, similarity_power=similarity_power)
    neighbors.fit(prompts)
    # equal prompts get equal neighbours: score each distinct prompt once
    unique, inverse = np.unique(
        np.asarray([prompt_text(p) for p in prompts], dtype=object), return_inverse=True
    )
    first = np.zeros(unique.size, dtype=np.int64)
    first[inverse[::-1]] = np.arange(n)[::-1]
    items_out: list[np.ndarray] = [np.zeros(0, np.int64)] * n
    weights_out: list[np.ndarray] = [np.zeros(0, np.float64)] * n
    order = np.argsort(inverse, kind="stable")  # playlists grouped by distinct prompt
    for start in range(0, n, chunk_rows):
        rows = order[start : start + chunk_rows]
        distinct, local = np.unique(inverse[rows], return_inverse=True)
        weights = neighbors.weights([prompts[first[d]] for d in distinct])
        scores = (weights @ interactions).toarray()[local]  # (rows, n_items)
        if leave_out:
            # the playlist's own vote: its similarity to its own prompt (1 up to rounding) ** power
            own = np.asarray(weights[local, rows]).ravel()
            own_rows = interactions[rows]
            scores -= own_rows.multiply(own[:, None]).toarray()
            np.maximum(scores, 0.0, out=scores)
        kk = min(top_items, n_items)
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        for r, p in enumerate(rows):
            cand = top[r][scores[r, top[r]] > 0]
            mine = np.asarray(relevant[p], dtype=np.int64)
            items_out[p], weights_out[p] = _blend(
                cand, scores[r, cand].astype(np.float64), mine, own_weight
            )
    return TeacherTargets(items_out, weights_out)


def _interaction_matrix(relevant: Sequence[Sequence[int]], n_items: int) -> sp.csr_matrix:
    """``(n_playlists, n_items)`` float32 0/1 matrix of the playlists' catalogue items."""
    n = len(relevant)
    lengths = np.fromiter((len(r) for r in relevant), dtype=np.int64, count=n)
    cols = (
        np.concatenate([np.asarray(r, dtype=np.int64) for r in relevant])
        if lengths.sum()
        else np.zeros(0, dtype=np.int64)
    )
    if cols.size and (cols.min() < 0 or cols.max() >= n_items):
        raise ValueError("a relevant item index is outside the catalogue")
    return sp.csr_matrix(
        (np.ones(cols.size, dtype=np.float32), cols, np.concatenate([[0], np.cumsum(lengths)])),
        shape=(n, n_items),
    )


def _blend(
    cand: np.ndarray, w: np.ndarray, mine: np.ndarray, own_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """One playlist's ``(items, probabilities)``: the teacher's candidates ``cand`` (scores
    ``w``) get ``1 - own_weight``, its own tracks ``mine`` (uniformly) ``own_weight``; a side
    without evidence gives its share to the other."""
    has_teacher, has_own = bool(w.sum() > 0), bool(mine.size)
    if has_teacher and has_own:
        teacher_share, own_share = 1.0 - own_weight, own_weight
    else:
        teacher_share, own_share = float(has_teacher), float(has_own)
    prob = np.zeros(0, np.float64)
    item = np.zeros(0, np.int64)
    if teacher_share:
        item, prob = cand, teacher_share * w / w.sum()
    if own_share:
        item = np.concatenate([item, mine])
        prob = np.concatenate([prob, np.full(mine.size, own_share / mine.size)])
    if item.size:
        item, where = np.unique(item, return_inverse=True)
        prob = np.bincount(where, weights=prob, minlength=item.size)
    return item, prob
