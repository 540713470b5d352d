"""Sparse networks: pruning masks and criteria, k-winners-take-all, and
sparse training (iterative magnitude pruning with weight or learning-rate
rewinding, early-bird tickets, RigL).

One-shot, data-free variants are zoo transforms (``+magprune:0.9``,
``+layerprune:0.9``, ``+randprune:0.9``, ``+kwta:0.1``); the methods that
need data train or score a network and write a checkpoint that the zoo loads
as ``SOURCE:ARCH@file:PATH`` (``neurozoo sparsify``).
"""

from neurozoo.sparsity.kwta import KWinners, replace_relus
from neurozoo.sparsity.masks import (
    apply_masks,
    dense_masks,
    mask_gradients,
    masks_density,
    masks_from_scores,
    prunable_weights,
    sparsity_report,
)
from neurozoo.sparsity.saliency import (
    grasp_scores,
    magnitude_scores,
    random_scores,
    snip_scores,
)

__all__ = [
    "KWinners",
    "replace_relus",
    "apply_masks",
    "dense_masks",
    "mask_gradients",
    "masks_density",
    "masks_from_scores",
    "prunable_weights",
    "sparsity_report",
    "grasp_scores",
    "magnitude_scores",
    "random_scores",
    "snip_scores",
]
