"""The parts of TIGER's protocol (:mod:`eval.sequential`) that its hybrid row
(:mod:`eval.sequential_hybrid`) shares: histories as sparse rows, metrics from target ranks, and
the paired tests against the personalised baselines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from eval.metrics import bootstrap_means, paired_bootstrap_diff

KS = (5, 10)
PAIRED_AGAINST = ("item_knn", "als_fold_in")


def history_rows(
    histories: Sequence[Sequence[str]], index: dict[str, int], decay: float = 1.0
) -> sp.csr_matrix:
    """Users x items; the entry of a history item is ``decay ** age`` (last item: age 0)."""
    indptr, cols, vals = [0], [], []
    for history in histories:
        known = [(index[i], age) for age, i in enumerate(reversed(history)) if i in index]
        row: dict[int, float] = {}
        for j, age in known:
            row[j] = max(row.get(j, 0.0), decay**age)
        cols.extend(row)
        vals.extend(row.values())
        indptr.append(len(cols))
    return sp.csr_matrix(
        (np.asarray(vals, np.float32), np.asarray(cols, np.int64), np.asarray(indptr, np.int64)),
        shape=(len(histories), len(index)),
    )


def metrics_from_ranks(ranks: np.ndarray, n_bootstrap: int = 1000) -> dict:
    """Recall@K and NDCG@K (K in ``KS``) of 0-based target ranks, means and bootstrap 95%
    intervals (:func:`per_user_metrics` per user)."""
    out = {}
    for k in KS:
        for name, per_user in per_user_metrics(ranks, k).items():
            samples = bootstrap_means(per_user, n_bootstrap, 0)
            out[name] = float(per_user.mean())
            out[f"{name}_ci"] = [
                float(np.quantile(samples, 0.025)),
                float(np.quantile(samples, 0.975)),
            ]
    return out


def per_user_metrics(ranks: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per user: Recall@k (hit or not) and NDCG@k = 1 / log2(rank + 2) of a 0-based rank."""
    ranks = np.asarray(ranks)
    return {
        f"recall@{k}": (ranks < k).astype(np.float64),
        f"ndcg@{k}": np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0),
    }


def paired_tests(test_ranks: dict[str, np.ndarray], system: str, n_bootstrap: int) -> dict:
    """``system`` against each personalised baseline on the same test users: the paired
    bootstrap difference of Recall@10 and NDCG@10 (:func:`eval.metrics.paired_bootstrap_diff`)."""
    ours = per_user_metrics(test_ranks[system], 10)
    out = {}
    for other in PAIRED_AGAINST:
        if other in test_ranks:
            theirs = per_user_metrics(test_ranks[other], 10)
            out[other] = {
                metric: paired_bootstrap_diff(ours[metric], theirs[metric], n_bootstrap, seed=0)
                for metric in ours
            }
    return out
