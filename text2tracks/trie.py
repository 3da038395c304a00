"""The trie of the catalogue's semantic IDs, flattened into numpy arrays (no torch, no Python nodes).

Every item has a semantic ID of the same ``depth`` (residual k-means codes then a collision
digit), so the trie has exactly ``depth`` levels below an implicit root and every leaf sits at the
last level. The trie is keyed by SID *codes* only: no decoder start token, no EOS (the constrained
decoder skips the decoder start position and adds EOS after ``depth`` codes itself).

Layout, level ``l`` in ``0 .. depth-1`` (a node of level ``l`` is a distinct prefix of ``l + 1``
codes; nodes of a level are numbered in lexicographic order of their prefixes):

- ``node_code[l]`` int64 (n_nodes[l],): the last code of the node's prefix (the CSR "children" array:
  the children of a node of level ``l - 1`` are a contiguous run of level ``l`` nodes);
- ``node_parent[l]`` int64 (n_nodes[l],): the parent node at level ``l - 1`` (0, the root, for
  ``l == 0``);
- ``child_start[l]``, ``child_end[l]`` int64 (n_nodes[l],) for ``l < depth - 1``: the children of a
  node are level ``l + 1`` nodes ``[child_start, child_end)``. The root's children are all level-0
  nodes;
- ``keys[l]`` int64 (n_nodes[l],): ``node_parent * level_sizes[l] + node_code``, strictly increasing,
  so the node of (parent, code) is found by ``searchsorted`` (vectorised over many prefixes);
- ``subtree_count[l]`` int64 (n_nodes[l],): number of items below the node;
- ``leaf_item`` int64 (n_items,): the item index of each leaf (node of the last level);
- ``item_nodes`` int64 (depth, n_items): the node of each item at each level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class FlatTrie:
    """Fixed-depth trie of semantic IDs in flat arrays. Build with :meth:`from_codes`."""

    def __init__(
        self,
        level_sizes: tuple[int, ...],
        node_code: list[np.ndarray],
        node_parent: list[np.ndarray],
        child_start: list[np.ndarray],
        child_end: list[np.ndarray],
        subtree_count: list[np.ndarray],
        leaf_item: np.ndarray,
        item_nodes: np.ndarray,
    ) -> None:
        self.level_sizes = tuple(int(s) for s in level_sizes)
        self.node_code = node_code
        self.node_parent = node_parent
        self.child_start = child_start
        self.child_end = child_end
        self.subtree_count = subtree_count
        self.leaf_item = leaf_item
        self.item_nodes = item_nodes
        self.keys = [
            node_parent[lv] * self.level_sizes[lv] + node_code[lv] for lv in range(self.depth)
        ]
        # widest fan-out below a node of level l - 1 (index l); index 0 is the root's fan-out
        self.max_children = [int(len(node_code[0]))] + [
            int((child_end[lv] - child_start[lv]).max()) if len(child_end[lv]) else 0
            for lv in range(self.depth - 1)
        ]
        self._child_masks: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_codes(cls, sid_codes: np.ndarray, level_sizes: Sequence[int]) -> FlatTrie:
        """Build the trie from ``sid_codes`` int (n_items, depth); row ``i`` is item ``i``'s ID.

        Raises ``ValueError`` on a bad shape, a code outside ``[0, level_sizes[l])``, an empty
        catalogue, or two items with the same full ID.
        """
        level_sizes = tuple(int(s) for s in level_sizes)
        if not level_sizes or any(s <= 0 for s in level_sizes):
            raise ValueError(f"level_sizes must be non-empty positive integers, got {level_sizes}")
        codes = np.asarray(sid_codes)
        if codes.ndim != 2 or codes.shape[1] != len(level_sizes):
            raise ValueError(
                f"sid_codes must have shape (n_items, {len(level_sizes)}), got {codes.shape}"
            )
        if codes.shape[0] == 0:
            raise ValueError("sid_codes is empty: a trie needs at least one item")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"sid_codes must be integers, got dtype {codes.dtype}")
        codes = codes.astype(np.int64)
        sizes = np.asarray(level_sizes, dtype=np.int64)
        bad = (codes < 0) | (codes >= sizes)
        if bad.any():
            item, level = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"code out of range: item {item} has code {int(codes[item, level])} at level "
                f"{level}, expected 0 <= code < {level_sizes[level]}"
            )
        depth = len(level_sizes)
        n = codes.shape[0]
        order = np.lexsort(codes.T[::-1])  # lexicographic order of the full IDs
        s = codes[order]
        is_new = np.zeros(n, dtype=bool)
        is_new[0] = True
        node_code, node_parent, subtree_count, row_node = [], [], [], []
        for lv in range(depth):
            is_new = is_new.copy()
            is_new[1:] |= s[1:, lv] != s[:-1, lv]
            rows_node = np.cumsum(is_new) - 1
            node_code.append(s[is_new, lv].copy())
            node_parent.append(
                np.zeros(int(is_new.sum()), dtype=np.int64) if lv == 0 else row_node[-1][is_new]
            )
            subtree_count.append(np.bincount(rows_node).astype(np.int64))
            row_node.append(rows_node.astype(np.int64))
        if not is_new.all():
            dup_row = int(np.flatnonzero(~is_new)[0])
            a, b = sorted((int(order[dup_row - 1]), int(order[dup_row])))
            raise ValueError(
                f"duplicate semantic ID {s[dup_row].tolist()} for items {a} and {b}: every full "
                "ID must be unique (the collision digit should separate them)"
            )
        child_start, child_end = [], []
        for lv in range(depth - 1):
            ids = np.arange(len(node_code[lv]))
            child_start.append(np.searchsorted(node_parent[lv + 1], ids, side="left"))
            child_end.append(np.searchsorted(node_parent[lv + 1], ids, side="right"))
        item_nodes = np.empty((depth, n), dtype=np.int64)
        for lv in range(depth):
            item_nodes[lv, order] = row_node[lv]
        return cls(
            level_sizes,
            node_code,
            node_parent,
            [c.astype(np.int64) for c in child_start],
            [c.astype(np.int64) for c in child_end],
            subtree_count,
            order.astype(np.int64),
            item_nodes,
        )

    # ------------------------------------------------------------------ sizes
    @property
    def depth(self) -> int:
        return len(self.level_sizes)

    @property
    def n_items(self) -> int:
        return int(self.leaf_item.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the trie's numpy arrays: what it keeps in memory for the catalogue."""
        total = 0
        for value in vars(self).values():
            arrays = value if isinstance(value, (list, tuple)) else [value]
            total += sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
        return total

    def n_nodes(self, level: int) -> int:
        return int(self.node_code[level].shape[0])

    def __len__(self) -> int:
        return self.n_items

    def __repr__(self) -> str:
        nodes = [self.n_nodes(lv) for lv in range(self.depth)]
        return f"FlatTrie(n_items={self.n_items}, level_sizes={self.level_sizes}, nodes={nodes})"

    # ------------------------------------------------------------------ lookups
    def find_nodes(self, prefixes: np.ndarray) -> np.ndarray:
        """Node ids (at level ``t - 1``) of many prefixes ``int (n, t)``, ``t >= 1``; -1 where absent.

        Vectorised: one ``searchsorted`` per level over all prefixes.
        """
        p = np.asarray(prefixes, dtype=np.int64)
        if p.ndim != 2 or not 1 <= p.shape[1] <= self.depth:
            raise ValueError(
                f"prefixes must have shape (n, t) with 1 <= t <= {self.depth}, got {p.shape}"
            )
        node = np.zeros(p.shape[0], dtype=np.int64)
        ok = np.ones(p.shape[0], dtype=bool)
        for lv in range(p.shape[1]):
            c = p[:, lv]
            ok &= (c >= 0) & (c < self.level_sizes[lv])
            key = node * self.level_sizes[lv] + c
            keys = self.keys[lv]
            pos = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
            ok &= keys[pos] == key
            node = np.where(ok, pos, 0)
        return np.where(ok, node, -1)

    def items_of(self, codes: np.ndarray) -> np.ndarray:
        """Item index of each full ID in ``codes`` int (n, depth); -1 where the ID is not in the trie."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != self.depth:
            raise ValueError(f"codes must have shape (n, {self.depth}), got {codes.shape}")
        leaf = self.find_nodes(codes)
        return np.where(leaf >= 0, self.leaf_item[np.maximum(leaf, 0)], -1)

    def item_of(self, codes: Sequence[int]) -> int:
        """Item index of one full ID, or -1 if it is not in the trie (or not of length ``depth``)."""
        c = np.asarray(codes, dtype=np.int64).reshape(-1)
        if c.shape[0] != self.depth:
            return -1
        return int(self.items_of(c[None, :])[0])

    def __contains__(self, codes) -> bool:
        try:
            return self.item_of(codes) >= 0
        except (TypeError, ValueError):
            return False

    def valid_next(self, prefix: Sequence[int]) -> np.ndarray:
        """Codes (sorted int64) that may follow ``prefix`` (0 .. depth codes); empty if none/absent."""
        p = np.asarray(prefix, dtype=np.int64).reshape(-1)
        t = p.shape[0]
        if t > self.depth:
            raise ValueError(f"prefix has {t} codes, more than the depth {self.depth}")
        if t == self.depth:
            return np.empty(0, dtype=np.int64)
        if t == 0:
            return self.node_code[0].copy()
        node = int(self.find_nodes(p[None, :])[0])
        if node < 0:
            return np.empty(0, dtype=np.int64)
        lv = t - 1
        return self.node_code[t][self.child_start[lv][node] : self.child_end[lv][node]].copy()

    def count_under(self, prefix: Sequence[int]) -> int:
        """Number of items whose ID starts with ``prefix`` (all items for the empty prefix)."""
        p = np.asarray(prefix, dtype=np.int64).reshape(-1)
        if p.shape[0] == 0:
            return self.n_items
        node = int(self.find_nodes(p[None, :])[0])
        return 0 if node < 0 else int(self.subtree_count[p.shape[0] - 1][node])

    def codes_of(self, items: np.ndarray) -> np.ndarray:
        """Full IDs int64 (n, depth) of item indices ``items``."""
        items = np.asarray(items, dtype=np.int64)
        if ((items < 0) | (items >= self.n_items)).any():
            raise ValueError(f"item indices must lie in [0, {self.n_items})")
        return np.stack(
            [self.node_code[lv][self.item_nodes[lv, items]] for lv in range(self.depth)], axis=-1
        )

    def n_parents(self, level: int) -> int:
        """Number of possible parents of a level-``level`` node (1, the root, for level 0)."""
        return 1 if level == 0 else self.n_nodes(level - 1)

    def child_mask(self, level: int) -> np.ndarray:
        """Dense bool (n_parents(level), level_sizes[level]): row ``p`` marks the codes that may
        follow parent ``p`` (a node of level ``level - 1``; the single row of level 0 is the root).

        Built on first use and cached: ``n_parents * level_size`` bytes (about 8 MB for the widest
        level of a 64k-item catalogue with 256 codes per level).
        """
        mask = self._child_masks.get(level)
        if mask is None:
            mask = np.zeros((self.n_parents(level), self.level_sizes[level]), dtype=bool)
            mask[self.node_parent[level], self.node_code[level]] = True
            self._child_masks[level] = mask
        return mask

    def excluded_nodes(self, items: np.ndarray) -> list[np.ndarray]:
        """Per level, the sorted nodes whose whole subtree lies in the item set ``items``.

        Used to prune exclusions inside decoding: a leaf of an excluded item is excluded, and so
        is any prefix node all of whose items are excluded (compared with ``subtree_count``).
        """
        items = np.unique(np.asarray(items, dtype=np.int64).reshape(-1))
        if items.size and (items[0] < 0 or items[-1] >= self.n_items):
            raise ValueError(
                f"excluded item indices must lie in [0, {self.n_items}), got "
                f"{int(items[0])}..{int(items[-1])}"
            )
        out = []
        for lv in range(self.depth):
            nodes, counts = np.unique(self.item_nodes[lv, items], return_counts=True)
            out.append(nodes[counts == self.subtree_count[lv][nodes]])
        return out
