"""Search diagnostics (docs/spec.md §7, beyond the paper): how far alpha moved from its initialisation,
how decided each layer/edge is, and whether the derived choice is just the initial argmax.

Pure functions of softmax(alpha) rows as stored in a trial's history ("alphas_init", "alphas").
"""
from __future__ import annotations

import numpy as np


def alpha_diagnostics(alphas_init_softmax, alphas_final_softmax) -> dict:
    """Compare softmax(alpha) before the first step with softmax(alpha) at the end of a search.

    alphas_init_softmax, alphas_final_softmax: (rows, n_ops) nested lists or arrays, each row a
    probability vector (one row per seq layer or cell edge). Returns:
      rows: per row, "deviation" max_t |p_t - 1/n_ops| of the final softmax, "entropy" of the final
        softmax in nats (log(n_ops) for uniform), "moved" max_t |p_t - p_init_t|, and
        "argmax_kept" whether the final argmax equals the initial argmax;
      deviation_max / deviation_mean, entropy_max / entropy_mean, moved_max / moved_mean: over rows;
      argmax_kept_share: share of rows whose argmax equals the initial argmax;
      uniform_entropy: log(n_ops), the entropy of an undecided row.
    """
    p0 = np.asarray(alphas_init_softmax, dtype=np.float64)
    p = np.asarray(alphas_final_softmax, dtype=np.float64)
    if p0.ndim != 2 or p0.shape != p.shape or p.shape[0] == 0:
        raise ValueError(f"need two (rows, n_ops) softmax arrays of one shape, got {p0.shape} and {p.shape}")
    n = p.shape[1]
    deviation = np.abs(p - 1.0 / n).max(axis=1)
    # 0 log 0 = 0: a row may put exactly 0 on an op
    entropy = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    moved = np.abs(p - p0).max(axis=1)
    kept = p.argmax(axis=1) == p0.argmax(axis=1)
    rows = [{"deviation": float(d), "entropy": float(h), "moved": float(m), "argmax_kept": bool(k)}
            for d, h, m, k in zip(deviation, entropy, moved, kept)]
    return {
        "rows": rows,
        "deviation_max": float(deviation.max()), "deviation_mean": float(deviation.mean()),
        "entropy_max": float(entropy.max()), "entropy_mean": float(entropy.mean()),
        "moved_max": float(moved.max()), "moved_mean": float(moved.mean()),
        "argmax_kept_share": float(kept.mean()),
        "uniform_entropy": float(np.log(n)),
    }


__all__ = ["alpha_diagnostics"]
