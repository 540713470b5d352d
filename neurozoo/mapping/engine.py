"""One entry point for every mapping method: :func:`score_layer`.

All methods start from a layer's summary (the Gram matrix ``X X^T``, the row
sums and the number of features; see :class:`neurozoo.features.LayerSummary`)
and the trial-averaged responses ``Y`` (stimuli x neuroids):

- ``"ridge"``: outer k-fold kernel ridge, penalty per neuroid by exact
  leave-one-out on the training folds (:func:`cross_validated_ridge`);
- ``"pls"``: outer k-fold PLS regression (:func:`cross_validated_pls`);
- ``"rsa"``: comparison of the layer's RDM with the RDM of ``Y``;
- ``"cka"``: linear CKA between the layer and ``Y``.
"""

from __future__ import annotations

import numpy as np

from neurozoo.errors import NeurozooError
from neurozoo.mapping.pls import cross_validated_pls
from neurozoo.mapping.ridge import CVResult, cross_validated_ridge
from neurozoo.mapping.rsa import (
    COMPARISONS,
    DISTANCES,
    compare_rdms,
    linear_cka,
    neural_rdm,
    rdm_from_gram,
)

__all__ = ["METHODS", "score_layer"]

METHODS = ("ridge", "pls", "rsa", "cka")


def _parts(summary) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    if hasattr(summary, "gram"):
        return np.asarray(summary.gram, dtype=np.float64), summary.rowsum, \
            summary.n_features
    if isinstance(summary, dict):
        return (np.asarray(summary["gram"], dtype=np.float64), summary.get("rowsum"),
                summary.get("n_features"))
    return np.asarray(summary, dtype=np.float64), None, None


def score_layer(method: str, summary, y: np.ndarray,
                folds: list[np.ndarray] | None = None,
                **kwargs) -> CVResult | float:
    """Score one layer against neural responses with the named method.

    Parameters
    ----------
    method : {"ridge", "pls", "rsa", "cka"}
    summary : LayerSummary, dict or ndarray
        A :class:`~neurozoo.features.LayerSummary`, a dict with ``gram``
        (and for correlation-distance RSA ``rowsum``, ``n_features``), or a
        Gram matrix of shape (n, n). The Gram matrix must be finite and
        symmetric.
    y : ndarray, shape (n, n_neuroids)
        Trial-averaged responses.
    folds : list of ndarray of int, optional
        Test indices of the outer folds; required by ``"ridge"`` and ``"pls"``.
    **kwargs
        ridge: ``alphas``, ``n_alphas``, ``alpha_low``, ``alpha_high``,
        ``device``, ``dtype``; pls: ``n_components``, ``device``, ``dtype``;
        rsa: ``distance`` (correlation, euclidean), ``comparison`` (spearman,
        pearson, kendall_a). The area RDM z-scores each neuroid across
        stimuli first (:func:`~neurozoo.mapping.rsa.neural_rdm`), as
        ``neurozoo run`` does; the layer RDM uses the raw features.

    Returns
    -------
    CVResult for ridge and pls; float for rsa and cka.
    """
    from neurozoo.features import check_gram

    if method not in METHODS:
        raise NeurozooError(
            f"unknown mapping method '{method}' (valid: {', '.join(METHODS)})"
        )
    gram, rowsum, n_features = _parts(summary)
    check_gram(gram, f"{method} mapping")
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != gram.shape[0]:
        raise NeurozooError(f"{method}: Gram matrix {gram.shape} and responses "
                            f"{y.shape} disagree")
    if method in ("ridge", "pls"):
        if folds is None:
            raise NeurozooError(f"{method}: outer folds are required")
        run = cross_validated_ridge if method == "ridge" else cross_validated_pls
        return run(gram, y, folds, **kwargs)
    if not np.isfinite(y).all():
        raise NeurozooError(f"{method}: responses contain NaN or infinite values")
    if method == "cka":
        if kwargs:
            raise NeurozooError(f"cka: unexpected options {sorted(kwargs)}")
        return linear_cka(gram, y @ y.T)
    distance = kwargs.pop("distance", "correlation")
    comparison = kwargs.pop("comparison", "spearman")
    if kwargs:
        raise NeurozooError(f"rsa: unexpected options {sorted(kwargs)} (valid: "
                            "distance, comparison)")
    if distance not in DISTANCES or comparison not in COMPARISONS:
        raise NeurozooError(
            f"rsa: distance '{distance}' / comparison '{comparison}' unknown (valid "
            f"distances: {', '.join(DISTANCES)}; comparisons: {', '.join(COMPARISONS)})"
        )
    if distance == "correlation" and (rowsum is None or n_features is None):
        raise NeurozooError("rsa: correlation distance needs the row sums and the "
                            "number of features of the layer")
    layer_rdm = rdm_from_gram(gram, np.asarray(rowsum) if rowsum is not None else None,
                              n_features, distance)
    return compare_rdms(neural_rdm(y, distance), layer_rdm, comparison)
