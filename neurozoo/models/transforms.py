"""Model variants applied after the weights are loaded, addressed by name.

A transform is ``name[:arg]`` in a model id (``...@imagenet+magprune:0.9``).
Register new ones with :func:`register_transform`; the sparsity module adds
its recipes here, so callers of the zoo never change.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from neurozoo.errors import NeurozooError

__all__ = ["register_transform", "apply_transform", "code_transforms", "TRANSFORMS",
           "CODE_TRANSFORMS"]

TRANSFORMS: dict[str, Callable[[nn.Module, str | None, int], nn.Module]] = {}
#: Transforms that change what the network computes beyond its weights
#: (a module swapped for another): they must be part of a cache key, because
#: the weights' hash does not see them.
CODE_TRANSFORMS: set[str] = set()


def register_transform(name: str, changes_code: bool = False):
    """Decorator: register ``fn(model, arg, seed) -> model`` under ``name``.

    ``changes_code``: the transform changes modules, not only weights (so
    :func:`code_transforms` reports it for cache keys).
    """

    def wrap(fn):
        if name in TRANSFORMS:
            raise ValueError(f"transform '{name}' is already registered")
        TRANSFORMS[name] = fn
        if changes_code:
            CODE_TRANSFORMS.add(name)
        return fn

    return wrap


def code_transforms(transforms) -> list[str]:
    """The specs among ``transforms`` whose transform changes the code."""
    return [t for t in transforms if t.partition(":")[0] in CODE_TRANSFORMS]


def apply_transform(model: nn.Module, spec: str, seed: int = 0) -> nn.Module:
    """Apply the transform ``spec`` (``name`` or ``name:arg``) to ``model``."""
    name, _, arg = spec.partition(":")
    if name not in TRANSFORMS:
        raise NeurozooError(
            f"unknown model transform '{name}' (valid: {', '.join(sorted(TRANSFORMS))})"
        )
    return TRANSFORMS[name](model, arg or None, seed)


def _fraction(arg: str | None, name: str) -> float:
    try:
        value = float(arg) if arg is not None else None
    except ValueError:
        value = None
    if value is None or not 0.0 <= value < 1.0:
        raise NeurozooError(
            f"transform '{name}' needs a fraction in [0, 1), e.g. '{name}:0.9'; "
            f"got {repr(arg) if arg is not None else 'nothing'}"
        )
    return value


@register_transform("magprune")
def global_magnitude_prune(model: nn.Module, arg: str | None, seed: int) -> nn.Module:
    """Zero the smallest-magnitude weights of all conv and linear layers.

    One global threshold over every ``Conv*d`` and ``Linear`` weight tensor
    (biases and norms untouched) removes the fraction ``arg`` of them. Ties at
    the threshold are broken by position, so exactly that fraction is zeroed.
    """
    fraction = _fraction(arg, "magprune")
    weights = [m.weight for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    if not weights:
        raise NeurozooError("magprune: the model has no conv or linear weights")
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    k = int(round(fraction * flat.numel()))
    if k == 0:
        return model
    order = torch.argsort(flat, stable=True)
    mask = torch.ones_like(flat)
    mask[order[:k]] = 0
    offset = 0
    with torch.no_grad():
        for w in weights:
            n = w.numel()
            w.mul_(mask[offset: offset + n].view_as(w))
            offset += n
    return model


# The sparsity module's transforms (layerprune, randprune, kwta) register
# themselves on import; imported last, once register_transform exists.
import neurozoo.sparsity.transforms  # noqa: E402, F401
