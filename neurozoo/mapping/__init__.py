"""Mapping layers onto neuroids: ridge, PLS, RSA and CKA from Gram summaries."""

from neurozoo.mapping.engine import METHODS, score_layer
from neurozoo.mapping.pls import KernelPLS, cross_validated_pls
from neurozoo.mapping.ridge import (
    CVResult,
    KernelRidgeCV,
    alpha_grid,
    center_gram,
    check_folds,
    cross_validated_ridge,
    fold_mean,
    kfold_indices,
)
from neurozoo.mapping.rsa import (
    compare_rdms,
    kendall_tau_a,
    linear_cka,
    rdm_from_gram,
    rdm_from_patterns,
)

__all__ = [
    "METHODS",
    "CVResult",
    "KernelPLS",
    "KernelRidgeCV",
    "alpha_grid",
    "center_gram",
    "check_folds",
    "compare_rdms",
    "cross_validated_pls",
    "cross_validated_ridge",
    "fold_mean",
    "kendall_tau_a",
    "kfold_indices",
    "linear_cka",
    "rdm_from_gram",
    "rdm_from_patterns",
    "score_layer",
]
