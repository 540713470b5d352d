"""Run configuration: one typed dataclass, read from YAML or JSON.

The configuration names the run's cache entries and lands, whole, in the
provenance file of every result.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from neurozoo.errors import NeurozooError
from neurozoo.features import LAYOUTS, MAX_GRAM_STIMULI
from neurozoo.models.zoo import DEFAULT_ZOO
from neurozoo.scoring import ScoringConfig, check_methods

__all__ = ["RunConfig", "load_config", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$NEUROZOO_CACHE``, else ``~/.cache/neurozoo``."""
    env = os.environ.get("NEUROZOO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "neurozoo"


@dataclass
class RunConfig:
    """Everything a run needs.

    Attributes
    ----------
    data : str or None
        A NeuralResponses netCDF file; None for the bundled data set.
    stimuli : str or None
        The stimulus folder (with ``stimuli.csv``) matching ``data``; by
        default ``stimuli/`` next to the netCDF file.
    areas : list of str or None
        Areas to score; None for all.
    models : list of str
        Model ids or aliases (see ``neurozoo models``).
    layers : dict of str -> list of str
        Layers per model id (or alias); models not listed use the default rule.
    batch_size : int
    device : str
        ``auto`` (GPU when present), ``cpu``, ``cuda``...
    layout : str
        Memory layout of the forward passes: ``auto`` (channels-last for
        convolutional networks on the CPU), ``channels_last`` or
        ``contiguous``; see :func:`neurozoo.features.choose_layout`.
    memory_budget_gb : float
        Layer activations held at once during extraction.
    cache_dir : str or None
        Per-layer summary cache; None for :func:`default_cache_dir`.
    reliability_splits : int
        Random splits for split-half reliability.
    max_gram_stimuli : int
        Stimulus sets up to this size get exact n x n Gram summaries; larger
        ones the primal path (streamed sparse random projection, scored by
        ridge only). See :func:`neurozoo.features.extract_auto`.
    projection_components : int or None
        Primal path: dimension ``k`` of the projection; None for the
        Johnson-Lindenstrauss dimension of the stimulus count (eps = 0.1).
    projection_seed : int
        Primal path: seed of the projection matrices.
    save_features : bool
        Also write every scored layer's raw float32 features to
        ``OUT/features/<model>/<layer>.npy`` (one more forward pass; see
        :mod:`neurozoo.rawfeatures`).
    scoring : ScoringConfig
    """

    data: str | None = None
    stimuli: str | None = None
    areas: list[str] | None = None
    models: list[str] = field(default_factory=lambda: list(DEFAULT_ZOO))
    layers: dict[str, list[str]] = field(default_factory=dict)
    batch_size: int = 32
    device: str = "auto"
    layout: str = "auto"
    memory_budget_gb: float = 2.0
    cache_dir: str | None = None
    reliability_splits: int = 100
    max_gram_stimuli: int = MAX_GRAM_STIMULI
    projection_components: int | None = None
    projection_seed: int = 0
    save_features: bool = False
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def __post_init__(self):
        if isinstance(self.scoring, dict):
            self.scoring = _build(ScoringConfig, self.scoring, "scoring")
        sc = self.scoring
        types = [
            ("batch_size", self.batch_size, int), ("memory_budget_gb", self.memory_budget_gb,
                                                    (int, float)),
            ("reliability_splits", self.reliability_splits, int),
            ("device", self.device, str), ("layout", self.layout, str),
            ("models", self.models, list),
            ("layers", self.layers, dict),
            ("scoring.n_folds", sc.n_folds, int), ("scoring.n_alphas", sc.n_alphas, int),
            ("scoring.alpha_low", sc.alpha_low, (int, float)),
            ("scoring.alpha_high", sc.alpha_high, (int, float)),
            ("scoring.reliability_threshold", sc.reliability_threshold, (int, float)),
            ("scoring.n_bootstrap", sc.n_bootstrap, int), ("scoring.seed", sc.seed, int),
            ("scoring.rsa_comparison", sc.rsa_comparison, str),
            ("max_gram_stimuli", self.max_gram_stimuli, int),
            ("projection_seed", self.projection_seed, int),
            ("scoring.pls_components", sc.pls_components, int),
            ("scoring.rsa_distance", sc.rsa_distance, str),
            ("scoring.device", sc.device, str), ("scoring.dtype", sc.dtype, str),
        ]
        if self.projection_components is not None:
            types.append(("projection_components", self.projection_components, int))
        for name, value, kind in types:
            if isinstance(value, bool) or not isinstance(value, kind):
                want = kind.__name__ if isinstance(kind, type) else "a number"
                raise NeurozooError(
                    f"config field '{name}': expected {want}, got {value!r}")
        if not isinstance(self.save_features, bool):
            raise NeurozooError("config field 'save_features': expected true or false, "
                                f"got {self.save_features!r}")
        for name in ("data", "stimuli", "cache_dir"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise NeurozooError(f"config field '{name}': expected a path string")
        if self.areas is not None and (not isinstance(self.areas, list) or not all(
                isinstance(a, str) for a in self.areas)):
            raise NeurozooError(
                f"config field 'areas': expected a list of area names, got {self.areas!r}")
        if not all(isinstance(m, str) for m in self.models):
            raise NeurozooError("config field 'models': expected a list of model ids")
        check_methods(sc.methods)
        from neurozoo.mapping.backend import DTYPES
        from neurozoo.mapping.rsa import COMPARISONS, DISTANCES

        checks = [
            ("scoring.rsa_distance", sc.rsa_distance in DISTANCES,
             f"one of {', '.join(DISTANCES)}"),
            ("scoring.dtype", sc.dtype in DTYPES, f"one of {', '.join(DTYPES)}"),
            ("scoring.device", _is_device(sc.device),
             "a torch device: auto, cpu, cuda, cuda:1 ..."),
            ("scoring.pls_components", sc.pls_components >= 1, "an integer >= 1"),
            ("max_gram_stimuli", self.max_gram_stimuli >= 1, "an integer >= 1"),
            ("projection_components", self.projection_components is None
             or self.projection_components >= 1, "an integer >= 1 or null"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("layout", self.layout in LAYOUTS, f"one of {', '.join(LAYOUTS)}"),
            ("scoring.rsa_comparison", sc.rsa_comparison in COMPARISONS,
             f"one of {', '.join(COMPARISONS)}"),
            ("scoring.reliability_threshold", -1 <= sc.reliability_threshold <= 1,
             "a number in [-1, 1]"),
            ("memory_budget_gb", self.memory_budget_gb > 0, "> 0"),
            ("reliability_splits", self.reliability_splits >= 1, "an integer >= 1"),
            ("models", len(self.models) >= 1, "at least one model id"),
            ("scoring.n_folds", self.scoring.n_folds >= 2, "an integer >= 2"),
            ("scoring.n_alphas", self.scoring.n_alphas >= 1, "an integer >= 1"),
            ("scoring.alpha_low", 0 < self.scoring.alpha_low < self.scoring.alpha_high,
             "positive and below alpha_high"),
            ("scoring.alpha_high", math.isfinite(self.scoring.alpha_high),
             "a finite number"),
            ("scoring.n_bootstrap", self.scoring.n_bootstrap >= 10, "an integer >= 10"),
            ("scoring.seed", sc.seed >= 0, "an integer >= 0"),
            ("projection_seed", self.projection_seed >= 0, "an integer >= 0"),
            ("device", _is_device(self.device),
             "a torch device: auto, cpu, cuda, cuda:1 ..."),
            ("areas", self.areas is None or len(self.areas) >= 1,
             "at least one area name, or null for all areas"),
        ]
        for model, names in self.layers.items():
            if (not isinstance(names, list) or not names
                    or not all(isinstance(n, str) for n in names)):
                raise NeurozooError(
                    f"config field 'layers.{model}': expected a non-empty list of layer "
                    f"names, got {names!r}")
        for name, ok, want in checks:
            if not ok:
                raise NeurozooError(f"config field '{name}': expected {want}")

    def to_dict(self) -> dict:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)

    @property
    def cache_path(self) -> Path:
        """The summary cache folder."""
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()


def _is_device(name: str) -> bool:
    """Whether ``name`` is ``auto`` or parses as a torch device. Whether that
    device is present is checked when it is used
    (:func:`neurozoo.features.resolve_device`)."""
    import torch

    if name == "auto":
        return True
    try:
        torch.device(name)
    except RuntimeError:
        return False
    return True


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise NeurozooError(f"config section '{where}' must be a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise NeurozooError(
            f"config '{where}': unknown field(s) {unknown} (valid: {sorted(names)})"
        )
    try:
        return cls(**values)
    except TypeError as exc:
        raise NeurozooError(f"config '{where}': {exc}") from None


def load_config(path: str | os.PathLike | None = None, **overrides) -> RunConfig:
    """Read a YAML/JSON config (None: defaults), then apply non-None overrides."""
    values: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise NeurozooError(f"config file {p} not found")
        try:
            values = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise NeurozooError(
                f"config file {p} is not valid YAML{where}: {problem}") from None
        if not isinstance(values, dict):
            raise NeurozooError(f"config file {p}: top level must be a mapping")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _build(RunConfig, values, str(path) if path else "config")
