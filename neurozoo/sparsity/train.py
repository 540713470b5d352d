"""Training with masks: the loop shared by every sparse-training method.

The loop is a plain SGD classifier trainer whose batches and learning rate are
functions of the step alone (:func:`batch_indices`, :func:`lr_at`), so a run
can start at any step: that is what rewinding needs. Iterative magnitude
pruning (IMP) restarts it after each pruning round:

- rewinding to initialisation (Frankle & Carbin, ICLR 2019): surviving weights
  go back to their values at step 0, training reruns steps ``0..T``;
- weight rewinding (Frankle et al., ICML 2020): back to their values at step
  ``k``, training reruns steps ``k..T`` with the schedule from step ``k``;
- learning-rate rewinding (Renda et al., ICLR 2020): the weights stay as
  trained, only the schedule goes back: steps ``k..T`` again;
- random reinitialisation, the lottery-ticket control: the same mask on a
  fresh initialisation, steps ``0..T``.

Masks are kept during training by zeroing the pruned weights' gradients
before each step (so momentum and weight decay never move them) and the
weights themselves after it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neurozoo.errors import NeurozooError
from neurozoo.sparsity.masks import apply_masks, mask_gradients

__all__ = [
    "TrainConfig",
    "SCHEDULES",
    "REWINDS",
    "lr_at",
    "batch_indices",
    "train",
    "evaluate",
]

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "step", "constant")
REWINDS = ("init", "weight", "lr", "reinit")


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained (one IMP round, one RigL run, ...).

    Attributes
    ----------
    steps : int
        Optimiser steps of one full training run (``T``).
    batch_size : int
    lr : float
        Peak learning rate of SGD.
    momentum : float
    weight_decay : float
    warmup_steps : int
        Linear warm-up from ``lr / warmup_steps`` to ``lr``.
    schedule : {"cosine", "step", "constant"}
        After warm-up: cosine decay to 0 at ``steps``, or a tenfold drop at
        50% and again at 75% of ``steps``, or constant.
    """

    steps: int = 400
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 0
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise NeurozooError(f"train.{name}: must be a positive integer, "
                                    f"got {v!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(
                self.warmup_steps, int) or not 0 <= self.warmup_steps <= self.steps:
            raise NeurozooError(f"train.warmup_steps: must be an integer in "
                                f"[0, steps], got {self.warmup_steps!r}")
        for name in ("lr", "momentum", "weight_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 \
                    or not math.isfinite(v):
                raise NeurozooError(f"train.{name}: must be a number >= 0, got {v!r}")
        if self.schedule not in SCHEDULES:
            raise NeurozooError(f"train.schedule: '{self.schedule}' is not one of "
                                f"{', '.join(SCHEDULES)}")

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(config: TrainConfig, step: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based)."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        return config.lr * (0.1 ** ((step >= config.steps // 2)
                                    + (step >= (3 * config.steps) // 4)))
    span = max(1, config.steps - config.warmup_steps)
    t = min(1.0, (step - config.warmup_steps) / span)
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * t))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """The examples of step ``step``: epochs are seeded permutations of
    ``range(n)``, cut into ``n // batch_size`` full batches."""
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise NeurozooError(f"batch size {batch_size} exceeds the {n} training "
                            "examples")
    epoch, i = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)[i * batch_size: (i + 1) * batch_size]


def _bn_l1(model: nn.Module, strength: float) -> None:
    """Add the subgradient of ``strength * sum |gamma|`` over batch norms."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None \
                and m.weight.grad is not None:
            m.weight.grad.add_(torch.sign(m.weight.detach()), alpha=strength)


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    *,
    start: int = 0,
    end: int | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    bn_l1: float = 0.0,
    before_step: Callable[[int, torch.optim.Optimizer], bool | None] | None = None,
    after_step: Callable[[int], None] | None = None,
    after_epoch: Callable[[int, int], bool] | None = None,
    progress: bool = False,
) -> list[float]:
    """Train ``model`` in place from step ``start`` to ``end``.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier; the loss is the cross-entropy over all its logits, with
        labels indexing the first ones.
    x : Tensor, shape (n, ...)
        Training inputs, on the model's device.
    y : Tensor, shape (n,)
        Integer labels.
    config : TrainConfig
    start, end : int
        Step range (``end`` defaults to ``config.steps``); the schedule and
        the batches follow the absolute step.
    masks : mapping of str to bool tensor, optional
        Kept fixed: pruned weights stay at zero.
    seed : int
        Seed of the batch order.
    bn_l1 : float
        L1 penalty on batch-norm scales (network slimming), used by the
        early-bird search.
    before_step : callable, optional
        ``before_step(step, optimizer)`` after the backward pass, before the
        masks and the update (RigL changes its masks there). It may mutate
        ``masks`` in place; when it returns ``True`` the step makes no
        update (RigL's mask-update steps).
    after_step : callable, optional
        ``after_step(steps_done)`` after each update (a rewind point is
        recorded there).
    after_epoch : callable, optional
        ``after_epoch(epoch, step_done)`` at each epoch's end; returning
        ``True`` stops training.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of float
        The training loss of every step run.
    """
    end = config.steps if end is None else end
    if not 0 <= start <= end:
        raise NeurozooError(f"training steps {start}..{end} are not a valid range")
    n = len(y)
    per_epoch = n // config.batch_size
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr_at(config, start), momentum=config.momentum,
                          weight_decay=config.weight_decay)
    if masks is not None:
        apply_masks(model, masks)
    losses: list[float] = []
    steps = range(start, end)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="train", unit="step", leave=False)
    for step in steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(config, step)
        idx = batch_indices(n, config.batch_size, seed, step).to(y.device)
        model.train()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        if not torch.isfinite(loss):
            raise NeurozooError(f"training diverged at step {step} (loss {loss}); "
                                "lower train.lr")
        opt.zero_grad(set_to_none=False)
        loss.backward()
        if bn_l1:
            _bn_l1(model, bn_l1)
        skip = bool(before_step(step, opt)) if before_step is not None else False
        if masks is not None:
            mask_gradients(model, masks)
        if not skip:
            opt.step()
        if masks is not None:
            apply_masks(model, masks)
        losses.append(float(loss.detach()))
        if after_step is not None:
            after_step(step + 1)
        if after_epoch is not None and (step + 1) % per_epoch == 0:
            if after_epoch((step + 1) // per_epoch - 1, step + 1):
                break
    model.eval()
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 256) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` (eval mode) on ``(x, y)``."""
    was = model.training
    model.eval()
    correct, total_loss = 0, 0.0
    for i in range(0, len(y), batch_size):
        out = model(x[i: i + batch_size])
        yy = y[i: i + batch_size]
        total_loss += float(F.cross_entropy(out, yy, reduction="sum"))
        correct += int((out.argmax(1) == yy).sum())
    model.train(was)
    return {"accuracy": correct / len(y), "loss": total_loss / len(y)}

