"""Training the head-direction RNN: AdamW, clipping, penalties, checkpoints.

:func:`train` runs the configured number of updates and writes, in the
results folder:

- ``checkpoint.pt``: model, optimiser, step, loss log, configuration and
  provenance, rewritten atomically every ``train.checkpoint_every`` updates
  and after the last one;
- ``loss.csv``: the loss log (one row per ``train.log_every`` updates, means
  over those updates);
- ``config.json``: the run's configuration and provenance.

Every update draws its trials and its noise from seeds derived from
``(config.seed, update index)``, so an interrupted run that resumes from its
last checkpoint continues exactly as the uninterrupted run would have, without
redoing the updates before the checkpoint.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import neurozoo
from neurozoo.errors import NeurozooError
from neurozoo.headdir.config import HeadDirConfig, config_from_dict
from neurozoo.headdir.model import HeadDirRNN
from neurozoo.headdir.task import Trials, generate_trials, wrap_angle
from neurozoo.io import atomic_path, read_json, write_json

__all__ = [
    "CHECKPOINT",
    "TrainResult",
    "train",
    "load_trained",
    "training_batch",
    "heldout_trials",
    "decode_heading",
    "heading_error_deg",
    "provenance",
    "resolve_device",
    "run_trials",
]

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LOSS_LOG = "loss.csv"
CONFIG_FILE = "config.json"
_FORMAT = "neurozoo.headdir.checkpoint/1"
_LOG_FIELDS = (
    "step",
    "loss",
    "mse",
    "rate_penalty",
    "weight_penalty",
    "grad_norm",
    "lr",
    "error_deg",
)


def provenance(config: HeadDirConfig, device: str | None = None) -> dict:
    """Provenance block stored with every result file.

    Parameters
    ----------
    config : HeadDirConfig
        The run.
    device : str or None
        Device the run used.

    Returns
    -------
    dict
        Package, torch, numpy and Python versions, the configuration, its
        hash and seed, and the device.
    """
    return {
        "neurozoo_version": neurozoo.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "seed": config.seed,
        "device": device,
    }


def resolve_device(device: str | None) -> torch.device:
    """``"auto"``/None picks CUDA when available, else CPU.

    Parameters
    ----------
    device : str or None
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or None.

    Returns
    -------
    torch.device
    """
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise NeurozooError(f"device: not a torch device, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NeurozooError(f"device: {device} requested but CUDA is not available")
    return dev


def training_batch(config: HeadDirConfig, step: int) -> Trials:
    """The trials of update ``step`` (a pure function of seed and step).

    Parameters
    ----------
    config : HeadDirConfig
        The run.
    step : int
        Update index, from 0.

    Returns
    -------
    Trials
    """
    rng = np.random.default_rng([config.seed, 1, step])
    return generate_trials(config.task, config.train.batch_size, rng)


def heldout_trials(
    config: HeadDirConfig, n_trials: int | None = None, n_steps: int | None = None
) -> Trials:
    """Held-out trials, drawn from a seed stream training never uses.

    Parameters
    ----------
    config : HeadDirConfig
        The run.
    n_trials : int or None
        Defaults to ``config.analysis.n_trials``.
    n_steps : int or None
        Defaults to the training trial length.

    Returns
    -------
    Trials
    """
    n_trials = config.analysis.n_trials if n_trials is None else n_trials
    n_steps = config.task.n_steps if n_steps is None else n_steps
    rng = np.random.default_rng([config.seed, 2, n_steps])
    return generate_trials(config.task, n_trials, rng, n_steps=n_steps)


def _noise_generator(seed: int, stream: int, step: int, device) -> torch.Generator:
    s = int(np.random.SeedSequence([seed, stream, step]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(s)


def decode_heading(outputs: np.ndarray) -> np.ndarray:
    """Heading read out as ``atan2(sin, cos)``.

    Parameters
    ----------
    outputs : numpy.ndarray
        ``(..., 2)`` readout (sine, cosine).

    Returns
    -------
    numpy.ndarray
        ``(...)`` heading in ``[-pi, pi]``.
    """
    outputs = np.asarray(outputs)
    return np.arctan2(outputs[..., 0], outputs[..., 1])


def heading_error_deg(outputs: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Absolute decoded-heading error in degrees.

    Parameters
    ----------
    outputs : numpy.ndarray
        ``(n_trials, n_steps, 2)`` readout.
    heading : numpy.ndarray
        ``(n_trials, n_steps)`` true heading, radians.

    Returns
    -------
    numpy.ndarray
        ``(n_trials, n_steps)`` error in ``[0, 180]`` degrees.
    """
    return np.degrees(np.abs(wrap_angle(decode_heading(outputs) - heading)))


def run_trials(
    model: HeadDirRNN,
    trials: Trials,
    noise: bool = False,
    seed: int = 0,
    batch_size: int = 500,
    keep_rates: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Simulate the model on trials without gradients.

    Parameters
    ----------
    model : HeadDirRNN
        The network (any device).
    trials : Trials
        Inputs to run.
    noise : bool
        Whether the model's noise is on.
    seed : int
        Seed of the noise.
    batch_size : int
        Trials per forward pass.
    keep_rates : bool
        Return the rates (False saves memory on long trials).

    Returns
    -------
    outputs : numpy.ndarray
        ``(n_trials, n_steps, 2)`` readout.
    rates : numpy.ndarray or None
        ``(n_trials, n_steps, n_units)`` firing rates (None unless
        ``keep_rates``).
    """
    dev = next(model.parameters()).device
    gen = _noise_generator(seed, 4, 0, dev)
    outs, rates = [], []
    with torch.no_grad():
        for i in range(0, trials.n_trials, batch_size):
            x = torch.as_tensor(trials.inputs[i : i + batch_size], device=dev)
            y, r = model(x, generator=gen, noise=noise)
            outs.append(y.cpu().numpy())
            if keep_rates:
                rates.append(r.cpu().numpy())
    return np.concatenate(outs), np.concatenate(rates) if keep_rates else None


def _lr_at(config: HeadDirConfig, step: int) -> float:
    tc = config.train
    frac = step / max(1, tc.n_updates - 1)
    return tc.lr * (
        tc.lr_decay + (1 - tc.lr_decay) * 0.5 * (1 + math.cos(math.pi * frac))
    )


def _loss(model: HeadDirRNN, trials: Trials, config: HeadDirConfig, gen, dev):
    x = torch.as_tensor(trials.inputs, device=dev)
    y_true = torch.as_tensor(trials.targets, device=dev)
    y, rates = model(x, generator=gen)
    mse = torch.mean((y - y_true) ** 2)
    rate_pen = config.train.l2_activity * torch.mean(rates**2)
    weight_pen = config.train.l2_weight * torch.mean(model.effective_weights() ** 2)
    return mse + rate_pen + weight_pen, mse, rate_pen, weight_pen, y


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : HeadDirRNN
        The trained network.
    log : list of dict
        Loss-log rows (see ``loss.csv``).
    wall_time_s : float
        Training time summed over all sessions of this run.
    resumed_from : int
        Update index the last session started from (0 for a fresh run).
    out_dir : Path
        The results folder.
    """

    model: HeadDirRNN
    log: list
    wall_time_s: float
    resumed_from: int
    out_dir: Path


def _write_loss_csv(path: Path, log: list) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_LOG_FIELDS)
    w.writeheader()
    w.writerows(log)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def _read_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise NeurozooError(f"checkpoint {path}: unreadable ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise NeurozooError(
            f"checkpoint {path}: not a neurozoo head-direction checkpoint"
        )
    return state


def train(
    config: HeadDirConfig,
    out_dir: str | Path,
    device: str | None = "cpu",
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a :class:`HeadDirRNN` on the head-direction task.

    Parameters
    ----------
    config : HeadDirConfig
        The run (validated on construction, so bad values never get here).
    out_dir : str or Path
        Results folder; created if needed.
    device : str or None
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` if present (it must belong to
        the same configuration hash); if False an existing checkpoint is an
        error.
    progress : bool
        Show a tqdm progress bar.
    stop_after : int or None
        Stop (after checkpointing) once this many updates are done in total,
        as if interrupted; None runs to ``train.n_updates``.

    Returns
    -------
    TrainResult
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    tc = config.train
    ckpt_path = out / CHECKPOINT

    model = HeadDirRNN(config.model, seed=config.seed).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    log: list[dict] = []
    start, wall = 0, 0.0
    if ckpt_path.exists():
        if not resume:
            raise NeurozooError(
                f"out: {out} already holds a checkpoint; choose another folder "
                "or resume"
            )
        state = _read_checkpoint(ckpt_path)
        if state["config_hash"] != config.hash():
            raise NeurozooError(
                f"out: {out} holds a checkpoint of a different configuration "
                f"(hash {state['config_hash']}, this one {config.hash()})"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, log, wall = state["step"], state["log"], state["wall_time_s"]
        logger.info("resuming %s from update %d", out, start)
    write_json(out / CONFIG_FILE, provenance(config, str(dev)))

    end = tc.n_updates if stop_after is None else min(tc.n_updates, stop_after)
    acc: dict[str, float] = {k: 0.0 for k in _LOG_FIELDS[1:]}
    n_acc = 0
    t0 = time.perf_counter()
    bar = tqdm(
        total=tc.n_updates,
        initial=start,
        disable=not progress,
        desc="headdir train",
        unit="upd",
    )

    def checkpoint(step_done: int) -> None:
        state = {
            "format": _FORMAT,
            "step": step_done,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "log": log,
            "wall_time_s": wall + time.perf_counter() - t0,
            "done": step_done >= tc.n_updates,
            **provenance(config, str(dev)),
        }
        _save_checkpoint(ckpt_path, state)
        _write_loss_csv(out / LOSS_LOG, log)

    model.train()
    for step in range(start, end):
        lr = _lr_at(config, step)
        for group in opt.param_groups:
            group["lr"] = lr
        trials = training_batch(config, step)
        gen = _noise_generator(config.seed, 3, step, dev)
        loss, mse, rp, wp, y = _loss(model, trials, config, gen, dev)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        with torch.no_grad():
            err = heading_error_deg(y.detach().cpu().numpy(), trials.heading)
            err = float(err[:, trials.cue_steps :].mean())
        for k, v in zip(_LOG_FIELDS[1:], (loss, mse, rp, wp, gnorm, lr, err)):
            acc[k] += float(v.detach()) if torch.is_tensor(v) else float(v)
        n_acc += 1
        done = step + 1
        if done % tc.log_every == 0 or done == tc.n_updates:
            row = {"step": done, **{k: v / n_acc for k, v in acc.items()}}
            log.append(row)
            acc = {k: 0.0 for k in acc}
            n_acc = 0
            bar.set_postfix(loss=f"{row['loss']:.4f}", err=f"{row['error_deg']:.1f}")
            logger.debug("update %d: %s", done, row)
        if done % tc.checkpoint_every == 0 or done == end:
            checkpoint(done)
        bar.update(1)
    bar.close()
    if start >= end and not ckpt_path.exists():
        checkpoint(start)
    total_wall = wall + time.perf_counter() - t0
    logger.info("trained %s to update %d in %.1f s", out, end, total_wall)
    model.eval()
    return TrainResult(model, log, total_wall, start, out)


def load_trained(
    out_dir: str | Path, device: str | None = "cpu"
) -> tuple[HeadDirRNN, HeadDirConfig, dict]:
    """Load the model of a results folder.

    Parameters
    ----------
    out_dir : str or Path
        Folder written by :func:`train`.
    device : str or None
        Where to put the model.

    Returns
    -------
    model : HeadDirRNN
        In eval mode.
    config : HeadDirConfig
        The run's configuration.
    state : dict
        The checkpoint without the weights and optimiser: ``step``, ``log``,
        ``wall_time_s``, ``done`` and the provenance fields.
    """
    out = Path(out_dir)
    path = out / CHECKPOINT
    if not path.is_file():
        hint = (
            " (config.json present: training did not reach a checkpoint)"
            if (out / CONFIG_FILE).is_file()
            else ""
        )
        raise NeurozooError(f"out: no {CHECKPOINT} in {out}{hint}; run train first")
    state = _read_checkpoint(path)
    config = config_from_dict(state["config"])
    dev = resolve_device(device)
    # the mask comes from the checkpoint: a mask file need not exist any more
    mask = state["model"]["mask"]
    model = HeadDirRNN(config.model, seed=config.seed, mask=mask).to(dev)
    model.load_state_dict(state["model"])
    model.eval()
    meta = {k: v for k, v in state.items() if k not in ("model", "optimizer")}
    return model, config, meta


def read_config_file(out_dir: str | Path) -> dict:
    """The ``config.json`` provenance block of a results folder."""
    return read_json(Path(out_dir) / CONFIG_FILE)
