"""Scores that rank weights for pruning: higher means keep.

- :func:`magnitude_scores`: ``|w|`` (magnitude pruning; the rule of iterative
  magnitude pruning between rounds).
- :func:`random_scores`: uniform noise, seeded (the random-pruning baseline).
- :func:`snip_scores`: connection sensitivity ``|g * w|`` of SNIP (Lee et al.,
  ICLR 2019), with ``g`` the gradient of the loss on a few batches. It is the
  size of the loss's derivative with respect to a multiplicative gate on each
  connection, taken at gate 1.
- :func:`grasp_scores`: ``w * (H g)`` of GraSP (Wang et al., ICLR 2020). GraSP
  removes the weights with the largest ``-w * (H g)``, the ones whose removal
  reduces the gradient norm the least (or raises it); keeping the highest
  ``w * (H g)`` is the same rule. ``H`` is the Hessian of the loss with
  respect to the prunable weights and ``g`` its gradient, both of the loss on
  logits divided by a temperature (200 in the paper).

Data-dependent scores take ``batches``, an iterable of ``(images, labels)``
pairs; the loss is the mean over every image of every batch. The network's
buffers (batch-norm running statistics) are left as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from neurozoo.errors import NeurozooError
from neurozoo.sparsity.masks import prunable_weights

__all__ = [
    "magnitude_scores",
    "random_scores",
    "snip_scores",
    "grasp_scores",
    "SALIENCIES",
]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def magnitude_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """``|w|`` for every prunable weight."""
    return {n: w.detach().abs().clone() for n, w in prunable_weights(model).items()}


def random_scores(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Uniform random scores in ``[0, 1)``, drawn on the CPU from ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    return {n: torch.rand(w.shape, generator=gen, dtype=torch.float64)
            for n, w in prunable_weights(model).items()}


@contextlib.contextmanager
def _scoring(model: nn.Module, train_mode: bool) -> Iterator[None]:
    """Run in train or eval mode; give back the mode, buffers and gradients."""
    was_training = model.training
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    model.train(train_mode)
    try:
        yield
    finally:
        model.train(was_training)
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(buffers[n])
        for n, p in model.named_parameters():
            p.grad = grads[n]


def _batches(batches: Iterable, device: torch.device) -> list:
    out = []
    for i, item in enumerate(batches):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise NeurozooError(f"batch {i}: expected a pair (images, labels)")
        x, y = item
        out.append((x.to(device), y.to(device)))
    if not out:
        raise NeurozooError("saliency scores need at least one batch of data")
    return out


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def snip_scores(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Loss = F.cross_entropy,
    train_mode: bool = True,
) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity ``|g * w|``.

    Parameters
    ----------
    model : torch.nn.Module
    batches : iterable of (tensor, tensor)
        ``(images, labels)`` pairs, ``(n, ...)`` and ``(n,)``.
    loss_fn : callable
        ``loss_fn(logits, labels)``, a mean over the batch.
    train_mode : bool
        Score in train mode (batch statistics in batch norm), as SNIP does.

    Returns
    -------
    dict of str to tensor
        One score tensor per prunable weight, of its shape.
    """
    weights = prunable_weights(model)
    data = _batches(batches, _device(model))
    total = sum(len(y) for _, y in data)
    grads = {n: torch.zeros_like(w) for n, w in weights.items()}
    with _scoring(model, train_mode):
        for x, y in data:
            loss = loss_fn(model(x), y) * (len(y) / total)
            gs = torch.autograd.grad(loss, list(weights.values()))
            for n, g in zip(weights, gs):
                grads[n] += g
    return {n: (grads[n] * w.detach()).abs() for n, w in weights.items()}


def grasp_scores(
    model: nn.Module,
    batches: Iterable,
    loss_fn: Loss = F.cross_entropy,
    temperature: float = 200.0,
    train_mode: bool = True,
) -> dict[str, torch.Tensor]:
    """GraSP scores ``w * (H g)``; keep the highest.

    Parameters
    ----------
    model : torch.nn.Module
    batches : iterable of (tensor, tensor)
        ``(images, labels)`` pairs.
    loss_fn : callable
        ``loss_fn(logits / temperature, labels)``, a mean over the batch.
    temperature : float
        Divides the logits before the loss (the paper's ``T = 200``), which
        keeps the gradients of a network at initialisation from vanishing.
    train_mode : bool
        Score in train mode, as GraSP does.

    Returns
    -------
    dict of str to tensor
        One score tensor per prunable weight, of its shape.
    """
    if not temperature > 0:
        raise NeurozooError(f"GraSP temperature must be positive, got {temperature}")
    weights = prunable_weights(model)
    params = list(weights.values())
    data = _batches(batches, _device(model))
    total = sum(len(y) for _, y in data)
    with _scoring(model, train_mode):
        g = [torch.zeros_like(w) for w in params]
        for x, y in data:
            loss = loss_fn(model(x) / temperature, y) * (len(y) / total)
            for acc, gi in zip(g, torch.autograd.grad(loss, params)):
                acc += gi
        hg = [torch.zeros_like(w) for w in params]
        for x, y in data:
            loss = loss_fn(model(x) / temperature, y) * (len(y) / total)
            first = torch.autograd.grad(loss, params, create_graph=True)
            z = sum((gi.detach() * fi).sum() for gi, fi in zip(g, first))
            for acc, hi in zip(hg, torch.autograd.grad(z, params)):
                acc += hi
    return {n: w.detach() * h for (n, w), h in zip(weights.items(), hg)}


#: Pruning-at-initialisation criteria by name: ``fn(model, batches, seed)``.
SALIENCIES = {
    "magnitude": lambda model, batches, seed: magnitude_scores(model),
    "random": lambda model, batches, seed: random_scores(model, seed),
    "snip": lambda model, batches, seed: snip_scores(model, batches),
    "grasp": lambda model, batches, seed: grasp_scores(model, batches),
}
