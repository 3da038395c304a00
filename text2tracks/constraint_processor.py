"""The logits processor of constrained beam search: only valid semantic-ID continuations.

:class:`SIDConstraintProcessor` masks the scores of every beam at once with tensor ops (each
beam's prefix node, then one row gather from a dense parent -> allowed-codes table of the current
level, or a gather of the node's CSR child range and a scatter, written into the current level's
block of the vocabulary only): no Python call per beam per step. The prefix node costs O(1)
tensor ops per step, whatever the depth: each beam's prefix minus its last token is matched to
a row of the previous step (beam search extends the previous step's beams), whose node is
known, and one ``searchsorted`` step goes down from there; a full ``searchsorted`` walk from the
root (one op per level) is the fallback when no previous row matches. That matters for content
IDs (:mod:`semantic_ids.content_ids`), whose tries are ~49 levels deep: a walk from the root at
every step would cost O(depth^2) tensor ops per decode. Dense tables are used level by level
while their total size stays within a budget (``dense_limit``, see :func:`dense_levels`), so a
deep trie never holds one dense table per level. In transformers 5.x beam search, custom logits
processors run on ``log_softmax`` output (log-probabilities), and the result is only added to
the running beam scores and passed to ``topk`` (no softmax after it), so a row of ``-inf`` (an
impossible beam) yields no NaN.

:func:`text2tracks.decoding.constrained_generate` runs ``model.generate`` with it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from text2tracks.decoding_args import check_int, normalise_exclude
from text2tracks.tokens import SIDTokenLayout
from text2tracks.trie import FlatTrie

_NEG_INF = float("-inf")
_HASH_PRIME = 2_147_483_647  # 2^31 - 1: products of two residues stay below 2^62


class SIDConstraintProcessor(LogitsProcessor):
    """Allows only valid continuations of each beam's semantic-ID prefix, for all beams at once.

    Args:
        trie: the catalogue's :class:`FlatTrie` (its level sizes must equal the layout's).
        layout: where each level's SID tokens sit in the vocabulary.
        eos_token_id: the token allowed (alone) after ``depth`` SID tokens.
        pad_token_id: the token allowed after EOS (finished beams kept alive); EOS if ``None``.
        exclude: optional, one collection of item indices per prompt row that must never be
            returned; their leaves and every prefix whose whole subtree is excluded are masked,
            so beam search still fills k slots with other items.
        num_beams: rows of the ``(batch * num_beams)`` input map to prompt rows by
            ``row // num_beams`` (only used with ``exclude``).
        decoder_prompt_len: decoder positions before the first SID token (1: the start token).
        dense_limit: budget, in bytes (bools), of all the dense tables together. Levels in order
            get a dense table (parent -> allowed codes, ``n_parents * level_size`` bools, cached
            on the trie: one row gather per step) while the running total stays within it; the
            other levels gather each parent's CSR child range and scatter it into the block.
            Both give the same masks. See :func:`dense_levels`.

    At step ``t`` (``t = cur_len - decoder_prompt_len`` SID tokens written), only level ``t``'s
    block can be valid, so the mask is built inside that block only: find each beam's prefix node
    (from its parent row of the previous call, else a walk from the root), look up its children,
    prune excluded children of its prompt, and copy the allowed scores into a tensor of ``-inf``.
    Returns new scores; the input is never modified. A beam whose prefix is not in the trie gets
    a row of ``-inf``. The processor remembers the last call's prefixes and nodes (one
    processor per ``generate`` call); they are a pure function of each prefix and prompt, so a
    call that does not continue the previous one simply walks from the root.
    """

    def __init__(
        self,
        trie: FlatTrie,
        layout: SIDTokenLayout,
        eos_token_id: int,
        pad_token_id: int | None = None,
        exclude: Sequence[Iterable[int]] | None = None,
        num_beams: int = 1,
        decoder_prompt_len: int = 1,
        dense_limit: int = 1 << 26,
    ) -> None:
        if not isinstance(trie, FlatTrie):
            raise ValueError(f"trie must be a FlatTrie, got {type(trie).__name__}")
        if not isinstance(layout, SIDTokenLayout):
            raise ValueError(f"layout must be a SIDTokenLayout, got {type(layout).__name__}")
        if tuple(layout.level_sizes) != tuple(trie.level_sizes):
            raise ValueError(
                f"the trie's level sizes {trie.level_sizes} differ from the layout's "
                f"{tuple(layout.level_sizes)}"
            )
        self.eos_token_id = check_int("eos_token_id", eos_token_id)
        self.pad_token_id = (
            self.eos_token_id if pad_token_id is None else check_int("pad_token_id", pad_token_id)
        )
        for name, tok in (("eos_token_id", self.eos_token_id), ("pad_token_id", self.pad_token_id)):
            for lv, (off, size) in enumerate(zip(layout.offsets, layout.level_sizes, strict=True)):
                if off <= tok < off + size:
                    raise ValueError(
                        f"{name} ({tok}) must not be a semantic-ID token, but it lies in level "
                        f"{lv}'s block [{off}, {off + size})"
                    )
        self.num_beams = check_int("num_beams", num_beams, 1)
        self.decoder_prompt_len = check_int("decoder_prompt_len", decoder_prompt_len, 0)
        self.trie = trie
        self.layout = layout
        self.depth = trie.depth
        self.exclude = normalise_exclude(exclude, trie)
        self.dense_limit = check_int("dense_limit", dense_limit)
        # per level: dense child mask (parent -> allowed codes) within the budget, else CSR gather
        self._dense = dense_levels(trie, self.dense_limit)
        # last call's (codes (rows, t), node, ok): the parents of the next call's prefixes
        self._state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._excl_np: list[dict[str, np.ndarray | int]] | None = None
        if self.exclude is not None:
            for r, items in enumerate(self.exclude):
                if items.size >= trie.n_items:
                    raise ValueError(
                        f"exclude[{r}] excludes all {trie.n_items} items: nothing left to decode"
                    )
            per_level: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(self.depth)]
            for r, items in enumerate(self.exclude):
                for lv, nodes in enumerate(trie.excluded_nodes(items)):
                    per_level[lv].append((r, nodes))
            self._excl_np = []
            for lv, entries in enumerate(per_level):
                rows = np.concatenate([np.full(len(n), r, dtype=np.int64) for r, n in entries])
                nodes = np.concatenate([n for _, n in entries]).astype(np.int64)
                # (prompt, node) keys: is a prefix excluded for this prompt?
                node_keys = np.sort(rows * trie.n_nodes(lv) + nodes)
                # (prompt, parent) keys with the excluded child's code, for the dense mask
                parent_keys = rows * trie.n_parents(lv) + trie.node_parent[lv][nodes]
                order = np.argsort(parent_keys, kind="stable")
                parent_keys = parent_keys[order]
                _, counts = np.unique(parent_keys, return_counts=True)
                self._excl_np.append(
                    {
                        "node_keys": node_keys,
                        "parent_keys": parent_keys,
                        "codes": trie.node_code[lv][nodes][order],
                        "max_per_parent": int(counts.max()) if counts.size else 0,
                    }
                )
        self._cache: dict[torch.device, dict] = {}

    # ------------------------------------------------------------------ device tensors
    def _tensors(self, device: torch.device) -> dict:
        cached = self._cache.get(device)
        if cached is not None:
            return cached
        cached = dict(_trie_tensors(self.trie, device, self._dense))
        cached["offsets"] = torch.tensor(self.layout.offsets, dtype=torch.long, device=device)
        generator = torch.Generator().manual_seed(0)
        cached["hash_weights"] = torch.randint(
            1, _HASH_PRIME, (max(1, self.depth),), generator=generator
        ).to(device)
        if self._excl_np is not None:
            cached["excl"] = [
                {
                    "node_keys": _as_long(e["node_keys"], device),
                    "parent_keys": _as_long(e["parent_keys"], device),
                    "codes": _as_long(e["codes"], device),
                    "arange": torch.arange(e["max_per_parent"], device=device),
                }
                for e in self._excl_np
            ]
        self._cache[device] = cached
        return cached

    @staticmethod
    def _is_in(sorted_keys: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        if sorted_keys.numel() == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        pos = torch.searchsorted(sorted_keys, keys).clamp_(max=sorted_keys.numel() - 1)
        return sorted_keys[pos] == keys

    def _descend(self, lv: int, node, ok, code, prow, d: dict):
        """One level down: the level-``lv`` child with ``code`` of each level ``lv - 1`` ``node``."""
        size = self.trie.level_sizes[lv]
        keys = d["keys"][lv]
        ok = ok & (code >= 0) & (code < size)
        key = node * size + code
        pos = torch.searchsorted(keys, key).clamp_(max=keys.numel() - 1)
        ok &= keys[pos] == key
        if prow is not None:
            ok &= ~self._is_in(d["excl"][lv]["node_keys"], prow * self.trie.n_nodes(lv) + pos)
        return pos.masked_fill_(~ok, 0), ok

    def _walk(self, codes: torch.Tensor, prow: torch.Tensor | None, d: dict):
        """Node ids (at level t-1) of the prefixes ``codes`` (rows, t) and whether each is valid."""
        n_rows, t = codes.shape
        node = torch.zeros(n_rows, dtype=torch.long, device=codes.device)
        ok = torch.ones(n_rows, dtype=torch.bool, device=codes.device)
        for lv in range(t):
            node, ok = self._descend(lv, node, ok, codes[:, lv], prow, d)
        return node, ok

    @staticmethod
    def _row_hash(codes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Fingerprint of each row: ``sum(code_i * w_i) mod p`` with random weights (a universal
        hash: two different rows collide with probability ~1/p, p ~ 2^31; no int64 overflow)."""
        terms = (codes.remainder(_HASH_PRIME) * weights[: codes.shape[1]]).remainder_(_HASH_PRIME)
        return terms.sum(dim=1)

    def _parent_rows(
        self, prev: torch.Tensor, cur: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor | None:
        """For each row of ``cur`` (rows, t-1), a row of ``prev`` (rows, t-1) of the same prompt
        (rows ``num_beams`` at a time) holding the same prefix; ``None`` if a row has none.

        Candidates come from equal fingerprints (prompts x beams x beams), then every chosen
        pair is checked token by token, so a fingerprint collision only costs a full walk.
        """
        n_rows, width = cur.shape
        g = self.num_beams
        if n_rows % g:
            return None
        b = n_rows // g
        # (prompts, beams, beams): beam i's prefix fingerprint equals the previous beam j's
        same = self._row_hash(cur, weights).view(b, g, 1) == self._row_hash(prev, weights).view(
            b, 1, g
        )
        first = same.to(torch.int32).argmax(dim=-1)  # the first candidate (0 if none)
        parent = (torch.arange(b, device=cur.device)[:, None] * g + first).reshape(-1)
        if not bool((prev[parent] == cur).all()):
            return None
        return parent

    def _prefix_nodes(self, codes: torch.Tensor, prow: torch.Tensor | None, d: dict):
        """Node (at level t-1) and validity of each prefix ``codes`` (rows, t); remembers them."""
        n_rows, t = codes.shape
        state, found = self._state, None
        if (
            t > 0
            and state is not None
            and state[0].shape == (n_rows, t - 1)
            and state[0].device == codes.device
        ):
            parent = self._parent_rows(state[0], codes[:, : t - 1], d["hash_weights"])
            if parent is not None:
                found = self._descend(
                    t - 1, state[1][parent], state[2][parent], codes[:, t - 1], prow, d
                )
        node, ok = found if found is not None else self._walk(codes, prow, d)
        self._state = (codes, node, ok)
        return node, ok

    def _block_mask_dense(self, t: int, node, ok, prow, d: dict) -> torch.Tensor:
        """Bool (rows, level_size) mask from the dense child table: one row gather."""
        mask = d["child_mask"][t][node] & ok[:, None]
        if prow is not None and d["excl"][t]["parent_keys"].numel():
            e = d["excl"][t]
            q = prow * self.trie.n_parents(t) + node
            lo = torch.searchsorted(e["parent_keys"], q, side="left")
            hi = torch.searchsorted(e["parent_keys"], q, side="right")
            idx = lo[:, None] + e["arange"][None, :]
            hit = idx < hi[:, None]
            size = self.trie.level_sizes[t]
            col = torch.where(
                hit, e["codes"][idx.clamp_(max=e["codes"].numel() - 1)], torch.full_like(idx, size)
            )
            keep = torch.ones(mask.shape[0], size + 1, dtype=torch.bool, device=mask.device)
            keep.scatter_(1, col, False)
            mask &= keep[:, :size]
        return mask

    def _block_mask_csr(self, t: int, node, ok, prow, d: dict) -> torch.Tensor:
        """Bool (rows, level_size) mask from the CSR child ranges: gather then scatter."""
        n_rows = node.shape[0]
        size = self.trie.level_sizes[t]
        if t == 0:
            start = torch.zeros_like(node)
            end = torch.full_like(node, self.trie.n_nodes(0))
        else:
            start = d["child_start"][t - 1][node]
            end = d["child_end"][t - 1][node]
        child = start[:, None] + d["arange"][t][None, :]  # (rows, max fan-out at level t)
        allowed = (child < end[:, None]) & ok[:, None]
        child = child.clamp_(max=self.trie.n_nodes(t) - 1)
        if prow is not None:
            allowed &= ~self._is_in(
                d["excl"][t]["node_keys"], prow[:, None] * self.trie.n_nodes(t) + child
            )
        col = torch.where(allowed, d["node_code"][t][child], torch.full_like(child, size))
        mask = torch.zeros(n_rows, size + 1, dtype=torch.bool, device=node.device)
        mask.scatter_(1, col, True)
        return mask[:, :size]

    def next_code_mask(self, codes: torch.Tensor) -> torch.Tensor:
        """What ``__call__`` allows after each row's ID prefix, in code space and without the
        vocabulary-wide arrays (for a search that scores each level's codes only).

        ``codes``: (rows, t) the codes written so far (not token ids). Returns a bool mask
        (rows, ``level_sizes[t]``) of the next level's allowed codes, or (rows, 1) for EOS once
        the ID is complete (``t == depth``)."""
        n_rows, t = codes.shape
        if t > self.depth:
            raise ValueError(f"codes has {t} levels, more than the IDs' depth {self.depth}")
        d = self._tensors(codes.device)
        prow = self._prompt_rows(n_rows, codes.device)
        node, ok = self._prefix_nodes(codes.to(dtype=torch.long), prow, d)
        if t == self.depth:
            return ok[:, None]
        return self._level_mask(t, node, ok, prow, d)

    def _prompt_rows(self, n_rows: int, device) -> torch.Tensor | None:
        """Each row's prompt (``row // num_beams``) where there are exclusions, else None;
        ``ValueError`` if the rows are not one block of beams per excluded prompt."""
        if self.exclude is None:
            return None
        if n_rows != len(self.exclude) * self.num_beams:
            raise ValueError(
                f"{n_rows} rows (of scores or codes), expected {len(self.exclude)} prompts x "
                f"{self.num_beams} beams = {len(self.exclude) * self.num_beams} (one exclude "
                "entry per prompt)"
            )
        return torch.arange(n_rows, device=device) // self.num_beams

    def _level_mask(self, t: int, node, ok, prow, d: dict) -> torch.Tensor:
        """Bool (rows, level_sizes[t]) mask of the codes allowed after the prefixes' nodes."""
        if self._dense[t]:
            return self._block_mask_dense(t, node, ok, prow, d)
        return self._block_mask_csr(t, node, ok, prow, d)

    # ------------------------------------------------------------------ the processor
    def allowed_mask(self, input_ids: torch.LongTensor, vocab_size: int) -> torch.Tensor:
        """Boolean (batch*beams, vocab_size) mask of the tokens allowed next (for tests/inspection)."""
        scores = torch.zeros(input_ids.shape[0], vocab_size, device=input_ids.device)
        return torch.isfinite(self(input_ids, scores))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.dim() != 2 or scores.dim() != 2 or input_ids.shape[0] != scores.shape[0]:
            raise ValueError(
                f"expected input_ids (rows, cur_len) and scores (rows, vocab) with the same rows, "
                f"got {tuple(input_ids.shape)} and {tuple(scores.shape)}"
            )
        n_rows, vocab = scores.shape
        if vocab < self.layout.end_id or vocab <= max(self.eos_token_id, self.pad_token_id):
            raise ValueError(
                f"scores have {vocab} columns, but the semantic-ID tokens end at "
                f"{self.layout.end_id} and EOS/pad are {self.eos_token_id}/{self.pad_token_id}"
            )
        t = input_ids.shape[1] - self.decoder_prompt_len
        if t < 0:
            raise ValueError(
                f"input_ids has {input_ids.shape[1]} decoder positions, fewer than the decoder "
                f"prompt ({self.decoder_prompt_len})"
            )
        d = self._tensors(scores.device)
        prow = self._prompt_rows(n_rows, scores.device)
        out = torch.full_like(scores, _NEG_INF)
        if t > self.depth:  # after EOS: only padding
            out[:, self.pad_token_id] = scores[:, self.pad_token_id]
            return out
        ids = input_ids[:, self.decoder_prompt_len :].to(device=scores.device, dtype=torch.long)
        node, ok = self._prefix_nodes(ids - d["offsets"][:t], prow, d)
        if t == self.depth:  # full ID written: only EOS
            out[:, self.eos_token_id] = scores[:, self.eos_token_id].masked_fill(~ok, _NEG_INF)
            return out
        mask = self._level_mask(t, node, ok, prow, d)
        off = self.layout.offsets[t]
        out[:, off : off + self.trie.level_sizes[t]] = scores[
            :, off : off + mask.shape[1]
        ].masked_fill(~mask, _NEG_INF)
        return out


def dense_levels(trie: FlatTrie, budget: int) -> list[bool]:
    """Which levels of ``trie`` get a dense child table within ``budget`` bools in all.

    Levels are taken in order; a level whose table (``n_parents * level_size``) would take the
    running total past the budget is served by the CSR path, and later, smaller ones may still
    fit (e.g. the collision-digit level of a content-ID trie after its wide byte levels).
    """
    budget = check_int("budget", budget)
    used, out = 0, []
    for lv in range(trie.depth):
        size = trie.n_parents(lv) * trie.level_sizes[lv]
        fits = used + size <= budget
        used += size if fits else 0
        out.append(fits)
    return out


def _as_long(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.int64), device=device)


_TRIE_TENSORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _trie_tensors(trie: FlatTrie, device: torch.device, dense: list[bool]) -> dict:
    """Torch copies of a trie's arrays on ``device``, cached per (trie, device) across processors
    (``constrained_generate`` builds one processor per call; the tables are built once)."""
    per_trie = _TRIE_TENSORS.setdefault(trie, {})
    key = (device, tuple(dense))
    cached = per_trie.get(key)
    if cached is None:
        cached = {
            "keys": [_as_long(k, device) for k in trie.keys],
            "node_code": [_as_long(c, device) for c in trie.node_code],
            "child_start": [_as_long(c, device) for c in trie.child_start],
            "child_end": [_as_long(c, device) for c in trie.child_end],
            "sizes": torch.tensor(trie.level_sizes, dtype=torch.long, device=device),
            "arange": [torch.arange(w, device=device) for w in trie.max_children],
            "child_mask": [
                torch.as_tensor(trie.child_mask(lv), device=device) if dense[lv] else None
                for lv in range(trie.depth)
            ],
        }
        per_trie[key] = cached
    return cached
