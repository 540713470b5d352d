"""The sparsify stage: train sparse networks and write zoo checkpoints.

One :class:`SparsifyConfig` names a zoo model (architecture and starting
weights), labelled training images and a method:

``imp``
    Iterative magnitude pruning: train, remove ``1 - density ** (1/rounds)``
    of the surviving weights by global magnitude, rewind (``init``,
    ``weight``, ``lr``, or the control ``reinit``, see
    :mod:`neurozoo.sparsity.train`) and train again, ``rounds`` times.
    Writes ``round_0`` (dense) to ``round_R``.
``oneshot``
    Pruning at initialisation: score the starting weights (``magnitude``,
    ``random``, ``snip`` or ``grasp`` on ``score_batches`` training
    batches), keep ``density`` of them, train with the mask fixed.
    Writes ``pruned`` (before training) and ``trained``.
``rigl``
    RigL sparse training at ``density`` from the start. Writes ``trained``.
``earlybird``
    Search with an L1 penalty on batch-norm scales until the early-bird
    channel mask settles (or ``train.steps`` pass), prune the fraction
    ``channel_ratio`` of channels, train again. Writes ``ticket`` (the
    drawn network) and ``trained``.

Every checkpoint folder holds ``model.pt`` (``{"state_dict", "masks",
"neurozoo"}``, loadable by the zoo as ``SOURCE:ARCH@file:.../model.pt``) and
``metrics.json`` (test accuracy, density, layer report, provenance). The run
folder holds ``config.json`` and ``models.txt``, the zoo ids of its
checkpoints, one per line, ready for ``neurozoo run --models``.

The networks keep their 1000-class ImageNet heads, so their checkpoints fit
the zoo's architectures unchanged; labels index the first classes. A rerun
with the same configuration skips the checkpoints already written; another
configuration in the same folder is an error.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from neurozoo import __version__
from neurozoo.errors import NeurozooError
from neurozoo.io import atomic_path, check_output_dir, read_json, stable_hash, write_json
from neurozoo.sparsity.data import LabelledImages, load_labelled_images
from neurozoo.sparsity.earlybird import EarlyBird
from neurozoo.sparsity.masks import (
    SCOPES,
    apply_masks,
    dense_masks,
    masks_density,
    masks_from_scores,
    sparsity_report,
)
from neurozoo.sparsity.rigl import DISTRIBUTIONS, RigL
from neurozoo.sparsity.saliency import SALIENCIES, magnitude_scores
from neurozoo.sparsity.train import REWINDS, TrainConfig, batch_indices, evaluate, train

__all__ = ["METHODS", "SparsifyConfig", "load_sparsify_config", "run_sparsify",
           "load_checkpoint", "checkpoint_names", "checkpoint_model_ids"]

log = logging.getLogger(__name__)

METHODS = ("imp", "oneshot", "rigl", "earlybird")


@dataclass(frozen=True)
class SparsifyConfig:
    """One sparse-training run.

    Attributes
    ----------
    model : str
        Zoo model id of the starting network, e.g.
        ``torchvision:resnet18@random:0`` (its seed is the initialisation).
    data : str
        ``digits`` or a class-per-folder image tree.
    image_size : int
        Side of the training images.
    test_fraction : float
        Held-out fraction of each class.
    method : {"imp", "oneshot", "rigl", "earlybird"}
    density : float
        Fraction of prunable weights kept at the end (imp, oneshot, rigl).
    rounds : int
        IMP pruning rounds.
    rewind : {"init", "weight", "lr", "reinit"}
        IMP rewinding; ``reinit`` is the control: the round's mask on a new
        random initialisation (the model id's seed plus the round number).
    rewind_step : int
        Step ``k`` that weight and learning-rate rewinding go back to.
    scope : {"global", "layer"}
        Ranking of weights for imp and oneshot.
    criterion : {"magnitude", "random", "snip", "grasp"}
        Oneshot pruning criterion.
    score_batches : int
        Training batches that snip and grasp see.
    rigl_delta, rigl_alpha, rigl_end_fraction, rigl_distribution
        RigL's update interval, initial update fraction, last update (as a
        fraction of ``train.steps``) and layer densities.
    channel_ratio, eb_window, eb_epsilon, eb_bn_l1
        Early-bird: fraction of channels pruned, masks compared, distance
        threshold, L1 strength on batch-norm scales during the search.
    seed : int
        Seed of the batch order, the split and random choices.
    device : str
        ``auto`` (CUDA when there is one), ``cpu`` or ``cuda``.
    train : TrainConfig
    """

    model: str = "torchvision:resnet18@random:0"
    data: str = "digits"
    image_size: int = 32
    test_fraction: float = 0.2
    method: str = "imp"
    density: float = 0.2
    rounds: int = 3
    rewind: str = "weight"
    rewind_step: int = 20
    scope: str = "global"
    criterion: str = "magnitude"
    score_batches: int = 4
    rigl_delta: int = 50
    rigl_alpha: float = 0.3
    rigl_end_fraction: float = 0.75
    rigl_distribution: str = "erk"
    channel_ratio: float = 0.5
    eb_window: int = 5
    eb_epsilon: float = 0.1
    eb_bn_l1: float = 1e-4
    seed: int = 0
    device: str = "auto"
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        def choice(name, options):
            if getattr(self, name) not in options:
                raise NeurozooError(f"{name}: '{getattr(self, name)}' is not one of "
                                    f"{', '.join(options)}")

        def integer(name, low):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise NeurozooError(f"{name}: must be an integer >= {low}, got {v!r}")

        def number(name, low, high, low_open=True, high_open=False):
            v = getattr(self, name)
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and (
                (v > low if low_open else v >= low)
                and (v < high if high_open else v <= high))
            if not ok:
                lo, hi = "(" if low_open else "[", ")" if high_open else "]"
                raise NeurozooError(f"{name}: must be a number in {lo}{low}, {high}{hi}"
                                    f", got {v!r}")

        from neurozoo.models import resolve_model_id

        for name in ("model", "data"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise NeurozooError(f"{name}: must be a non-empty string, got "
                                    f"{getattr(self, name)!r}")
        spec = resolve_model_id(self.model)
        weight_changes = [t for t in spec.transforms if t.partition(":")[0] != "kwta"]
        if weight_changes:
            raise NeurozooError(
                f"model: '{self.model}' changes its weights with "
                f"{', '.join(weight_changes)}; start from plain weights and prune "
                "with the method (only +kwta, which changes the architecture, is "
                "kept)")
        choice("method", METHODS)
        choice("rewind", REWINDS)
        choice("scope", SCOPES)
        choice("criterion", tuple(SALIENCIES))
        choice("rigl_distribution", DISTRIBUTIONS)
        choice("device", ("auto", "cpu", "cuda"))
        integer("image_size", 8)
        integer("rounds", 1)
        integer("rewind_step", 0)
        integer("score_batches", 1)
        integer("rigl_delta", 1)
        integer("eb_window", 2)
        integer("seed", 0)
        if self.seed >= 2**31:
            raise NeurozooError(f"seed: must be below 2**31, got {self.seed}")
        number("test_fraction", 0.0, 1.0, high_open=True)
        number("density", 0.0, 1.0)
        number("rigl_alpha", 0.0, 1.0, high_open=True)
        number("rigl_end_fraction", 0.0, 1.0)
        number("channel_ratio", 0.0, 1.0, low_open=False, high_open=True)
        number("eb_epsilon", 0.0, 1.0)
        number("eb_bn_l1", 0.0, math.inf, low_open=False)
        if not isinstance(self.train, TrainConfig):
            raise NeurozooError("train: must be a mapping of training settings")
        if self.method == "rigl" and self.rigl_delta >= int(
                self.rigl_end_fraction * self.train.steps):
            raise NeurozooError(
                f"rigl_delta ({self.rigl_delta}) leaves no RigL update before step "
                f"{int(self.rigl_end_fraction * self.train.steps)} (rigl_end_fraction "
                f"x train.steps): lower rigl_delta or raise train.steps")
        if (self.method == "imp" and self.rewind in ("weight", "lr")
                and self.rewind_step >= self.train.steps):
            raise NeurozooError(f"rewind_step ({self.rewind_step}) must be below "
                                f"train.steps ({self.train.steps})")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        return d

    def hash(self) -> str:
        """Stable hash of the whole description (names the run)."""
        return stable_hash(self.to_dict())


def _coerce(cls, values: dict) -> dict:
    """Float fields take numbers as floats (``1`` and ``1.0`` name the same
    run) and numeric strings (YAML 1.1 reads ``1e-3`` as a string)."""
    out = dict(values)
    for f in fields(cls):
        if f.name in out and f.type in ("float", float):
            v = out[f.name]
            if isinstance(v, str):
                with contextlib.suppress(ValueError):  # a non-number fails later
                    v = float(v)
            if isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            out[f.name] = v
    return out


def _from_dict(d: dict, where: str) -> SparsifyConfig:
    if not isinstance(d, dict):
        raise NeurozooError(f"{where}: expected a mapping of settings")
    known = {f.name for f in fields(SparsifyConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        valid = sorted(known - {"train"}) + sorted(
            f"train.{f.name}" for f in fields(TrainConfig))
        raise NeurozooError(f"{where}: unknown setting(s) {', '.join(unknown)} "
                            f"(valid: {', '.join(valid)})")
    d = dict(d)
    t = d.pop("train", {}) or {}
    if not isinstance(t, dict):
        raise NeurozooError(f"{where}: train must be a mapping")
    tknown = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(t) - tknown)
    if bad:
        raise NeurozooError(f"{where}: unknown train setting(s) {', '.join(bad)} "
                            f"(valid: {', '.join(sorted(tknown))})")
    try:
        return SparsifyConfig(**_coerce(SparsifyConfig, d),
                              train=TrainConfig(**_coerce(TrainConfig, t)))
    except NeurozooError as exc:
        raise NeurozooError(f"{where}: {exc}") from None


def load_sparsify_config(path: str | Path | None = None,
                         overrides: dict[str, Any] | None = None) -> SparsifyConfig:
    """Read a YAML/JSON configuration (or the defaults) and apply
    ``overrides`` (``{"density": 0.1, "train.steps": 200}``)."""
    import yaml

    d: dict = {}
    where = "sparsify config"
    if path is not None:
        path = Path(path)
        where = str(path)
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise NeurozooError(f"config {path} cannot be read ({exc})") from None
        except yaml.YAMLError as exc:
            raise NeurozooError(f"config {path} is not valid YAML ({exc})") from None
        if not isinstance(d, dict):
            raise NeurozooError(f"config {path}: expected a mapping of settings")
    for key, value in (overrides or {}).items():
        if key.startswith("train."):
            d.setdefault("train", {})
            d["train"] = {**(d["train"] or {}), key[len("train."):]: value}
        else:
            d[key] = value
    return _from_dict(d, where)


def checkpoint_names(config: SparsifyConfig) -> list[str]:
    """The checkpoint folders a run writes, in order (known before it runs,
    so that a workflow manager can plan the jobs that score them)."""
    return {
        "imp": [f"round_{r}" for r in range(config.rounds + 1)],
        "oneshot": ["pruned", "trained"],
        "rigl": ["trained"],
        "earlybird": ["ticket", "trained"],
    }[config.method]


def checkpoint_model_ids(config: SparsifyConfig, out_dir: str | Path) -> list[str]:
    """The zoo model ids of the checkpoints a run into ``out_dir`` writes."""
    from neurozoo.models import resolve_model_id

    spec = resolve_model_id(config.model)
    suffix = "".join(f"+{t}" for t in spec.transforms)  # only kwta: see the config
    root = Path(out_dir).resolve()
    return [f"{spec.source}:{spec.arch}@file:{root / name / 'model.pt'}{suffix}"
            for name in checkpoint_names(config)]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NeurozooError("device 'cuda' asked for, but torch sees no CUDA device")
    return torch.device(name)


def _model(config: SparsifyConfig, device: torch.device):
    from neurozoo.models import load_model

    loaded = load_model(config.model)
    module = loaded.module.to(device)
    for p in module.parameters():
        p.requires_grad_(True)
    return loaded, module


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by this stage: ``{"state_dict", "masks",
    "neurozoo"}``."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
        raise NeurozooError(f"checkpoint {path} cannot be read ({first})") from None
    if not isinstance(obj, dict) or not {"state_dict", "masks", "neurozoo"} <= set(obj):
        raise NeurozooError(f"checkpoint {path} was not written by neurozoo sparsify")
    return obj


def _seed(config: SparsifyConfig, name: str) -> None:
    """Seed torch for the work of checkpoint ``name``: dropout and any other
    random draw do the same on a resumed run."""
    torch.manual_seed(int(stable_hash([config.seed, name]), 16) % 2**63)


def _versions() -> dict:
    import platform

    import numpy
    import torchvision

    out = {"python": platform.python_version(), "torch": str(torch.__version__),
           "torch_threads": torch.get_num_threads(),
           "torchvision": str(torchvision.__version__),
           "numpy": str(numpy.__version__)}
    import timm  # a core dependency

    out["timm"] = str(timm.__version__)
    return out


class _Run:
    """Writes and finds the checkpoints of one run folder."""

    def __init__(self, config: SparsifyConfig, out_dir: Path, loaded,
                 data: LabelledImages, device: torch.device, progress: bool):
        self.config, self.out, self.loaded, self.data = config, out_dir, loaded, data
        self.device, self.progress = device, progress
        self.written: list[Path] = []

    def path(self, name: str) -> Path:
        return self.out / name / "model.pt"

    def _matches(self, info: dict) -> bool:
        return (info.get("config_hash") == self.config.hash()
                and info.get("data_sha256") == self.data.sha256
                and info.get("base_weights_sha256") == self.loaded.weights_sha256)

    def valid(self, name: str) -> dict | None:
        """The checkpoint ``name`` if this configuration wrote it from the same
        data and starting weights, else None."""
        p = self.path(name)
        if not p.is_file() or not (p.parent / "metrics.json").is_file():
            return None
        try:
            ck = load_checkpoint(p)
        except NeurozooError as exc:
            log.warning("%s; it is made again", exc)
            return None
        if not self._matches(ck["neurozoo"]):
            log.info("%s was made from other data, weights or settings: made again", p)
            return None
        return ck

    def mark(self, name: str) -> None:
        """Count the valid checkpoint ``name`` as written by this run."""
        log.info("%s: already written, skipped", self.path(name))
        self.written.append(self.path(name))

    def done(self, name: str) -> dict | None:
        """Like :meth:`valid`; a checkpoint found counts as written."""
        ck = self.valid(name)
        if ck is not None:
            self.mark(name)
        return ck

    def train(self, module, **kwargs) -> list[float]:
        return train(module, self.data.x_train, self.data.y_train, self.config.train,
                     seed=self.config.seed, progress=self.progress, **kwargs)

    def save(self, name: str, module, masks, extra: dict) -> dict:
        metrics = evaluate(module, self.data.x_test, self.data.y_test)
        report = sparsity_report(module)
        n = sum(r["n"] for r in report)
        info = {
            "neurozoo_version": __version__,
            "versions": _versions(),
            "config": self.config.to_dict(),
            "config_hash": self.config.hash(),
            "checkpoint": name,
            "base_model": self.loaded.provenance(),
            "base_weights_sha256": self.loaded.weights_sha256,
            "data": self.data.source,
            "data_sha256": self.data.sha256,
            "seed": self.config.seed,
            "device": str(self.device),
            "test_accuracy": metrics["accuracy"],
            "test_loss": metrics["loss"],
            "weight_density": sum(r["nonzero"] for r in report) / n,
            "mask_density": masks_density(masks) if masks else 1.0,
            **extra,
        }
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        ck = {"state_dict": state,
              "masks": {k: v.detach().cpu() for k, v in masks.items()},
              "neurozoo": info}
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(ck, tmp)
        from neurozoo.models.zoo import state_dict_sha256

        write_json(path.parent / "metrics.json",
                   {**info, "weights_sha256": state_dict_sha256(module),
                    "layers": report})
        log.info("%s: test accuracy %.3f, weight density %.4f", path,
                 info["test_accuracy"], info["weight_density"])
        self.written.append(path)
        return ck


def _load_into(module, ck: dict, device) -> dict:
    module.load_state_dict(ck["state_dict"])
    return {k: v.to(device) for k, v in ck["masks"].items()}


def _state(module) -> dict:
    return {n: v.detach().clone() for n, v in module.state_dict().items()}


def _imp(run: _Run, module) -> None:
    cfg = run.config
    k = 0 if cfg.rewind in ("init", "reinit") else cfg.rewind_step
    per_round = cfg.density ** (1.0 / cfg.rounds)
    init = _state(module)
    rewind_file = run.out / "rewind.pt"

    def rewind_point_from_file() -> dict | None:
        if not rewind_file.is_file():
            return None
        try:
            obj = torch.load(rewind_file, map_location=run.device, weights_only=True)
        except Exception:
            return None
        if not isinstance(obj, dict) or not run._matches(obj.get("neurozoo", {})) \
                or obj["neurozoo"].get("step") != k:
            return None
        return obj["state"]

    def save_rewind_point(state: dict) -> None:
        with atomic_path(rewind_file) as tmp:
            torch.save({"state": {n: v.cpu() for n, v in state.items()},
                        "neurozoo": {"config_hash": cfg.hash(), "step": k,
                                     "data_sha256": run.data.sha256,
                                     "base_weights_sha256": run.loaded.weights_sha256}},
                       tmp)

    # Resume after the last round whose every predecessor is also valid.
    masks = dense_masks(module)
    start_round = 0
    valid = [run.valid(f"round_{r}") for r in range(cfg.rounds + 1)]
    while start_round <= cfg.rounds and valid[start_round] is not None:
        start_round += 1
    for r in range(start_round):
        run.mark(f"round_{r}")
    if start_round:
        masks = _load_into(module, valid[start_round - 1], run.device)
    rewind_point = init if k == 0 else None
    if start_round and k > 0 and start_round <= cfg.rounds:
        rewind_point = rewind_point_from_file()
        if rewind_point is None and cfg.rewind == "weight":
            # Remake it: the first k steps of round 0 from the same seed.
            log.info("%s missing or stale: retraining steps 0..%d", rewind_file, k)
            trained = _state(module)
            module.load_state_dict(init)
            _seed(cfg, "round_0")
            run.train(module, end=k)
            rewind_point = _state(module)
            save_rewind_point(rewind_point)
            module.load_state_dict(trained)
    for r in range(start_round, cfg.rounds + 1):
        _seed(cfg, f"round_{r}")
        start = 0
        if r > 0:
            masks = masks_from_scores(magnitude_scores(module), per_round ** r,
                                      scope=cfg.scope, current=masks)
            if cfg.rewind == "init":
                module.load_state_dict(init)
            elif cfg.rewind == "reinit":
                module.load_state_dict(_new_init(cfg.model, r, run.device))
            elif cfg.rewind == "weight":
                module.load_state_dict(rewind_point)
            apply_masks(module, masks)
            start = k
            run.train(module, start=start, masks=masks)
        else:
            def record(done: int) -> None:
                nonlocal rewind_point
                if done == k and k > 0:
                    rewind_point = _state(module)
                    save_rewind_point(rewind_point)

            run.train(module, masks=masks, after_step=record)
        run.save(f"round_{r}", module, masks,
                 {"round": r, "rewind": cfg.rewind, "rewind_step": k})


def _new_init(model_id: str, round_: int, device) -> dict:
    """State of a fresh random initialisation of ``model_id``'s architecture,
    seeded by its seed plus ``round_``."""
    from dataclasses import replace

    from neurozoo.models import load_model, resolve_model_id

    spec = resolve_model_id(model_id)
    fresh = replace(spec, weights="random", seed=(spec.seed or 0) + round_,
                    checkpoint=None)
    return {n: v.to(device) for n, v in load_model(fresh).module.state_dict().items()}


def _score_batches(cfg: SparsifyConfig, data: LabelledImages) -> list:
    n = len(data.y_train)
    return [(data.x_train[i], data.y_train[i]) for i in (
        batch_indices(n, cfg.train.batch_size, cfg.seed, s).to(data.y_train.device)
        for s in range(cfg.score_batches))]


def _oneshot(run: _Run, module) -> None:
    cfg, data = run.config, run.data
    ck = run.done("pruned")
    if ck is None:
        _seed(cfg, "pruned")
        scores = SALIENCIES[cfg.criterion](module, _score_batches(cfg, data), cfg.seed)
        masks = masks_from_scores(scores, cfg.density, scope=cfg.scope, seed=cfg.seed)
        apply_masks(module, masks)
        run.save("pruned", module, masks, {"criterion": cfg.criterion})
    else:
        masks = _load_into(module, ck, run.device)
    if run.done("trained") is None:
        _seed(cfg, "trained")
        run.train(module, masks=masks)
        run.save("trained", module, masks, {"criterion": cfg.criterion})


def _rigl(run: _Run, module) -> None:
    cfg = run.config
    if run.done("trained") is not None:
        return
    _seed(cfg, "trained")
    end = int(cfg.rigl_end_fraction * cfg.train.steps)
    rigl = RigL(module, cfg.density, end, delta=cfg.rigl_delta, alpha=cfg.rigl_alpha,
                distribution=cfg.rigl_distribution, seed=cfg.seed)
    run.train(module, masks=rigl.masks, before_step=rigl.update)
    run.save("trained", module, rigl.masks,
             {"rigl_updates": rigl.updates, "layer_densities": rigl.densities})


def _earlybird(run: _Run, module) -> None:
    cfg = run.config
    ck = run.done("ticket")
    channels = {}
    if ck is None:
        _seed(cfg, "ticket")
        eb = EarlyBird(cfg.channel_ratio, cfg.eb_window, cfg.eb_epsilon)
        found = {"epoch": None, "step": None}

        def check(epoch: int, step: int) -> bool:
            if eb.update(module):
                found.update(epoch=epoch, step=step)
                return True
            return False

        run.train(module, bn_l1=cfg.eb_bn_l1, after_epoch=check)
        if found["epoch"] is None:
            log.warning("no early-bird ticket emerged in %d steps (distances %s); "
                        "drawing the last masks", cfg.train.steps,
                        [round(d, 3) for d in eb.distances])
            if not eb.history:
                eb.update(module)
        masks = {k: v.to(run.device) for k, v in eb.ticket.items()}
        apply_masks(module, masks)
        channels = {"channel_density": masks_density(
            {k: v for k, v in masks.items() if k.endswith(".weight")})}
        run.save("ticket", module, masks,
                 {"emerged_epoch": found["epoch"], "emerged_step": found["step"],
                  "distances": [None if math.isnan(d) else d for d in eb.distances],
                  "channel_ratio": cfg.channel_ratio, **channels})
    else:
        masks = _load_into(module, ck, run.device)
        channels = {"channel_density": masks_density(
            {k: v for k, v in masks.items() if k.endswith(".weight")})}
    if run.done("trained") is None:
        _seed(cfg, "trained")
        run.train(module, masks=masks)
        run.save("trained", module, masks,
                 {"channel_ratio": cfg.channel_ratio, **channels})


_RUN_FILES = ("config.json", "models.txt", "rewind.pt")


def _claim(out: Path, config: SparsifyConfig, replace: bool) -> None:
    """Write ``config.json``, or refuse a folder that holds another run's
    checkpoints (unless ``replace``: then remove that run's files)."""
    cfg_file = out / "config.json"
    old_hash = None
    if cfg_file.is_file():
        try:
            old_hash = read_json(cfg_file).get("config_hash")
        except (OSError, ValueError, AttributeError):
            old_hash = "unreadable"
    if old_hash not in (None, config.hash()):
        others = sorted(p.parent.name for p in out.glob("*/model.pt"))
        if others and not replace:
            raise NeurozooError(
                f"{out} holds the checkpoints of a sparsify run of another "
                f"configuration ({', '.join(others)}; see {cfg_file}): use another "
                "--out folder, or --replace to delete them")
        import shutil

        for name in others:
            shutil.rmtree(out / name)
        for name in _RUN_FILES:
            (out / name).unlink(missing_ok=True)
        if others:
            log.warning("%s: removed the checkpoints of another configuration (%s)",
                        out, ", ".join(others))
    write_json(cfg_file, {"config": config.to_dict(), "config_hash": config.hash(),
                          "neurozoo_version": __version__})


def _preflight(config: SparsifyConfig, module, data: LabelledImages) -> None:
    """Everything that can fail before training starts."""
    n = len(data.y_train)
    if config.train.batch_size > n:
        raise NeurozooError(f"train.batch_size ({config.train.batch_size}) exceeds the "
                            f"{n} training images of {config.data}")
    if config.method == "earlybird":
        from neurozoo.sparsity.earlybird import batchnorms

        batchnorms(module)
        per_epoch = n // config.train.batch_size
        if config.train.steps < config.eb_window * per_epoch:
            raise NeurozooError(
                f"the early-bird search compares the masks of eb_window "
                f"({config.eb_window}) epochs, {config.eb_window * per_epoch} steps "
                f"at {per_epoch} steps an epoch; train.steps is {config.train.steps}")
    try:
        with torch.no_grad():
            n_out = module.eval()(data.x_train[:2]).shape[-1]
    except (RuntimeError, AssertionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
        raise NeurozooError(f"{config.model} cannot run on {config.image_size}-pixel "
                            f"images (image_size): {first}") from None
    if n_out < len(data.classes):
        raise NeurozooError(f"{config.model} has {n_out} outputs, fewer than the "
                            f"{len(data.classes)} classes of {config.data}")


def run_sparsify(config: SparsifyConfig, out_dir: str | Path, progress: bool = True,
                 replace: bool = False) -> list[str]:
    """Run one sparse-training configuration into ``out_dir``.

    Parameters
    ----------
    config : SparsifyConfig
    out_dir : path
        Run folder; a rerun resumes after the checkpoints already written.
    progress : bool
        Show progress bars.
    replace : bool
        Delete the checkpoints of another configuration found in ``out_dir``
        instead of refusing to run.

    Returns
    -------
    list of str
        The zoo model ids of the checkpoints (also in ``models.txt``).
    """
    out = Path(out_dir)
    check_output_dir(out)
    device = _device(config.device)
    with torch.random.fork_rng(devices=[]):
        loaded, module = _model(config, device)
        prep = loaded.preprocessing
        data = load_labelled_images(config.data, config.image_size, prep.mean, prep.std,
                                    config.test_fraction, config.seed).to(device)
        _preflight(config, module, data)
        _claim(out, config, replace)
        run = _Run(config, out, loaded, data, device, progress)
        {"imp": _imp, "oneshot": _oneshot, "rigl": _rigl,
         "earlybird": _earlybird}[config.method](run, module)
    ids = checkpoint_model_ids(config, out)
    expected = [out / n / "model.pt" for n in checkpoint_names(config)]
    if [p.resolve() for p in run.written] != [p.resolve() for p in expected]:
        raise RuntimeError(f"sparsify wrote {run.written}, expected {expected}")
    with atomic_path(out / "models.txt") as tmp:
        tmp.write_text("".join(i + "\n" for i in ids))
    return ids
