"""Representational similarity: RDMs, their comparison, and linear CKA.

An RDM holds a distance between every pair of stimulus patterns:

- ``"correlation"`` (default): ``1 - Pearson r``. For a model layer it
  follows from the Gram summary: with row sums ``s`` and ``p`` features, the
  centred inner products are ``K_ij - s_i s_j / p``;
- ``"euclidean"``: ``sqrt(K_ii + K_jj - 2 K_ij)``.

Comparisons of two RDMs use their upper triangles: Pearson, Spearman (Pearson
of average ranks) or Kendall's tau-a (``(concordant - discordant) / m(m-1)/2``
over all ``m(m-1)/2`` pairs of entries; ties count as neither). Tau-a is
obtained in ``O(m log m)`` from scipy's tau-b and the tie counts.

Linear CKA (Kornblith et al. 2019) between two representations of the same
stimuli is ``<HKH, HLH>_F / (||HKH||_F ||HLH||_F)`` for their Gram matrices
``K`` and ``L``: it needs only the Gram summary of a layer.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from neurozoo.errors import NeurozooError

__all__ = ["rdm_from_gram", "rdm_from_patterns", "upper", "compare_rdms",
           "COMPARISONS", "DISTANCES", "rank_upper", "kendall_tau_a", "linear_cka",
           "neural_rdm"]

COMPARISONS = ("spearman", "pearson", "kendall_a")
DISTANCES = ("correlation", "euclidean")


def _check_distance(distance: str) -> None:
    if distance not in DISTANCES:
        raise NeurozooError(
            f"unknown RDM distance '{distance}' (valid: {', '.join(DISTANCES)})"
        )


def _euclidean_from_gram(gram: np.ndarray) -> np.ndarray:
    sq = np.diag(gram)
    rdm = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * gram, 0, None))
    np.fill_diagonal(rdm, 0.0)
    return rdm


def rdm_from_gram(gram: np.ndarray, rowsum: np.ndarray, n_features: int,
                  distance: str = "correlation") -> np.ndarray:
    """RDM of a layer from its Gram summary.

    Parameters
    ----------
    gram : ndarray, shape (n, n)
    rowsum : ndarray, shape (n,)
    n_features : int
    distance : {"correlation", "euclidean"}

    Returns
    -------
    ndarray, shape (n, n); zero diagonal. With correlation distance a stimulus
    with a constant pattern has NaN distances.
    """
    _check_distance(distance)
    if distance == "euclidean":
        return _euclidean_from_gram(np.asarray(gram, dtype=np.float64))
    cov = gram - np.outer(rowsum, rowsum) / n_features
    d = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(d, d)
    rdm = 1.0 - corr
    np.fill_diagonal(rdm, 0.0)
    return rdm


def rdm_from_patterns(patterns: np.ndarray,
                      distance: str = "correlation") -> np.ndarray:
    """RDM of stimulus patterns.

    Parameters
    ----------
    patterns : ndarray, shape (n_stimuli, n_neuroids)
    distance : {"correlation", "euclidean"}

    Returns
    -------
    ndarray, shape (n_stimuli, n_stimuli)
    """
    _check_distance(distance)
    if distance == "euclidean":
        x = np.asarray(patterns, dtype=np.float64)
        return _euclidean_from_gram(x @ x.T)
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
    method : {"spearman", "pearson", "kendall_a"}
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
    if method == "kendall_a":
        return kendall_tau_a(x, y)
    if method == "spearman":
        x, y = stats.rankdata(x), stats.rankdata(y)
    x = x - x.mean()
    y = y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / den) if den > 0 else float("nan")


def _tied_pairs(v: np.ndarray) -> int:
    _, counts = np.unique(v, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def kendall_tau_a(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-a of two vectors: ``(C - D) / (m (m - 1) / 2)``.

    Parameters
    ----------
    x, y : ndarray, shape (m,)

    Notes
    -----
    ``C - D`` is recovered from scipy's tau-b,
    ``(C - D) / sqrt((n0 - n1)(n0 - n2))``, with ``n0 = m(m-1)/2`` and
    ``n1``, ``n2`` the pairs tied in ``x`` and in ``y``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = x.size
    if m < 2:
        return float("nan")
    n0 = m * (m - 1) / 2
    den = np.sqrt((n0 - _tied_pairs(x)) * (n0 - _tied_pairs(y)))
    if den == 0:
        return 0.0
    tau_b = stats.kendalltau(x, y, variant="b").statistic
    return float(tau_b * den / n0)


def linear_cka(gram_a: np.ndarray, gram_b: np.ndarray) -> float:
    """Linear CKA between two representations from their Gram matrices.

    Parameters
    ----------
    gram_a, gram_b : ndarray, shape (n, n)
        ``X X^T`` and ``Y Y^T`` over the same stimuli (uncentred).

    Returns
    -------
    float in [0, 1]; NaN when either centred Gram matrix is zero.
    """
    a = np.asarray(gram_a, dtype=np.float64)
    b = np.asarray(gram_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise NeurozooError(f"cka: Gram matrices {a.shape} and {b.shape} disagree")
    ha = a - a.mean(0)[None, :] - a.mean(1)[:, None] + a.mean()
    hb = b - b.mean(0)[None, :] - b.mean(1)[:, None] + b.mean()
    den = np.sqrt((ha * ha).sum() * (hb * hb).sum())
    return float((ha * hb).sum() / den) if den > 0 else float("nan")


def neural_rdm(patterns: np.ndarray, distance: str = "correlation",
               reference: np.ndarray | None = None) -> np.ndarray:
    """RDM of neural patterns, each neuroid z-scored across stimuli first.

    Without z-scoring, the stimulus patterns share every neuroid's mean rate
    and correlation distance mostly tracks the overall response size; for
    Euclidean distance, the neuroids with the largest rates would dominate.

    Parameters
    ----------
    patterns : ndarray, shape (n_stimuli, n_neuroids)
    distance : {"correlation", "euclidean"}
    reference : ndarray, shape (m, n_neuroids), optional
        Stimuli whose mean and standard deviation z-score ``patterns``
        (default: ``patterns`` themselves). Held-out stimuli are z-scored
        with the training stimuli's statistics, so that nothing about them
        reaches the training RDM and no fold has statistics of its own.

    Returns
    -------
    ndarray, shape (n_stimuli, n_stimuli)
    """
    ref = patterns if reference is None else reference
    sd = ref.std(axis=0)
    z = (patterns - ref.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return rdm_from_patterns(z, distance)
