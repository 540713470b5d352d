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
        number("test_fraction", 0.0, 1.0, high_open=True)
        number("density", 0.0, 1.0)
        number("rigl_alpha", 0.0, 1.0, high_open=True)
        number("rigl_end_fraction", 0.0, 1.0)
        number("channel_ratio", 0.0, 1.0, low_open=False, high_open=True)
        number("eb_epsilon", 0.0, 1.0)
        number("eb_bn_l1", 0.0, math.inf, low_open=False)
        if not isinstance(self.train, TrainConfig):
            raise NeurozooError("train: must be a mapping of training settings")
        if self.rewind_step >= self.train.steps:
            raise NeurozooError(f"rewind_step ({self.rewind_step}) must be below "
                                f"train.steps ({self.train.steps})")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        return d

    def hash(self) -> str:
        """Stable hash of the whole description (names the run)."""
        return stable_hash(self.to_dict())


def _from_dict(d: dict, where: str) -> SparsifyConfig:
    if not isinstance(d, dict):
        raise NeurozooError(f"{where}: expected a mapping of settings")
    known = {f.name for f in fields(SparsifyConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise NeurozooError(f"{where}: unknown setting(s) {', '.join(unknown)} "
                            f"(valid: {', '.join(sorted(known))})")
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
        return SparsifyConfig(**d, train=TrainConfig(**t))
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
        raise NeurozooError(f"checkpoint {path} cannot be read ({exc})") from None
    if not isinstance(obj, dict) or not {"state_dict", "masks", "neurozoo"} <= set(obj):
        raise NeurozooError(f"checkpoint {path} was not written by neurozoo sparsify")
    return obj


class _Run:
    """Writes and finds the checkpoints of one run folder."""

    def __init__(self, config: SparsifyConfig, out_dir: Path, loaded,
                 data: LabelledImages, device: torch.device):
        self.config, self.out, self.loaded, self.data = config, out_dir, loaded, data
        self.device = device
        self.written: list[Path] = []

    def path(self, name: str) -> Path:
        return self.out / name / "model.pt"

    def valid(self, name: str) -> dict | None:
        """The checkpoint ``name`` if this configuration wrote it, else None."""
        p = self.path(name)
        if not p.is_file() or not (p.parent / "metrics.json").is_file():
            return None
        ck = load_checkpoint(p)
        return ck if ck["neurozoo"].get("config_hash") == self.config.hash() else None

    def done(self, name: str) -> dict | None:
        """Like :meth:`valid`; a checkpoint found counts as written."""
        ck = self.valid(name)
        if ck is not None:
            log.info("%s: already written, skipped", self.path(name))
            self.written.append(self.path(name))
        return ck

    def save(self, name: str, module, masks, extra: dict) -> dict:
        metrics = evaluate(module, self.data.x_test, self.data.y_test)
        report = sparsity_report(module)
        n = sum(r["n"] for r in report)
        info = {
            "neurozoo_version": __version__,
            "config": self.config.to_dict(),
            "config_hash": self.config.hash(),
            "checkpoint": name,
            "base_model": self.loaded.provenance(),
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


def _imp(run: _Run, module) -> None:
    cfg, data = run.config, run.data
    t = cfg.train
    k = 0 if cfg.rewind in ("init", "reinit") else cfg.rewind_step
    per_round = cfg.density ** (1.0 / cfg.rounds)
    init = {n: v.detach().clone() for n, v in module.state_dict().items()}
    rewind_file = run.out / "rewind.pt"
    masks = dense_masks(module)
    start_round = 0
    for r in range(cfg.rounds, -1, -1):
        ck = run.valid(f"round_{r}")
        needs_point = r > 0 and cfg.rewind == "weight"
        if ck is not None and (not needs_point or rewind_file.is_file()):
            for earlier in range(r + 1):
                run.done(f"round_{earlier}")
            masks = _load_into(module, ck, run.device)
            start_round = r + 1
            break
    rewind_point = None
    if start_round and cfg.rewind == "weight":
        rewind_point = torch.load(rewind_file, map_location=run.device,
                                  weights_only=True)
    for r in range(start_round, cfg.rounds + 1):
        if r > 0:
            density = per_round ** r
            masks = masks_from_scores(magnitude_scores(module), density,
                                      scope=cfg.scope, current=masks)
            if cfg.rewind == "init":
                module.load_state_dict(init)
            elif cfg.rewind == "reinit":
                module.load_state_dict(_new_init(cfg.model, r, run.device))
            elif cfg.rewind == "weight":
                module.load_state_dict(rewind_point)
            apply_masks(module, masks)
        start = 0 if r == 0 else k
        if r == 0 and k > 0:
            train(module, data.x_train, data.y_train, t, start=0, end=k,
                  masks=masks, seed=cfg.seed, progress=True)
            rewind_point = {n: v.detach().clone() for n, v in module.state_dict().items()}
            with atomic_path(rewind_file) as tmp:
                torch.save({n: v.cpu() for n, v in rewind_point.items()}, tmp)
            start = k
        train(module, data.x_train, data.y_train, t, start=start, end=t.steps,
              masks=masks, seed=cfg.seed, progress=True)
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
        scores = SALIENCIES[cfg.criterion](module, _score_batches(cfg, data), cfg.seed)
        masks = masks_from_scores(scores, cfg.density, scope=cfg.scope)
        apply_masks(module, masks)
        run.save("pruned", module, masks, {"criterion": cfg.criterion})
    else:
        masks = _load_into(module, ck, run.device)
    if run.done("trained") is None:
        train(module, data.x_train, data.y_train, cfg.train, masks=masks,
              seed=cfg.seed, progress=True)
        run.save("trained", module, masks, {"criterion": cfg.criterion})


def _rigl(run: _Run, module) -> None:
    cfg, data = run.config, run.data
    if run.done("trained") is not None:
        return
    end = int(cfg.rigl_end_fraction * cfg.train.steps)
    rigl = RigL(module, cfg.density, end, delta=cfg.rigl_delta, alpha=cfg.rigl_alpha,
                distribution=cfg.rigl_distribution, seed=cfg.seed)
    train(module, data.x_train, data.y_train, cfg.train, masks=rigl.masks,
          seed=cfg.seed, before_step=rigl.update, progress=True)
    run.save("trained", module, rigl.masks,
             {"rigl_updates": rigl.updates, "layer_densities": rigl.densities})


def _earlybird(run: _Run, module) -> None:
    cfg, data = run.config, run.data
    ck = run.done("ticket")
    if ck is None:
        eb = EarlyBird(cfg.channel_ratio, cfg.eb_window, cfg.eb_epsilon)
        found = {"epoch": None, "step": None}

        def check(epoch: int, step: int) -> bool:
            if eb.update(module):
                found.update(epoch=epoch, step=step)
                return True
            return False

        train(module, data.x_train, data.y_train, cfg.train, seed=cfg.seed,
              bn_l1=cfg.eb_bn_l1, after_epoch=check, progress=True)
        if found["epoch"] is None:
            log.warning("no early-bird ticket emerged in %d steps (distances %s); "
                        "drawing the last masks", cfg.train.steps,
                        [round(d, 3) for d in eb.distances])
            if not eb.history:
                eb.update(module)
        masks = {k: v.to(run.device) for k, v in eb.ticket.items()}
        apply_masks(module, masks)
        run.save("ticket", module, masks,
                 {"emerged_epoch": found["epoch"], "emerged_step": found["step"],
                  "distances": [None if math.isnan(d) else d for d in eb.distances],
                  "channel_ratio": cfg.channel_ratio})
    else:
        masks = _load_into(module, ck, run.device)
    if run.done("trained") is None:
        train(module, data.x_train, data.y_train, cfg.train, masks=masks,
              seed=cfg.seed, progress=True)
        run.save("trained", module, masks, {"channel_ratio": cfg.channel_ratio})


def run_sparsify(config: SparsifyConfig, out_dir: str | Path) -> list[str]:
    """Run one sparse-training configuration into ``out_dir``.

    Returns
    -------
    list of str
        The zoo model ids of the checkpoints (also in ``models.txt``).
    """
    out = Path(out_dir)
    check_output_dir(out)
    cfg_file = out / "config.json"
    if cfg_file.is_file():
        old = read_json(cfg_file)
        if old.get("config_hash") != config.hash():
            raise NeurozooError(f"{out} holds a sparsify run of another configuration "
                                f"({cfg_file}); use another --out folder")
    write_json(cfg_file, {"config": config.to_dict(), "config_hash": config.hash(),
                          "neurozoo_version": __version__})
    device = _device(config.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        loaded, module = _model(config, device)
        prep = loaded.preprocessing
        data = load_labelled_images(config.data, config.image_size, prep.mean, prep.std,
                                    config.test_fraction, config.seed).to(device)
        n_out = None
        with torch.no_grad():
            n_out = module.eval()(data.x_train[:1]).shape[-1]
        if n_out < len(data.classes):
            raise NeurozooError(f"{config.model} has {n_out} outputs, fewer than the "
                                f"{len(data.classes)} classes of {config.data}")
        run = _Run(config, out, loaded, data, device)
        {"imp": _imp, "oneshot": _oneshot, "rigl": _rigl,
         "earlybird": _earlybird}[config.method](run, module)
    ids = checkpoint_model_ids(config, out)
    expected = [out / n / "model.pt" for n in checkpoint_names(config)]
    if [p.resolve() for p in run.written] != [p.resolve() for p in expected]:
        raise RuntimeError(f"sparsify wrote {run.written}, expected {expected}")
    with atomic_path(out / "models.txt") as tmp:
        tmp.write_text("".join(i + "\n" for i in ids))
    return ids
