"""Mapping layers onto neuroids: ridge regression and RSA."""

from neurozoo.mapping.ridge import KernelRidgeCV, alpha_grid, center_gram, kfold_indices
from neurozoo.mapping.rsa import compare_rdms, rdm_from_gram, rdm_from_patterns

__all__ = [
    "KernelRidgeCV",
    "alpha_grid",
    "center_gram",
    "compare_rdms",
    "kfold_indices",
    "rdm_from_gram",
    "rdm_from_patterns",
]
