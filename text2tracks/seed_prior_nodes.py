"""The ``"nodes"`` seed prior's tables (:mod:`text2tracks.seed_prior`): per trie level, each
node's share of the items' factors, so that summed along an ID's path the prior of the whole ID
is exactly ``m^T W f_i``. Hand-written: no library scores a trie's nodes by their items' mean
factors under a prompt-conditioned bilinear form.
"""

from __future__ import annotations

import numpy as np


class NodeTable:
    """The ``"nodes"`` prior's tables: per trie level ``l``, the sorted node keys
    (:attr:`text2tracks.trie.FlatTrie.keys`), each node's vector ``v = mu(node) - mu(parent)``
    (``mu``: the mean standardised factors of the items below; the root's is 0) and the output
    columns of the level's codes. Summed along an ID's path the vectors give the item's own
    factors exactly, so the prior of a whole ID is ``m^T W f_i``; each step adds the level's
    share for every child of the row's prefix."""

    def __init__(self, sid_codes, level_sizes, factors, columns, offsets) -> None:
        import torch

        from text2tracks.trie import FlatTrie

        trie = FlatTrie.from_codes(np.asarray(sid_codes), level_sizes)
        self.sizes = trie.level_sizes
        self.offsets = torch.as_tensor(np.asarray(offsets, dtype=np.int64))
        self.keys = [torch.from_numpy(trie.keys[lv]) for lv in range(trie.depth)]
        self.columns = [
            torch.as_tensor(np.asarray(columns[lv]), dtype=torch.long) for lv in range(trie.depth)
        ]
        # what refresh() computes the vectors from: each item's node, each node's parent and
        # item count (at least 1)
        self.item_nodes = [torch.from_numpy(np.asarray(n, np.int64)) for n in trie.item_nodes]
        self.node_parent = [torch.from_numpy(np.asarray(p, np.int64)) for p in trie.node_parent]
        self.counts = [
            torch.bincount(n, minlength=p.shape[0]).clamp(min=1)
            for n, p in zip(self.item_nodes, self.node_parent, strict=True)
        ]
        # each last-level node's item (IDs are unique, so the last level's nodes are the items)
        last = self.item_nodes[-1]
        self.node_item = torch.full((self.node_parent[-1].shape[0],), -1, dtype=torch.long)
        self.node_item[last] = torch.arange(last.shape[0])
        # the means summed in float64, kept in float32
        self.refresh(torch.from_numpy(np.asarray(factors, dtype=np.float64)))
        self.values = [v.float() for v in self.values]

    def to(self, device) -> NodeTable:
        for name in ("keys", "values", "columns", "item_nodes", "node_parent", "counts"):
            setattr(self, name, [t.to(device) for t in getattr(self, name)])
        self.offsets = self.offsets.to(device)
        self.node_item = self.node_item.to(device)
        return self

    def refresh(self, factors) -> None:
        """(Re)compute every node's vector from the items' ``factors`` ``(n_items, dim)``, a
        torch tensor (differentiable: ``--seed-prior-learn-factors`` trains through it)."""
        device = factors.device
        parent_mu = factors.new_zeros(1, factors.shape[1])
        values = []
        for nodes, parent, count in zip(
            self.item_nodes, self.node_parent, self.counts, strict=True
        ):
            nodes, parent = nodes.to(device), parent.to(device)
            mu = factors.new_zeros(parent.shape[0], factors.shape[1]).index_add(0, nodes, factors)
            mu = mu / count.to(device=device, dtype=factors.dtype)[:, None]
            values.append(mu - parent_mu[parent])
            parent_mu = mu
        self.values = values

    def codes_of(self, labels):
        """``(rows, depth)`` codes of target ``labels`` (ID tokens, then EOS)."""
        depth = len(self.sizes)
        return (labels[:, :depth] - self.offsets.to(labels.device)).clamp(min=0)

    def items_of(self, labels):
        """``(rows,)`` the catalogue index of each row's target ID (``labels``: ID tokens,
        then EOS)."""
        import torch

        if self.node_item.device != labels.device:
            self.to(labels.device)
        codes = self.codes_of(labels)
        node = torch.zeros(codes.shape[0], dtype=torch.long, device=labels.device)
        for lv in range(len(self.sizes)):
            node = self._node_of(lv, node, codes[:, lv])
        return self.node_item[node]

    def _children(self, level: int, parent):
        """``(index (rows, size), valid (rows, size))``: the level's node of each code below
        each row's ``parent`` node."""
        import torch

        keys = self.keys[level]
        want = parent[:, None] * self.sizes[level] + torch.arange(
            self.sizes[level], device=parent.device
        )
        index = torch.searchsorted(keys, want).clamp(max=keys.shape[0] - 1)
        return index, keys[index].eq(want)

    def _node_of(self, level: int, parent, code):
        import torch

        keys = self.keys[level]
        want = parent * self.sizes[level] + code
        return torch.searchsorted(keys, want).clamp(max=keys.shape[0] - 1)

    def _level_bias(self, q, prompts, level: int, parent, n_columns: int):
        """``(rows, n_columns)``: level ``level``'s share for every child of each row's prefix
        (0 for codes with no node and for other columns)."""
        index, valid = self._children(level, parent)
        values = self.values[level].to(q.dtype)
        rows, size = index.shape
        if rows * size <= q.shape[0] * values.shape[0]:
            # few rows (training): the children's vectors, gathered
            vals = (values[index] * q.index_select(0, prompts)[:, None, :]).sum(-1)
        else:  # many beams a prompt (search): every node's score once per prompt
            vals = (q @ values.T)[prompts[:, None], index]
        vals = vals * valid.to(q.dtype)
        out = vals.new_zeros(rows, n_columns)
        return out.index_copy(1, self.columns[level], vals)

    def bias(self, q, prompts, shape, prefix, targets):
        """:meth:`SeedPrior.bias` for the ``"nodes"`` prior: at training (``targets``, one
        position per level then EOS) or at one search step (``prefix``)."""
        import torch

        if self.keys[0].device != q.device:  # the model moved after install (not buffers)
            self.to(q.device)
        rows, n_columns = shape[0], shape[-1]
        parent = torch.zeros(rows, dtype=torch.long, device=q.device)
        if len(shape) == 3 and shape[1] > 1:
            if targets is None:
                raise RuntimeError(
                    "the nodes prior scores a whole ID only with prior_rows' targets"
                )
            steps = []
            for lv in range(min(shape[1], len(self.sizes))):
                steps.append(self._level_bias(q, prompts, lv, parent, n_columns))
                parent = self._node_of(lv, parent, targets[:, lv].to(q.device))
            while len(steps) < shape[1]:  # EOS: no prior
                steps.append(steps[0].new_zeros(rows, n_columns))
            return torch.stack(steps, dim=1)
        if prefix is None:
            raise RuntimeError("the nodes prior needs the search's prefixes (prior_prefix)")
        prefix = prefix.to(q.device)
        for lv in range(prefix.shape[1]):
            parent = self._node_of(lv, parent, prefix[:, lv])
        if prefix.shape[1] >= len(self.sizes):  # EOS
            return None
        out = self._level_bias(q, prompts, prefix.shape[1], parent, n_columns)
        return out.unsqueeze(1) if len(shape) == 3 else out
