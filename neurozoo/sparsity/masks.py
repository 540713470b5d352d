"""Weight masks: which connections of a network are kept.

A mask set is a ``dict`` from a parameter name (``"features.0.weight"``) to a
boolean tensor of that parameter's shape, ``True`` where the weight is kept.
Only the weights of convolutions and linear layers are prunable (biases and
normalisation parameters are not), as in the lottery-ticket and
pruning-at-initialisation literature.

Masks are chosen from scores (:func:`masks_from_scores`): the highest scores
are kept, either over the whole network (``scope="global"``) or layer by layer
(``scope="layer"``), and exactly ``round(density * n)`` weights survive. Ties
at the cut are broken by position, or in a seeded random order when a seed is
given; either way a mask is a deterministic function of its inputs. Many ties
(more than 1% of the kept weights share the cut-off score) are logged as a
warning: SNIP and GraSP scores are exactly 0 for kernel taps that only ever
see padding, for instance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch
from torch import nn

from neurozoo.errors import NeurozooError

__all__ = [
    "PRUNABLE",
    "SCOPES",
    "prunable_weights",
    "masks_from_scores",
    "apply_masks",
    "mask_gradients",
    "dense_masks",
    "masks_density",
    "sparsity_report",
]

#: Module types whose ``weight`` can be pruned.
PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
SCOPES = ("global", "layer")

Masks = dict[str, torch.Tensor]

log = logging.getLogger(__name__)


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The prunable weights of ``model``, by parameter name, in module order.

    A weight shared by several modules is listed once, under its first name.

    Raises
    ------
    NeurozooError
        If the model has no convolution or linear layer.
    """
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            out[f"{name}.weight" if name else "weight"] = module.weight
    if not out:
        raise NeurozooError(
            f"{type(model).__name__} has no convolution or linear weights to prune"
        )
    return out


def _count(n: int, density: float) -> int:
    return int(round(density * n))


def _top(flat: torch.Tensor, k: int, gen: torch.Generator | None = None,
         where: str = "") -> torch.Tensor:
    """Boolean mask of the ``k`` highest entries of a 1-d tensor; ties go to
    the earlier position, or to a random order drawn from ``gen``."""
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k <= 0:
        return keep
    if gen is None:
        order = torch.argsort(flat, descending=True, stable=True)
    else:
        perm = torch.randperm(flat.numel(), generator=gen).to(flat.device)
        order = perm[torch.argsort(flat[perm], descending=True, stable=True)]
    keep[order[:k]] = True
    if k < flat.numel():
        cut = flat[order[k - 1]]
        tied = int((flat[keep] == cut).sum())
        if tied > 1 and tied > 0.01 * k and bool(flat[order[k]] == cut):
            log.warning("%s%d of the %d kept weights tie with the cut-off score %g; "
                        "ties are broken %s", where, tied, k, float(cut),
                        "by position" if gen is None else "in a seeded random order")
    return keep


def masks_from_scores(
    scores: Mapping[str, torch.Tensor],
    density: float,
    scope: str = "global",
    current: Mapping[str, torch.Tensor] | None = None,
    seed: int | None = None,
) -> Masks:
    """Keep the highest-scoring weights.

    Parameters
    ----------
    scores : mapping of str to tensor
        A score per weight, higher is more worth keeping; each tensor has its
        parameter's shape.
    density : float
        Fraction of the weights to keep, in ``(0, 1]``: ``round(density * n)``
        of the ``n`` weights survive (over the whole network for
        ``scope="global"``, in each layer for ``scope="layer"``).
    scope : {"global", "layer"}
        One ranking over all weights, or one per layer.
    current : mapping of str to bool tensor, optional
        Masks already in place: a weight pruned there stays pruned. ``density``
        is still a fraction of all weights, so it must not exceed the current
        density.
    seed : int, optional
        Break ties at the cut in a random order drawn from this seed
        (default: by position).

    Returns
    -------
    dict of str to bool tensor
        The new masks, one per entry of ``scores``.
    """
    if scope not in SCOPES:
        raise NeurozooError(f"mask scope '{scope}' is not one of {', '.join(SCOPES)}")
    if not 0.0 < density <= 1.0:
        raise NeurozooError(f"density must be in (0, 1], got {density}")
    if not scores:
        raise NeurozooError("no scores to make masks from")
    names = list(scores)
    ranked = {}
    for name in names:
        s = scores[name].detach().flatten().to(torch.float64)
        if torch.isnan(s).any():
            raise NeurozooError(f"scores of '{name}' contain NaN")
        if current is not None:
            if name not in current:
                raise NeurozooError(f"current masks have no entry for '{name}'")
            s = torch.where(current[name].flatten().to(s.device), s,
                            torch.full_like(s, -math.inf))
        ranked[name] = s
    if current is not None:
        alive = sum(int(current[n].sum()) for n in names)
        total = sum(ranked[n].numel() for n in names)
        if scope == "global" and _count(total, density) > alive:
            raise NeurozooError(
                f"density {density} keeps more weights than the current masks "
                f"({alive} of {total})"
            )
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    out: Masks = {}
    if scope == "layer":
        for name in names:
            s = ranked[name]
            k = _count(s.numel(), density)
            if current is not None:
                k = min(k, int(current[name].sum()))
            out[name] = _top(s, k, gen, f"{name}: ").view(scores[name].shape)
        return out
    flat = torch.cat([ranked[n] for n in names])
    keep = _top(flat, _count(flat.numel(), density), gen)
    offset = 0
    for name in names:
        n = ranked[name].numel()
        out[name] = keep[offset: offset + n].view(scores[name].shape)
        offset += n
    return out


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Zero the pruned weights of ``model`` in place; returns ``model``."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        p = params[name]
        p.mul_(mask.to(device=p.device, dtype=p.dtype))
    return model


@torch.no_grad()
def mask_gradients(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the gradients of pruned weights, so that momentum and weight
    decay never move them."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        g = params[name].grad
        if g is not None:
            g.mul_(mask.to(device=g.device, dtype=g.dtype))


def dense_masks(model: nn.Module) -> Masks:
    """All-true masks over the prunable weights of ``model``."""
    return {name: torch.ones_like(w, dtype=torch.bool)
            for name, w in prunable_weights(model).items()}


def masks_density(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of the masked weights that are kept."""
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / total if total else 1.0


def sparsity_report(model: nn.Module) -> list[dict]:
    """Per prunable layer: its name, size, non-zero weights and density.

    Reads the weights themselves (a zero weight counts as pruned), so it
    describes any network, masked here or loaded from a checkpoint.
    """
    rows = []
    for name, w in prunable_weights(model).items():
        n = w.numel()
        nz = int(torch.count_nonzero(w.detach()))
        rows.append({"parameter": name, "shape": list(w.shape), "n": n,
                     "nonzero": nz, "density": nz / n})
    return rows
