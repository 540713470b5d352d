"""Representational similarity: RDMs and their comparison.

An RDM here is ``1 - Pearson r`` between stimulus patterns (correlation
distance). For a model layer it follows from the Gram summary: with row sums
``s`` and ``p`` features, the centred inner products are
``K_ij - s_i s_j / p``, from which the correlations follow.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from neurozoo.errors import NeurozooError

__all__ = ["rdm_from_gram", "rdm_from_patterns", "upper", "compare_rdms",
           "COMPARISONS", "rank_upper"]

COMPARISONS = ("spearman", "pearson")


def rdm_from_gram(gram: np.ndarray, rowsum: np.ndarray, n_features: int) -> np.ndarray:
    """Correlation-distance RDM of a layer from its Gram summary.

    Parameters
    ----------
    gram : ndarray, shape (n, n)
    rowsum : ndarray, shape (n,)
    n_features : int

    Returns
    -------
    ndarray, shape (n, n); zero diagonal. A stimulus with a constant pattern
    has NaN distances.
    """
    cov = gram - np.outer(rowsum, rowsum) / n_features
    d = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(d, d)
    rdm = 1.0 - corr
    np.fill_diagonal(rdm, 0.0)
    return rdm


def rdm_from_patterns(patterns: np.ndarray) -> np.ndarray:
    """Correlation-distance RDM of stimulus patterns.

    Parameters
    ----------
    patterns : ndarray, shape (n_stimuli, n_neuroids)
    """
    x = patterns - patterns.mean(axis=1, keepdims=True)
    norm = np.sqrt((x * x).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (x @ x.T) / np.outer(norm, norm)
    rdm = 1.0 - corr
    np.fill_diagonal(rdm, 0.0)
    return rdm


def upper(rdm: np.ndarray) -> np.ndarray:
    """The strict upper triangle, row by row. Shape (n (n - 1) / 2,)."""
    i, j = np.triu_indices(rdm.shape[0], k=1)
    return rdm[i, j]


def rank_upper(rdm: np.ndarray) -> np.ndarray:
    """Average ranks of the upper triangle (for fast repeated Spearman)."""
    return stats.rankdata(upper(rdm))


def compare_rdms(a: np.ndarray, b: np.ndarray, method: str = "spearman") -> float:
    """Compare two RDMs on their upper triangles.

    Parameters
    ----------
    a, b : ndarray, shape (n, n)
    method : {"spearman", "pearson"}
    """
    if method not in COMPARISONS:
        raise NeurozooError(
            f"unknown RDM comparison '{method}' (valid: {', '.join(COMPARISONS)})"
        )
    x, y = upper(a), upper(b)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan")
    x, y = x[ok], y[ok]
    if method == "spearman":
        x, y = stats.rankdata(x), stats.rankdata(y)
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / den) if den > 0 else float("nan")
