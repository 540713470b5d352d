"""Early-bird tickets (You et al., ICLR 2020).

Train with an L1 penalty on batch-norm scales (network slimming). After each
epoch, the channel mask that prunes the fraction ``ratio`` of channels with
the smallest ``|gamma|`` (one threshold over all batch norms) is compared with
the masks of the previous epochs: when the largest normalised Hamming distance
between the newest mask and each of the ``window - 1`` before it falls below
``epsilon``, the ticket has emerged and is drawn. A pruned channel has its
scale and shift set to zero (and kept there), so its output is exactly zero.
"""

from __future__ import annotations

import torch
from torch import nn

from neurozoo.errors import NeurozooError

__all__ = ["batchnorms", "channel_masks", "mask_distance", "EarlyBird"]


def batchnorms(model: nn.Module) -> dict[str, nn.Module]:
    """The affine batch-norm modules of ``model``, by name."""
    out = {n: m for n, m in model.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine}
    if not out:
        raise NeurozooError(f"{type(model).__name__} has no affine batch norm: "
                            "early-bird tickets prune batch-norm channels")
    return out


def channel_masks(model: nn.Module, ratio: float) -> dict[str, torch.Tensor]:
    """Masks over the parameters of every batch norm (``name.weight`` and
    ``name.bias``), pruning the fraction ``ratio`` of all channels with the
    smallest ``|gamma|``; ties go to the earlier channel."""
    if not 0.0 <= ratio < 1.0:
        raise NeurozooError(f"channel pruning ratio must be in [0, 1), got {ratio}")
    bns = batchnorms(model)
    gammas = torch.cat([m.weight.detach().abs().flatten().double().cpu()
                        for m in bns.values()])
    k = int(round(ratio * gammas.numel()))
    keep = torch.ones(gammas.numel(), dtype=torch.bool)
    keep[torch.argsort(gammas, stable=True)[:k]] = False
    out, offset = {}, 0
    for name, m in bns.items():
        c = m.weight.numel()
        mask = keep[offset: offset + c].to(m.weight.device)
        out[f"{name}.weight"] = mask
        out[f"{name}.bias"] = mask.clone()
        offset += c
    return out


def mask_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Normalised Hamming distance between two channel-mask sets."""
    keys = [k for k in a if k.endswith(".weight")]
    fa = torch.cat([a[k].flatten().cpu() for k in keys])
    fb = torch.cat([b[k].flatten().cpu() for k in keys])
    return float((fa != fb).double().mean())


class EarlyBird:
    """Detects when the channel masks of a training run stop changing.

    Parameters
    ----------
    ratio : float
        Fraction of channels pruned.
    window : int
        Masks compared (the newest and the ``window - 1`` before it).
    epsilon : float
        Largest normalised Hamming distance that counts as settled.

    Attributes
    ----------
    history : list of dict
        The masks seen, oldest first (at most ``window``).
    distances : list of float
        Largest distance after each update (NaN until the window fills).
    """

    def __init__(self, ratio: float, window: int = 5, epsilon: float = 0.1):
        if window < 2:
            raise NeurozooError(f"early-bird window must be >= 2, got {window}")
        if not epsilon > 0:
            raise NeurozooError(f"early-bird epsilon must be > 0, got {epsilon}")
        self.ratio, self.window, self.epsilon = ratio, window, epsilon
        self.history: list[dict[str, torch.Tensor]] = []
        self.distances: list[float] = []

    def update(self, model: nn.Module) -> bool:
        """Add the current masks; ``True`` once the ticket has emerged."""
        self.history.append(channel_masks(model, self.ratio))
        self.history = self.history[-self.window:]
        if len(self.history) < self.window:
            self.distances.append(float("nan"))
            return False
        d = max(mask_distance(self.history[-1], h) for h in self.history[:-1])
        self.distances.append(d)
        return d < self.epsilon

    @property
    def ticket(self) -> dict[str, torch.Tensor]:
        """The newest masks."""
        if not self.history:
            raise NeurozooError("no masks yet: call update() first")
        return self.history[-1]
