"""Typed, validated configuration of a head-direction run.

A run is described by one :class:`HeadDirConfig`, made of four sections:

- :class:`TaskConfig` (``task``): how angular-velocity trials are drawn;
- :class:`ModelConfig` (``model``): the continuous-time RNN;
- :class:`TrainConfig` (``train``): optimiser, penalties, checkpoints;
- :class:`AnalysisConfig` (``analysis``): evaluation and unit classification.

Every section checks its values in ``__post_init__`` and raises
:class:`~neurozoo.errors.NeurozooError` naming the field at fault, so a bad
file fails before any training starts. Configurations are read from YAML or
JSON files (:func:`load_config`) or taken from the named presets ``quick`` and
``paper`` (:func:`preset`); :meth:`HeadDirConfig.hash` gives a stable hash of
the whole run description.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from neurozoo.errors import NeurozooError
from neurozoo.io import stable_hash

__all__ = [
    "TaskConfig",
    "ModelConfig",
    "TrainConfig",
    "AnalysisConfig",
    "HeadDirConfig",
    "NONLINEARITIES",
    "PRESETS",
    "preset",
    "load_config",
    "config_from_dict",
]

NONLINEARITIES = ("rectified_tanh", "tanh", "relu", "softplus")


def _check_int(name: str, value: Any, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise NeurozooError(
            f"{name}: must be an integer, got {value!r} ({type(value).__name__})"
        )
    if minimum is not None and value < minimum:
        raise NeurozooError(f"{name}: must be >= {minimum}, got {value}")


def _check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NeurozooError(
            f"{name}: must be a number, got {value!r} ({type(value).__name__})"
        )
    if not math.isfinite(value):
        raise NeurozooError(f"{name}: must be finite, got {value}")
    if low is not None:
        if low_open and not value > low:
            raise NeurozooError(f"{name}: must be > {low}, got {value}")
        if not low_open and not value >= low:
            raise NeurozooError(f"{name}: must be >= {low}, got {value}")
    if high is not None:
        if high_open and not value < high:
            raise NeurozooError(f"{name}: must be < {high}, got {value}")
        if not high_open and not value <= high:
            raise NeurozooError(f"{name}: must be <= {high}, got {value}")


@dataclass(frozen=True)
class TaskConfig:
    """How head-direction trials are generated.

    Angular velocity is in radians per time step and follows an AR(1)
    process ``v[t] = ar_coef * v[t-1] + noise_std * eps[t]`` (``eps`` standard
    normal), started from its stationary distribution. During the first
    ``cue_steps`` steps of a trial the velocity is zero and the initial
    heading is shown as ``(sin, cos)`` on two cue inputs; afterwards the cue
    inputs are zero. In a share ``zero_fraction`` of the trials one stretch of
    ``round(zero_stretch * (n_steps - cue_steps))`` consecutive steps, at a
    random position after the cue, has zero velocity (the AR process restarts
    from zero after it).

    Attributes
    ----------
    n_steps : int
        Time steps per training trial (> 0).
    cue_steps : int
        Steps at the start of each trial during which the heading cue is on;
        ``1 <= cue_steps < n_steps``.
    ar_coef : float
        Lag-1 autoregressive coefficient of the velocity, in ``[0, 1)``.
    noise_std : float
        Standard deviation of the AR innovations, radians per step (>= 0).
    zero_fraction : float
        Share of trials that contain a zero-velocity stretch, in ``[0, 1]``.
    zero_stretch : float
        Length of that stretch as a share of the post-cue steps, in ``(0, 1]``.
    """

    n_steps: int = 100
    cue_steps: int = 5
    ar_coef: float = 0.8
    noise_std: float = 0.03
    zero_fraction: float = 0.2
    zero_stretch: float = 0.3

    def __post_init__(self) -> None:
        _check_int("task.n_steps", self.n_steps, 1)
        _check_int("task.cue_steps", self.cue_steps, 1)
        if self.cue_steps >= self.n_steps:
            raise NeurozooError(
                f"task.cue_steps: must be < task.n_steps ({self.n_steps}), "
                f"got {self.cue_steps}"
            )
        _check_float("task.ar_coef", self.ar_coef, low=0.0, high=1.0, high_open=True)
        _check_float("task.noise_std", self.noise_std, low=0.0)
        _check_float("task.zero_fraction", self.zero_fraction, low=0.0, high=1.0)
        _check_float(
            "task.zero_stretch", self.zero_stretch, low=0.0, high=1.0, low_open=True
        )

    @property
    def velocity_std(self) -> float:
        """Stationary standard deviation of the AR velocity, radians per step."""
        return self.noise_std / math.sqrt(1.0 - self.ar_coef**2)

    @property
    def zero_steps(self) -> int:
        """Length of the zero-velocity stretch, in steps (at least 1)."""
        return max(1, round(self.zero_stretch * (self.n_steps - self.cue_steps)))


@dataclass(frozen=True)
class ModelConfig:
    """The continuous-time RNN (see :class:`neurozoo.headdir.model.HeadDirRNN`).

    Attributes
    ----------
    n_units : int
        Recurrent units (> 0).
    dt : float
        Integration time step in ms (> 0).
    tau : float
        Unit time constant in ms (> 0, and >= ``dt``).
    nonlinearity : str
        One of ``rectified_tanh`` (``max(0, tanh(x))``), ``tanh``, ``relu``,
        ``softplus``.
    rec_noise : float
        Standard deviation of the recurrent (private, per-unit) noise (>= 0).
    input_noise : float
        Standard deviation of the noise added to the inputs (>= 0).
    sparsity : float
        Share of recurrent connections removed by a seeded random mask, in
        ``[0, 1)``; 0 keeps every connection. A user mask file
        (``mask_path``) takes precedence.
    mask_path : str or None
        ``.npy`` or ``.pt`` file holding a 0/1 ``(n_units, n_units)`` mask of
        the recurrent weights (``mask[i, j]`` gates the weight from unit ``j``
        to unit ``i``). Pruning recipes plug in here.
    init_gain : float
        Spectral scale of the random recurrent initialisation (> 0).
    """

    n_units: int = 100
    dt: float = 25.0
    tau: float = 100.0
    nonlinearity: str = "rectified_tanh"
    rec_noise: float = 0.05
    input_noise: float = 0.0
    sparsity: float = 0.0
    mask_path: str | None = None
    init_gain: float = 0.5

    def __post_init__(self) -> None:
        _check_int("model.n_units", self.n_units, 1)
        _check_float("model.dt", self.dt, low=0.0, low_open=True)
        _check_float("model.tau", self.tau, low=0.0, low_open=True)
        if self.dt > self.tau:
            raise NeurozooError(
                f"model.tau: must be >= model.dt ({self.dt}), got {self.tau}"
            )
        if self.nonlinearity not in NONLINEARITIES:
            raise NeurozooError(
                f"model.nonlinearity: must be one of {', '.join(NONLINEARITIES)}, "
                f"got {self.nonlinearity!r}"
            )
        _check_float("model.rec_noise", self.rec_noise, low=0.0)
        _check_float("model.input_noise", self.input_noise, low=0.0)
        _check_float("model.sparsity", self.sparsity, low=0.0, high=1.0, high_open=True)
        if self.mask_path is not None and not isinstance(self.mask_path, str):
            raise NeurozooError(
                f"model.mask_path: must be a file path or null, got {self.mask_path!r}"
            )
        _check_float("model.init_gain", self.init_gain, low=0.0, low_open=True)

    @property
    def alpha(self) -> float:
        """``dt / tau``, the fraction of a time constant covered by one step."""
        return self.dt / self.tau


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation of the RNN.

    The loss is the mean squared error of the ``(sin, cos)`` readout plus
    ``l2_activity * mean(rate**2)`` plus ``l2_weight * mean(W_rec**2)``.

    Attributes
    ----------
    n_updates : int
        Gradient updates (> 0).
    batch_size : int
        Trials per update (> 0).
    lr : float
        AdamW learning rate (> 0).
    weight_decay : float
        AdamW decoupled weight decay (>= 0).
    grad_clip : float
        Maximum global gradient norm (> 0).
    l2_activity : float
        Weight of the firing-rate penalty (>= 0).
    l2_weight : float
        Weight of the recurrent-weight penalty (>= 0).
    checkpoint_every : int
        Updates between checkpoints (> 0); the last update always checkpoints.
    log_every : int
        Updates between loss-log rows (> 0).
    lr_decay : float
        Learning rate multiplier reached at the last update (cosine schedule);
        in ``(0, 1]``, 1 keeps it constant.
    """

    n_updates: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    l2_activity: float = 1e-3
    l2_weight: float = 0.1
    checkpoint_every: int = 250
    log_every: int = 10
    lr_decay: float = 0.1

    def __post_init__(self) -> None:
        _check_int("train.n_updates", self.n_updates, 1)
        _check_int("train.batch_size", self.batch_size, 1)
        _check_float("train.lr", self.lr, low=0.0, low_open=True)
        _check_float("train.weight_decay", self.weight_decay, low=0.0)
        _check_float("train.grad_clip", self.grad_clip, low=0.0, low_open=True)
        _check_float("train.l2_activity", self.l2_activity, low=0.0)
        _check_float("train.l2_weight", self.l2_weight, low=0.0)
        _check_int("train.checkpoint_every", self.checkpoint_every, 1)
        _check_int("train.log_every", self.log_every, 1)
        _check_float("train.lr_decay", self.lr_decay, low=0.0, high=1.0, low_open=True)


@dataclass(frozen=True)
class AnalysisConfig:
    """Evaluation and unit classification (see :mod:`neurozoo.headdir.analysis`).

    Attributes
    ----------
    n_trials : int
        Held-out trials simulated for evaluation and tuning (> 0).
    long_factor : int
        Long-trial test: trials ``long_factor`` times the training length
        (>= 1).
    heading_bins : int
        Bins over ``[-pi, pi)`` for heading tuning (>= 4).
    velocity_bins : int
        Bins over ``[-velocity_range, velocity_range]`` for velocity tuning
        (>= 2).
    velocity_range : float
        Half-width of the velocity axis in units of the task's stationary
        velocity standard deviation (> 0).
    silent_rate : float
        A unit whose mean rate is below this is ``silent`` (>= 0).
    min_selectivity : float
        Minimum mean resultant length of the heading tuning curve for a unit
        to count as heading tuned, in ``[0, 1]``.
    turn_threshold : float
        Turning samples are those with ``|v| > turn_threshold`` stationary
        velocity standard deviations (>= 0).
    min_turn_index : float
        Minimum absolute turn index ``(R_left - R_right) / (R_left + R_right)``
        for a heading-tuned unit to be a shifter, in ``[0, 1]``.
    offset_bins : int
        Bins over ``[-pi, pi)`` for connectivity against angular offset (>= 4).
    noise : bool
        Whether the model's noise is on while recording activity.
    """

    n_trials: int = 200
    long_factor: int = 4
    heading_bins: int = 36
    velocity_bins: int = 15
    velocity_range: float = 2.5
    silent_rate: float = 0.01
    min_selectivity: float = 0.25
    turn_threshold: float = 0.5
    min_turn_index: float = 0.2
    offset_bins: int = 24
    noise: bool = False

    def __post_init__(self) -> None:
        _check_int("analysis.n_trials", self.n_trials, 1)
        _check_int("analysis.long_factor", self.long_factor, 1)
        _check_int("analysis.heading_bins", self.heading_bins, 4)
        _check_int("analysis.velocity_bins", self.velocity_bins, 2)
        _check_float(
            "analysis.velocity_range", self.velocity_range, low=0.0, low_open=True
        )
        _check_float("analysis.silent_rate", self.silent_rate, low=0.0)
        _check_float(
            "analysis.min_selectivity", self.min_selectivity, low=0.0, high=1.0
        )
        _check_float("analysis.turn_threshold", self.turn_threshold, low=0.0)
        _check_float("analysis.min_turn_index", self.min_turn_index, low=0.0, high=1.0)
        _check_int("analysis.offset_bins", self.offset_bins, 4)
        if not isinstance(self.noise, bool):
            raise NeurozooError(
                f"analysis.noise: must be true or false, got {self.noise!r}"
            )


_SECTIONS = {
    "task": TaskConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "analysis": AnalysisConfig,
}


@dataclass(frozen=True)
class HeadDirConfig:
    """A whole head-direction run: task, model, training and analysis.

    Attributes
    ----------
    task, model, train, analysis
        The four sections.
    seed : int
        Seed of the weight initialisation, the random mask, the training
        trials, the noise and the held-out trials (>= 0).
    name : str
        Free label for the run (not part of the hash).
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    seed: int = 0
    name: str = "custom"

    def __post_init__(self) -> None:
        for key, cls in _SECTIONS.items():
            if not isinstance(getattr(self, key), cls):
                raise NeurozooError(f"{key}: must be a {cls.__name__}")
        _check_int("seed", self.seed, 0)
        if not isinstance(self.name, str):
            raise NeurozooError(f"name: must be a string, got {self.name!r}")

    def to_dict(self) -> dict:
        """A JSON/YAML-ready nested dictionary (reads back with
        :func:`config_from_dict`)."""
        return asdict(self)

    def hash(self) -> str:
        """Stable 16-hex-digit hash of everything but ``name``."""
        d = self.to_dict()
        d.pop("name")
        return stable_hash(d)

    def replace(self, overrides: dict[str, Any]) -> HeadDirConfig:
        """A copy with dotted-key overrides, e.g. ``{"model.n_units": 64}``.

        Parameters
        ----------
        overrides : dict
            Keys ``section.field`` (or ``seed`` / ``name``) to new values.

        Returns
        -------
        HeadDirConfig
            The validated new configuration.
        """
        d = self.to_dict()
        for key, value in overrides.items():
            parts = key.split(".")
            if len(parts) == 1 and parts[0] in ("seed", "name"):
                d[parts[0]] = value
            elif len(parts) == 2 and parts[0] in _SECTIONS:
                if parts[1] not in d[parts[0]]:
                    raise NeurozooError(f"{key}: unknown configuration field")
                d[parts[0]][parts[1]] = value
            else:
                raise NeurozooError(f"{key}: unknown configuration field")
        return config_from_dict(d)


def config_from_dict(d: dict) -> HeadDirConfig:
    """Build and validate a :class:`HeadDirConfig` from a nested dictionary.

    Missing sections and fields take their defaults; unknown keys are errors.

    Parameters
    ----------
    d : dict
        ``{"task": {...}, "model": {...}, "train": {...}, "analysis": {...},
        "seed": int, "name": str}``; a ``preset`` key names a preset to start
        from (:data:`PRESETS`), the other keys then override it.

    Returns
    -------
    HeadDirConfig
    """
    if not isinstance(d, dict):
        raise NeurozooError(
            f"configuration: must be a mapping of sections, got {type(d).__name__}"
        )
    d = copy.deepcopy(d)
    base: dict = {}
    if "preset" in d:
        base = preset(d.pop("preset")).to_dict()
    for key in d:
        if key not in (*_SECTIONS, "seed", "name"):
            raise NeurozooError(
                f"{key}: unknown configuration section (valid: "
                f"{', '.join((*_SECTIONS, 'seed', 'name', 'preset'))})"
            )
    kwargs: dict[str, Any] = {}
    for key, cls in _SECTIONS.items():
        section = dict(base.get(key, {}))
        given = d.get(key) or {}
        if not isinstance(given, dict):
            raise NeurozooError(f"{key}: must be a mapping of fields")
        valid = {f.name for f in fields(cls)}
        for name in given:
            if name not in valid:
                raise NeurozooError(
                    f"{key}.{name}: unknown field (valid: {', '.join(sorted(valid))})"
                )
        section.update(given)
        try:
            kwargs[key] = cls(**section)
        except TypeError as exc:  # pragma: no cover - guarded above
            raise NeurozooError(f"{key}: {exc}") from None
    for key in ("seed", "name"):
        if key in d:
            kwargs[key] = d[key]
        elif key in base:
            kwargs[key] = base[key]
    return HeadDirConfig(**kwargs)


def _quick() -> HeadDirConfig:
    return HeadDirConfig(name="quick")


def _paper() -> HeadDirConfig:
    return HeadDirConfig(
        task=TaskConfig(n_steps=500, cue_steps=10),
        model=ModelConfig(n_units=100, dt=25.0, tau=100.0),
        train=TrainConfig(
            n_updates=8000, batch_size=100, lr=2e-3, checkpoint_every=500
        ),
        analysis=AnalysisConfig(n_trials=500, long_factor=2),
        name="paper",
    )


PRESETS = {"quick": _quick, "paper": _paper}


def preset(name: str) -> HeadDirConfig:
    """The named preset configuration (``quick`` or ``paper``).

    Parameters
    ----------
    name : str
        Preset name.

    Returns
    -------
    HeadDirConfig
    """
    if name not in PRESETS:
        raise NeurozooError(
            f"preset: must be one of {', '.join(PRESETS)}, got {name!r}"
        )
    return PRESETS[name]()


def load_config(path: str | Path) -> HeadDirConfig:
    """Read a configuration from a YAML (``.yaml``/``.yml``) or JSON file.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    HeadDirConfig
    """
    path = Path(path)
    if not path.is_file():
        raise NeurozooError(f"config file {path}: not found")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise NeurozooError(f"config file {path}: invalid YAML ({exc})") from None
    elif path.suffix.lower() == ".json":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NeurozooError(f"config file {path}: invalid JSON ({exc})") from None
    else:
        raise NeurozooError(f"config file {path}: expected a .yaml, .yml or .json file")
    return config_from_dict(d or {})
