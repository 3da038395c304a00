"""A title-kNN teacher: per training playlist, a weighted list of target tracks for the seq2seq.

Training the generator on each playlist's own tracks, one at a time, asks it to learn
``p(track | title)`` from very noisy samples: two "chill" playlists share few tracks. A teacher
that has already pooled the evidence gives a far cleaner target (DGR, ACL 2024, distils a
ranker's list into a generative retriever the same way). The teacher here is the title kNN that
is also the strongest baseline on MPD titles:

    score(prompt, item) = sum over the ``n_neighbors`` training playlists q most similar to the
                          prompt (cosine of sublinear TF-IDF ``char_wb`` n-grams, ties to the
                          lower playlist index) that hold the item, of
                          ``cos(prompt, q) ** similarity_power``

Per training playlist ``p`` the teacher scores the items for ``p``'s prompt over the *other*
training playlists (``leave_out=True``: ``p``'s own vote is removed, so that a title seen once
does not teach the model to copy its own tracks, which a held-out playlist never has), keeps the
``top_items`` best and blends in ``p``'s own tracks with weight ``own_weight`` (the ground truth
keeps the model honest where the teacher is weak, e.g. prompts with no similar title). The
result is a probability over items per playlist; :class:`text2tracks.data.Seq2SeqPairs` draws
the epoch's targets from it with replacement, so the model's maximum-likelihood answer is the
teacher's distribution and beam search returns its head.

How it scales (full MPD: 800k playlists, ~120-150k distinct titles, 2.2M items, ~66 per
playlist). Everything is sparse and done once per *distinct* title, in blocks of titles sized by
a byte budget (``max_block_bytes``), never a dense ``n_items`` row:

1. Neighbours. Equal titles have equal vectors, so similarities are computed between distinct
   titles only (``titles x titles``; char n-grams shared by most titles make this nearly
   dense, ~32 bytes per entry while a block is selected) and each distinct title's ``n``
   nearest are expanded to training playlists (a title held by many playlists counts that many
   times; at the boundary the lowest playlist indices win, as :func:`keep_top_per_row` on the
   playlist columns would). Cost: ~``titles**2`` sparse products.
2. Scores. ``weights (titles x playlists) @ interactions (playlists x items)``, a scipy sparse
   product, ~``n_neighbors x 66`` products per title (~40 ns each with its output entry, the
   largest term), ~32 bytes per nonzero score while a block is selected; then per title its
   top ``top_items + m`` items, ``m`` the longest own list among that title's playlists whose
   own vote counts (removing a vote only lowers that playlist's own items, so its new top
   ``top_items`` lies within that list).
3. Per playlist, vectorised: its title's list minus its own vote on its own items, the top
   ``top_items`` positive ones, blended with its own items as a sum of two sparse rows (~64
   bytes per candidate while a block is processed).

Memory: the result holds ~``top_items + 66`` entries per playlist, 8 bytes each (int32 item,
float32 probability; ~1.7 GB for 800k playlists, held twice while assembled in playlist order),
plus the interactions (8 bytes per track), the title vectors (~27 n-grams per distinct title)
and one block. Measured on a synthetic MPD-shaped set (Zipf titles and items), one core of a
busy 2-core machine: 100k playlists (34k titles) ~2.5 min, 800k (122k titles) ~14 min at
4.2 GiB peak RSS, the input included.

No torch here: the teacher runs once before training, on CPU (single-threaded scipy).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from text2tracks.ragged import Ragged, as_ragged

__all__ = ["TitleNeighbors", "TeacherTargets", "keep_top_per_row", "prompt_text", "teacher_targets"]

DEFAULT_BLOCK_BYTES = 256 << 20
_BYTES_PER_SIMILARITY = 32  # a title-title similarity while a block's neighbours are selected
_BYTES_PER_SCORE = 32  # a title's item score while its top list is selected
_BYTES_PER_CANDIDATE = 64  # a playlist's candidate item: expansion, leave-out, top, blend


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

    Training prompts with the same text (after :func:`prompt_text`) share one vector, so
    similarities are computed against the distinct titles and expanded to playlists.

    Args:
        n_neighbors: similar training prompts kept per query.
        ngram_range: ``char_wb`` n-gram sizes.
        similarity_power: kept similarities are raised to this power (sharpening).
        min_df: the vectoriser's minimum document frequency.
        max_block_bytes: memory budget of one block of query rows (~32 bytes per similarity to
            a distinct training title).
    """

    def __init__(
        self,
        n_neighbors: int = 1000,
        ngram_range: tuple[int, int] = (2, 4),
        similarity_power: float = 1.5,
        min_df: int = 1,
        max_block_bytes: int = DEFAULT_BLOCK_BYTES,
    ) -> None:
        if n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}")
        if max_block_bytes < 1:
            raise ValueError(f"max_block_bytes must be >= 1, got {max_block_bytes}")
        self.n_neighbors = int(n_neighbors)
        self.ngram_range = tuple(ngram_range)
        self.similarity_power = float(similarity_power)
        self.min_df = min_df
        self.max_block_bytes = int(max_block_bytes)

    def fit(self, texts: Sequence[str]) -> TitleNeighbors:
        """Fit the vectoriser on ``texts`` (each occurrence counts for the IDF) and keep one
        vector per distinct title: ``titles_`` (a representative text each), ``title_of_`` (per
        training prompt, its title), ``title_vectors_``, and the prompts grouped by title
        (``members_[member_ptr_[t]:member_ptr_[t + 1]]``, ascending)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(texts)
        self.vectorizer_ = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=self.ngram_range,
            preprocessor=prompt_text,
            sublinear_tf=True,
            min_df=self.min_df,
            dtype=np.float32,
        ).fit(texts)
        normal = np.asarray([prompt_text(t) for t in texts], dtype=object)
        _, first, title_of = np.unique(normal, return_index=True, return_inverse=True)
        self.title_of_ = title_of.reshape(-1).astype(np.int64)
        self.titles_ = [texts[i] for i in first]
        self.title_vectors_ = self.vectorizer_.transform(self.titles_).tocsr()
        self._title_vectors_t = self.title_vectors_.T.tocsr()
        self.members_ = np.argsort(self.title_of_, kind="stable")
        self.member_ptr_ = np.zeros(len(self.titles_) + 1, dtype=np.int64)
        np.cumsum(
            np.bincount(self.title_of_, minlength=len(self.titles_)), out=self.member_ptr_[1:]
        )
        return self

    @property
    def n_train(self) -> int:
        return int(self.title_of_.size)

    def weights(
        self,
        prompts: Sequence[str],
        n_neighbors: int | None = None,
        similarity_power: float | None = None,
    ) -> sp.csr_matrix:
        """``(n_prompts, n_train)`` sharpened similarities to each prompt's nearest neighbours.

        ``n_neighbors`` / ``similarity_power`` override the constructor's for this call (the
        vectoriser does not depend on them, so a grid over them reuses one fit). Computed in
        blocks of prompts; the result holds at most ``n_neighbors`` entries per prompt.
        """
        if not hasattr(self, "title_vectors_"):
            raise RuntimeError("TitleNeighbors.weights called before fit()")
        queries = self.vectorizer_.transform(list(prompts)).tocsr()
        blocks = [w for _, _, w in self.iter_weights(queries, n_neighbors, similarity_power)]
        if not blocks:
            return sp.csr_matrix((0, self.n_train), dtype=np.float32)
        return sp.vstack(blocks, format="csr")

    def iter_weights(
        self,
        queries: sp.csr_matrix,
        n_neighbors: int | None = None,
        similarity_power: float | None = None,
    ) -> Iterator[tuple[int, int, sp.csr_matrix]]:
        """``(start, stop, weights)`` per block of rows of the vectorised ``queries``: the
        block's ``(stop - start, n_train)`` sharpened similarities, as :meth:`weights`."""
        n = self.n_neighbors if n_neighbors is None else int(n_neighbors)
        power = self.similarity_power if similarity_power is None else float(similarity_power)
        per_row = _BYTES_PER_SIMILARITY * max(1, len(self.titles_))
        step = max(1, self.max_block_bytes // per_row)
        for start in range(0, queries.shape[0], step):
            stop = min(start + step, queries.shape[0])
            sims = (queries[start:stop] @ self._title_vectors_t).tocsr()
            sims.eliminate_zeros()
            yield start, stop, self._expand_top(sims, n, power)

    def _expand_top(self, sims: sp.csr_matrix, n: int, power: float) -> sp.csr_matrix:
        """Per row of ``(rows, titles)`` similarities, the ``n`` most similar training prompts
        (ties to the lower prompt index), as ``(rows, n_train)`` similarities ** power."""
        rows = sims.shape[0]
        counts = np.diff(self.member_ptr_)
        # the n-th largest title similarity bounds the kept ones from below (a title holds >= 1
        # prompt); equal values stay in, the exact cut by prompt index is made below
        at, counts_per_row = _row_top(sims.indptr, sims.data, np.full(rows, n), keep_ties=True)
        row = np.repeat(np.arange(rows), counts_per_row)
        title, value = sims.indices[at], sims.data[at]
        order = np.lexsort((-value, row))
        row, title, value = row[order], title[order], value[order]
        # groups of equal value in a row; prompts in groups before this one
        first = np.ones(row.size, dtype=bool)
        first[1:] = (row[1:] != row[:-1]) | (value[1:] != value[:-1])
        starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        size = np.add.reduceat(counts[title], starts) if starts.size else np.zeros(0, np.int64)
        before = np.cumsum(size) - size
        row_start = np.ones(starts.size, dtype=bool)
        row_start[1:] = row[starts[1:]] != row[starts[:-1]]
        before -= np.maximum.accumulate(np.where(row_start, before, 0))
        full = before + size <= n
        boundary = (before < n) & ~full
        need = np.zeros(rows, dtype=np.int64)
        need[row[starts[boundary]]] = n - before[boundary]
        take = full[group] | boundary[group]
        row, title, value, cut = row[take], title[take], value[take], boundary[group][take]
        # expand titles to their prompts
        sizes = counts[title]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        flat = np.repeat(self.member_ptr_[title] - offsets[:-1], sizes)
        col = self.members_[flat + np.arange(flat.size)]
        row, value, cut = np.repeat(row, sizes), np.repeat(value, sizes), np.repeat(cut, sizes)
        keep = ~cut
        at = np.flatnonzero(cut)
        at = at[np.lexsort((col[at], row[at]))]
        keep[at[_rank_in_runs(row[at]) < need[row[at]]]] = True
        data = np.power(np.maximum(value[keep], 0.0), power).astype(np.float32)
        out = sp.csr_matrix((data, (row[keep], col[keep])), shape=(rows, self.n_train))
        out.sort_indices()
        return out


def _rank_in_runs(keys: np.ndarray) -> np.ndarray:
    """Position of each entry within its run of equal consecutive ``keys``."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.ones(keys.size, dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    starts = np.flatnonzero(first)
    return np.arange(keys.size) - np.repeat(starts, np.diff(np.append(starts, keys.size)))


def _row_top(
    indptr: np.ndarray, data: np.ndarray, k: np.ndarray, keep_ties: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (ascending) of each CSR row's ``k[row]`` largest values, and their count per
    row; ``keep_ties`` also keeps the values equal to the ``k``-th, else ties go to the first
    stored. One ``np.partition`` per row longer than ``k``, in C over the row's values."""
    lengths = np.diff(indptr)
    long = np.flatnonzero(lengths > k)
    counts = lengths.copy()
    keep = np.repeat(lengths <= k, lengths)
    for r in long.tolist():
        a, b = int(indptr[r]), int(indptr[r + 1])
        seg = data[a:b]
        at = b - a - int(k[r])
        floor = np.partition(seg, at)[at]
        if keep_ties:
            sel = seg >= floor
        else:
            sel = seg > floor
            sel[np.flatnonzero(seg == floor)[: int(k[r]) - int(np.count_nonzero(sel))]] = True
        keep[a:b] = sel
        counts[r] = np.count_nonzero(sel)
    return np.flatnonzero(keep), counts


def _top_k(matrix: sp.csr_matrix, k: np.ndarray) -> sp.csr_matrix:
    """``matrix`` with only each row's ``k[row]`` largest entries (ties: the first stored)."""
    at, counts = _row_top(matrix.indptr, matrix.data, k)
    indptr = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return sp.csr_matrix((matrix.data[at], matrix.indices[at], indptr), shape=matrix.shape)


def _filter_csr(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """The entries of ``matrix`` where ``keep`` holds, in their order."""
    counts = np.concatenate([[0], np.cumsum(keep)])[matrix.indptr]
    return sp.csr_matrix((matrix.data[keep], matrix.indices[keep], counts), shape=matrix.shape)


@dataclass
class TeacherTargets:
    """Per playlist, target items and their probabilities (each row sums to 1).

    ``items`` (int32) and ``weights`` (float32) are :class:`Ragged` sharing one ``indptr``;
    ``items[p]`` holds sorted distinct items. A playlist without a catalogue track and without
    teacher evidence has empty rows.
    """

    items: Ragged
    weights: Ragged

    def __len__(self) -> int:
        return len(self.items)


def teacher_targets(
    prompts: Sequence[str],
    relevant: Sequence[Sequence[int]] | Ragged,
    n_items: int,
    top_items: int = 200,
    own_weight: float = 0.0,
    leave_out: bool = True,
    n_neighbors: int = 1000,
    similarity_power: float = 1.5,
    max_block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: bool | None = None,
) -> TeacherTargets:
    """Title-kNN targets for every training playlist (see the module docstring).

    Args:
        prompts: per training playlist, its prompt text.
        relevant: per training playlist, its catalogue item indices (lists or a :class:`Ragged`).
        n_items: catalogue size.
        top_items: teacher items kept per playlist (the tail carries little probability).
        own_weight: in [0, 1]; the share of probability given to the playlist's own tracks
            (uniform over them); the teacher's list gets ``1 - own_weight``. 1 is plain
            one-playlist training.
        leave_out: remove the playlist's own vote from its teacher scores.
        n_neighbors, similarity_power: the kNN's settings.
        max_block_bytes: memory budget of one block of distinct titles (see the module
            docstring); a single title over it is processed alone.
        progress: a progress bar over distinct titles (``None``: when stderr is a terminal).

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
    if max_block_bytes < 1:
        raise ValueError(f"max_block_bytes must be >= 1, got {max_block_bytes}")
    own = as_ragged(relevant, np.int64)
    interactions = _interaction_matrix(own, n_items)
    out = _Collector(n)
    if n == 0:
        return out.result()
    nb = TitleNeighbors(
        n_neighbors=n_neighbors,
        similarity_power=similarity_power,
        max_block_bytes=max_block_bytes,
    ).fit(prompts)
    from tqdm import tqdm

    bar = tqdm(
        total=len(nb.titles_),
        desc="teacher",
        unit="title",
        disable=None if progress is None else not progress,
    )
    lengths = own.lengths()
    own_max = np.maximum.reduceat(lengths[nb.members_], nb.member_ptr_[:-1])
    members = np.diff(nb.member_ptr_)
    with bar:
        for lo, _, weights in nb.iter_weights(nb.title_vectors_):
            cost = _title_costs(weights, lengths, n_items, members[lo:], top_items + own_max[lo:])
            for a, b in _split_by_cost(cost, max_block_bytes):
                part = _Block(nb, (interactions, lengths), weights[a:b], lo + a)
                out.add(part.members, part.targets(top_items, own_weight, leave_out))
                bar.update(b - a)
    return out.result()


def _title_costs(
    weights: sp.csr_matrix,
    lengths: np.ndarray,
    n_items: int,
    members: np.ndarray,
    candidates: np.ndarray,
) -> np.ndarray:
    """Bytes per title row of ``weights`` while its block is processed: its scores (at most
    one per product, at most ``n_items``) and its ``members`` playlists' ``candidates``."""
    reach = np.concatenate([[0], np.cumsum(lengths[weights.indices])])
    ops = np.minimum(reach[weights.indptr[1:]] - reach[weights.indptr[:-1]], n_items)
    rows = weights.shape[0]
    return _BYTES_PER_SCORE * ops + _BYTES_PER_CANDIDATE * members[:rows] * candidates[:rows]


def _split_by_cost(cost: np.ndarray, budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive ``[a, b)`` ranges of rows whose summed ``cost`` stays within ``budget`` (a
    row over it alone)."""
    a, total = 0, 0
    for i, c in enumerate(cost.tolist()):
        if i > a and total + c > budget:
            yield a, i
            a, total = i, 0
        total += c
    if a < cost.size:
        yield a, cost.size


class _Block:
    """Consecutive distinct titles ``[first, first + rows)`` and their training playlists."""

    def __init__(self, nb, playlists, weights, first):
        """``playlists``: the interactions and the own list lengths."""
        self.interactions, self.lengths = playlists
        self.weights = weights
        rows = weights.shape[0]
        self.members = nb.members_[nb.member_ptr_[first] : nb.member_ptr_[first + rows]]
        self.local = nb.title_of_[self.members] - first

    def targets(self, top_items: int, own_weight: float, leave_out: bool) -> sp.csr_matrix:
        """Per member playlist, its blended ``(items, probabilities)`` as CSR rows."""
        rows, members, local = self.weights.shape[0], self.members, self.local
        vote = np.zeros(members.size, dtype=np.float32)
        if leave_out and members.size:
            vote = np.asarray(self.weights[local, members], dtype=np.float32).ravel()
        # per title: its top items, enough for each voting playlist to lose its own
        longest = np.zeros(rows, dtype=np.int64)
        np.maximum.at(longest, local[vote > 0], self.lengths[members][vote > 0])
        # not (interactions.T @ weights.T).T: faster on small data, but each product visits
        # every (item, playlist) pair, ~0.2 s per block at 800k playlists
        scores = (self.weights @ self.interactions).tocsr()
        lists = _top_k(scores, top_items + longest)
        lists = _filter_csr(lists, lists.data > 0)
        lists.sort_indices()
        cand = lists[local]
        own = self.interactions[members]
        own.sum_duplicates()
        if vote.any():
            cand = (cand - sp.diags(vote) @ own).tocsr()
            cand = _filter_csr(cand, cand.data > 0)
        top = _top_k(cand, np.full(members.size, top_items))
        return _blend_rows(top, own, self.lengths[members], own_weight)


def _blend_rows(
    teacher: sp.csr_matrix, own: sp.csr_matrix, own_lengths: np.ndarray, own_weight: float
) -> sp.csr_matrix:
    """Per row: the teacher's scores (normalised) get ``1 - own_weight``, the row's own items
    ``own_weight`` (uniform over its ``own_lengths`` tracks, a repeated track counting each
    time); a side without evidence gives its share to the other. Rows of sorted items."""
    mass = np.asarray(teacher.sum(axis=1), dtype=np.float64).ravel()
    has_teacher, has_own = mass > 0, own_lengths > 0
    both = has_teacher & has_own
    teacher_share = np.where(both, 1.0 - own_weight, has_teacher.astype(np.float64))
    own_share = np.where(both, own_weight, has_own.astype(np.float64))
    t_scale = np.divide(teacher_share, mass, out=np.zeros_like(mass), where=has_teacher)
    o_scale = own_share / np.maximum(own_lengths, 1)
    t = sp.csr_matrix(
        (
            teacher.data * np.repeat(t_scale, np.diff(teacher.indptr)),
            teacher.indices,
            teacher.indptr,
        ),
        shape=teacher.shape,
    )
    o = sp.csr_matrix(
        (own.data * np.repeat(o_scale, np.diff(own.indptr)), own.indices, own.indptr),
        shape=own.shape,
    )
    t.sort_indices()
    return (t + o).tocsr()


class _Collector:
    """Per block, the blended rows of some playlists; assembled in playlist order at the end."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[tuple[np.ndarray, sp.csr_matrix]] = []

    def add(self, playlists: np.ndarray, rows: sp.csr_matrix) -> None:
        rows.sum_duplicates()
        self.parts.append(
            (
                playlists,
                sp.csr_matrix(
                    (rows.data.astype(np.float32), rows.indices.astype(np.int32), rows.indptr),
                    shape=rows.shape,
                ),
            )
        )

    def result(self) -> TeacherTargets:
        lengths = np.zeros(self.n, dtype=np.int64)
        for playlists, rows in self.parts:
            lengths[playlists] = np.diff(rows.indptr)
        indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.zeros(int(indptr[-1]), dtype=np.int32)
        weights = np.zeros(int(indptr[-1]), dtype=np.float32)
        while self.parts:
            playlists, rows = self.parts.pop()
            sizes = np.diff(rows.indptr)
            dest = np.repeat(indptr[playlists] - rows.indptr[:-1], sizes) + np.arange(rows.nnz)
            items[dest] = rows.indices
            weights[dest] = rows.data
        return TeacherTargets(Ragged(indptr, items), Ragged(indptr, weights))


def _interaction_matrix(own: Ragged, n_items: int) -> sp.csr_matrix:
    """``(n_playlists, n_items)`` float32 0/1 matrix of the playlists' catalogue items (a
    repeated item stays a repeated entry, counted twice by products)."""
    items = own.values
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ValueError("a relevant item index is outside the catalogue")
    index = np.int32 if n_items < 2**31 and items.size < 2**31 else np.int64
    return sp.csr_matrix(
        (np.ones(items.size, dtype=np.float32), items.astype(index), own.indptr.astype(index)),
        shape=(len(own), n_items),
    )
