"""RigL: sparse training with dynamic connectivity (Evci et al., ICML 2020).

The network starts sparse, with per-layer densities from the
Erdos-Renyi-kernel rule (:func:`erk_densities`) or uniform, and random masks.
Every ``delta`` steps until ``end_step``, each layer drops the fraction
``f(t) = alpha / 2 * (1 + cos(pi * t / end_step))`` of its active weights with
the smallest magnitude and grows as many inactive connections with the
largest dense-gradient magnitude. Newly grown weights start at zero, with no
momentum; a weight dropped and grown back in the same update keeps its value.
As in the reference implementations, a mask-update step makes no weight
update (:meth:`RigL.update` returns ``True`` there, which tells
:func:`neurozoo.sparsity.train.train` to skip it). Each layer's weight count
never changes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from neurozoo.errors import NeurozooError
from neurozoo.sparsity.masks import masks_from_scores, prunable_weights

__all__ = ["erk_densities", "RigL", "DISTRIBUTIONS"]

DISTRIBUTIONS = ("erk", "uniform")


def erk_densities(shapes: dict[str, tuple[int, ...]], density: float,
                  power: float = 1.0) -> dict[str, float]:
    """Per-layer densities of the Erdos-Renyi-kernel rule.

    Layer ``l`` of shape ``(d1, ..., dk)`` gets density ``eps * r_l`` with
    ``r_l = (sum(d) / prod(d)) ** power``; ``eps`` is set so that the kept
    weights total ``density`` of all weights. Layers whose density would
    exceed 1 are kept dense and ``eps`` is solved again over the rest.

    Parameters
    ----------
    shapes : dict of str to tuple of int
    density : float
        Overall density, in ``(0, 1]``.
    power : float
        Exponent on the ratio (1 in the paper).

    Returns
    -------
    dict of str to float
    """
    if not 0.0 < density <= 1.0:
        raise NeurozooError(f"density must be in (0, 1], got {density}")
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: (sum(s) / math.prod(s)) ** power for n, s in shapes.items()}
    total = sum(sizes.values())
    dense: set[str] = set()
    while True:
        rest = [n for n in shapes if n not in dense]
        budget = density * total - sum(sizes[n] for n in dense)
        if not rest:
            break
        eps = budget / sum(raw[n] * sizes[n] for n in rest)
        over = [n for n in rest if eps * raw[n] > 1.0]
        if not over:
            break
        dense.update(over)
    return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}


class RigL:
    """Masks of a RigL run, updated from the dense gradients.

    Parameters
    ----------
    model : torch.nn.Module
        Its prunable weights are masked at construction (in place).
    density : float
        Overall density of the prunable weights.
    end_step : int
        No update at or after this step (75% of training in the paper).
    delta : int
        Steps between mask updates.
    alpha : float
        Fraction of active weights changed at the first update.
    distribution : {"erk", "uniform"}
        How the density is spread over layers.
    seed : int
        Seed of the random initial masks.

    Attributes
    ----------
    masks : dict of str to bool tensor
    densities : dict of str to float
    updates : int
        Mask updates done so far.
    """

    def __init__(self, model: nn.Module, density: float, end_step: int, *,
                 delta: int = 100, alpha: float = 0.3, distribution: str = "erk",
                 seed: int = 0):
        if distribution not in DISTRIBUTIONS:
            raise NeurozooError(f"RigL distribution '{distribution}' is not one of "
                                f"{', '.join(DISTRIBUTIONS)}")
        if not 0.0 < alpha < 1.0:
            raise NeurozooError(f"RigL alpha must be in (0, 1), got {alpha}")
        if delta < 1 or end_step < 0:
            raise NeurozooError("RigL delta must be >= 1 and end_step >= 0")
        self.density, self.end_step, self.delta, self.alpha = (
            density, end_step, delta, alpha)
        weights = prunable_weights(model)
        shapes = {n: tuple(w.shape) for n, w in weights.items()}
        if distribution == "erk":
            self.densities = erk_densities(shapes, density)
        else:
            if not 0.0 < density <= 1.0:
                raise NeurozooError(f"density must be in (0, 1], got {density}")
            self.densities = dict.fromkeys(shapes, density)
        gen = torch.Generator().manual_seed(int(seed))
        self.masks = {}
        for n, w in weights.items():
            noise = {n: torch.rand(w.shape, generator=gen, dtype=torch.float64)}
            self.masks[n] = masks_from_scores(noise, self.densities[n])[n].to(w.device)
        self.updates = 0
        with torch.no_grad():
            for n, w in weights.items():
                w.mul_(self.masks[n].to(w.dtype))
        self._model = model

    def fraction(self, step: int) -> float:
        """Fraction of active weights changed at ``step``."""
        return self.alpha / 2.0 * (1.0 + math.cos(math.pi * step / self.end_step)) \
            if self.end_step else 0.0

    def due(self, step: int) -> bool:
        """Whether the masks change at ``step``."""
        return 0 < step < self.end_step and step % self.delta == 0

    @torch.no_grad()
    def update(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Drop and grow connections from the current weights and their
        dense gradients (call after ``backward``). A no-op unless
        :meth:`due`; returns whether the masks were updated."""
        if not self.due(step):
            return False
        f = self.fraction(step)
        for n, w in prunable_weights(self._model).items():
            if w.grad is None:
                raise NeurozooError(f"RigL update at step {step}: '{n}' has no "
                                    "gradient")
            old = self.masks[n]
            flat_old = old.flatten()
            k = int(f * int(flat_old.sum()))
            if k == 0:
                continue
            drop_score = torch.where(flat_old, w.detach().abs().flatten().double(),
                                     torch.full_like(flat_old, math.inf,
                                                     dtype=torch.float64))
            order = torch.argsort(drop_score, stable=True)
            kept = flat_old.clone()
            kept[order[:k]] = False
            grow_score = torch.where(kept, torch.full_like(kept, -math.inf,
                                                            dtype=torch.float64),
                                     w.grad.abs().flatten().double())
            order = torch.argsort(grow_score, descending=True, stable=True)
            new = kept.clone()
            new[order[:k]] = True
            grown = new & ~flat_old
            w.view(-1)[grown] = 0
            if optimizer is not None:
                buf = optimizer.state.get(w, {}).get("momentum_buffer")
                if buf is not None:
                    buf.view(-1)[grown | (flat_old & ~new)] = 0
            old.copy_(new.view_as(old))
        self.updates += 1
        return True
