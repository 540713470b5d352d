"""Sparse variants of any zoo model, addressed in its id.

Registered with :func:`neurozoo.models.transforms.register_transform`, so
they chain after any weights: ``torchvision:resnet18@imagenet+layerprune:0.8``,
``torchvision:alexnet@random:0+kwta:0.1``.

- ``magprune:F`` (in :mod:`neurozoo.models.transforms`): remove the fraction
  ``F`` of all prunable weights with one global magnitude threshold;
- ``layerprune:F``: remove the fraction ``F`` of each layer's weights by
  magnitude;
- ``randprune:F``: remove the fraction ``F`` of all prunable weights at
  random, seeded by the model id's seed (0 for trained weights);
- ``kwta:D``: replace every ReLU by k-winners-take-all keeping the fraction
  ``D`` of each layer's units (see :mod:`neurozoo.sparsity.kwta`).

Data-dependent methods (SNIP, GraSP, iterative magnitude pruning with
rewinding, early-bird tickets, RigL) need training data and write checkpoints
instead: ``neurozoo sparsify`` (:mod:`neurozoo.sparsity.pipeline`), whose
models enter the zoo as ``SOURCE:ARCH@file:CHECKPOINT``.
"""

from __future__ import annotations

from torch import nn

from neurozoo.errors import NeurozooError
from neurozoo.models.transforms import register_transform
from neurozoo.sparsity.kwta import replace_relus
from neurozoo.sparsity.masks import apply_masks, masks_from_scores
from neurozoo.sparsity.saliency import magnitude_scores, random_scores

__all__: list[str] = []


def _number(arg: str | None, name: str, low_open: bool, example: str) -> float:
    try:
        value = float(arg) if arg is not None else None
    except ValueError:
        value = None
    ok = value is not None and (0.0 < value <= 1.0 if low_open else 0.0 <= value < 1.0)
    if not ok:
        what = "a density in (0, 1]" if low_open else "a fraction in [0, 1)"
        got = repr(arg) if arg is not None else "nothing"
        raise NeurozooError(
            f"transform '{name}' needs {what}, e.g. '{name}:{example}'; got {got}"
        )
    return value


@register_transform("layerprune")
def layer_magnitude_prune(model: nn.Module, arg: str | None, seed: int) -> nn.Module:
    """Remove the fraction ``arg`` of every layer's weights, smallest first."""
    fraction = _number(arg, "layerprune", False, "0.9")
    if fraction == 0.0:
        return model
    masks = masks_from_scores(magnitude_scores(model), 1.0 - fraction, scope="layer")
    return apply_masks(model, masks)


@register_transform("randprune")
def random_prune(model: nn.Module, arg: str | None, seed: int) -> nn.Module:
    """Remove the fraction ``arg`` of all prunable weights, chosen at random."""
    fraction = _number(arg, "randprune", False, "0.9")
    if fraction == 0.0:
        return model
    masks = masks_from_scores(random_scores(model, seed), 1.0 - fraction)
    return apply_masks(model, masks)


@register_transform("kwta", changes_code=True)
def k_winners(model: nn.Module, arg: str | None, seed: int) -> nn.Module:
    """Replace every ReLU by k-winners-take-all at density ``arg``."""
    density = _number(arg, "kwta", True, "0.1")
    replace_relus(model, density)
    return model
