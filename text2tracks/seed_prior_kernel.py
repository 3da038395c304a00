"""The seed prior's ``"lse"`` kernel (``--seed-prior-kernel lse``): a soft maximum over the
individual seeds in place of their mean.

The ``"nodes"`` prior (:mod:`text2tracks.seed_prior`) scores a trie node by ``m^T W mu`` with
``m`` the seeds' mean factors and ``mu`` the node's mean factor: a linear kernel, the same for
one seed as for the mean of a hundred. Item co-occurrence kNN, which beats it on long seed
lists, instead sums each seed's own (sparse, non-linear) similarity: an item close to one seed
scores even when it is far from the seeds' mean. The kernel scores a node by

    V(node) = (1 / beta) log( (1 / n) sum_s exp(beta q_s^T mu) ),   q_s = W^T s,

``s`` each seed's standardised factors (scaled as the mean is, ``--seed-prior-count-scale``),
``beta = exp(log_beta)`` learned (it starts at 1). ``beta -> 0`` gives back the linear prior
``m^T W mu``; large ``beta`` the best single seed's score; one seed is the linear prior at any
``beta``. Each step adds ``V(child) - V(parent)`` (the root's ``V`` is 0, its ``mu`` 0), so
summed along an ID the prior is ``V`` of the item's own factors, as the linear prior's is
``m^T W f_i``, and the beam ranks by it level by level.

Hand-written: no library scores trie nodes by a log-sum-exp kernel over a prompt's seeds.
"""

from __future__ import annotations

import math

# log beta stays in [-8, 6]: beta from about 3e-4 (the linear prior to four digits) to 400 (the
# best seed alone); outside it the step sizes of float32 log-sum-exp blow up
_LOG_BETA_RANGE = (-8.0, 6.0)
KERNELS = ("mean", "lse")


def kernel_log_beta_parameter(saved=None):
    """The ``(1,)`` learned ``log beta``: ``saved`` checked, or 0 (``beta`` = 1)."""
    import torch

    if saved is None:
        return torch.nn.Parameter(torch.zeros(1))
    saved = torch.as_tensor(saved, dtype=torch.float32).reshape(-1)
    if saved.shape != (1,):
        raise ValueError(f"the seed prior's kernel log beta must be (1,), got {tuple(saved.shape)}")
    return torch.nn.Parameter(saved.clone())


class SeedKernel:
    """One forward's kernel inputs: each prompt's projected seeds ``q`` ``(batch, L, dim)``
    (``q_s = W^T s``), which of the ``L`` positions are seeds ``(batch, L)``, and ``beta``."""

    def __init__(self, q, mask, log_beta) -> None:
        self.q, self.mask = q, mask
        self.beta = log_beta.clamp(*_LOG_BETA_RANGE).exp().to(q.dtype)
        self.counts = mask.sum(dim=1).tolist()

    def values(self, mu, index, prompts):
        """``(rows, m)``: ``V`` of nodes ``index`` ``(rows, m)`` (rows of the level's node means
        ``mu`` ``(n_nodes, dim)``) for each row's prompt ``prompts`` ``(rows,)``; 0 for rows
        whose prompt has no seeds."""
        import torch

        mu = mu.to(self.q.dtype)
        parts, where = [], []
        for p in torch.unique(prompts).tolist():
            n = self.counts[p]
            if n == 0:
                continue
            rows = (prompts == p).nonzero(as_tuple=True)[0]
            q = self.q[p][self.mask[p]]  # (n, dim)
            nodes = index.index_select(0, rows)
            if nodes.numel() >= mu.shape[0]:  # many beams: every node of the level once
                vals = self._soft_max(q @ mu.T, n)[nodes]
            else:  # few rows (training): only the nodes asked for
                vals = self._soft_max(q @ mu[nodes.reshape(-1)].T, n).view(nodes.shape)
            parts.append(vals)
            where.append(rows)
        out = self.q.new_zeros(index.shape)
        if not parts:
            return out
        return out.index_copy(0, torch.cat(where), torch.cat(parts))

    def _soft_max(self, scores, n: int):
        """``(1 / beta) log mean_s exp(beta scores[s])`` over the seeds (dim 0)."""
        import torch

        return (torch.logsumexp(self.beta * scores, dim=0) - math.log(n)) / self.beta


__all__ = ["KERNELS", "SeedKernel", "kernel_log_beta_parameter"]
