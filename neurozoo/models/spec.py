"""Model ids and their typed description.

A model id reads ``SOURCE:ARCH@WEIGHTS[+TRANSFORM[:ARG]]...``:

- ``SOURCE``: ``torchvision`` or ``timm``;
- ``ARCH``: the architecture name in that library (``resnet18``,
  ``tf_efficientnet_lite0`` ...);
- ``WEIGHTS``: ``imagenet`` (the library's first ImageNet weights: torchvision
  ``IMAGENET1K_V1``, timm's default tag), a torchvision weights name
  (``IMAGENET1K_V2``), ``random`` or ``random:SEED`` (untrained, seeded
  initialisation; seed 0 by default) or ``file:PATH`` (a local checkpoint);
- ``TRANSFORM``: variants applied after loading, in order, e.g.
  ``+magprune:0.9`` (see :mod:`neurozoo.models.transforms`).

Examples: ``torchvision:alexnet@random:0``,
``timm:tf_efficientnet_lite0@imagenet``,
``torchvision:resnet18@imagenet+magprune:0.8``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from neurozoo.errors import NeurozooError

__all__ = ["ModelSpec", "parse_model_id", "SOURCES"]

SOURCES = ("torchvision", "timm")
_ID = re.compile(r"^(?P<source>[a-z]+):(?P<arch>[A-Za-z0-9_.\-]+)@(?P<rest>.+)$")


@dataclass(frozen=True)
class ModelSpec:
    """A model of the zoo, fully described.

    Attributes
    ----------
    source : str
        ``"torchvision"`` or ``"timm"``.
    arch : str
        Architecture name in the source library.
    weights : str
        ``"imagenet"``, a torchvision weights enum name, ``"random"`` or
        ``"file"``.
    seed : int or None
        Initialisation seed for ``weights="random"``.
    checkpoint : str or None
        Path of the local checkpoint for ``weights="file"``.
    transforms : tuple of str
        Variant specs applied in order, e.g. ``("magprune:0.9",)``.
    """

    source: str
    arch: str
    weights: str = "imagenet"
    seed: int | None = None
    checkpoint: str | None = None
    transforms: tuple[str, ...] = field(default_factory=tuple)

    @property
    def model_id(self) -> str:
        """The canonical id string (parses back to this spec)."""
        if self.weights == "random":
            w = f"random:{self.seed}"
        elif self.weights == "file":
            w = f"file:{self.checkpoint}"
        else:
            w = self.weights
        return f"{self.source}:{self.arch}@{w}" + "".join(
            f"+{t}" for t in self.transforms
        )

    @property
    def trained(self) -> bool:
        """Whether the weights come from training (not a random init)."""
        return self.weights != "random"

    def to_dict(self) -> dict:
        """A JSON-ready description."""
        d = asdict(self)
        d["transforms"] = list(self.transforms)
        d["model_id"] = self.model_id
        return d


_TRANSFORM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(:[^/]*)?$")


def _split_path_transforms(text: str) -> tuple[str, list[str]]:
    """Split ``PATH+T1+T2`` where the path itself may contain '+'.

    An existing file wins; otherwise trailing segments that look like
    transforms (``name`` or ``name:arg``, no '/' and no '.' in the name) are
    taken as transforms.
    """
    from pathlib import Path

    if Path(text).is_file():
        return text, []
    parts = text.split("+")
    transforms: list[str] = []
    while len(parts) > 1 and _TRANSFORM.match(parts[-1]):
        transforms.insert(0, parts.pop())
    return "+".join(parts), transforms


def parse_model_id(model_id: str) -> ModelSpec:
    """Parse a model id (see the module docstring) into a :class:`ModelSpec`."""
    m = _ID.match(model_id.strip())
    if not m:
        raise NeurozooError(
            f"model id '{model_id}' is not of the form SOURCE:ARCH@WEIGHTS"
            "[+TRANSFORM...], e.g. 'torchvision:resnet18@random:0'"
        )
    source, arch, rest = m["source"], m["arch"], m["rest"]
    if source not in SOURCES:
        raise NeurozooError(
            f"model id '{model_id}': unknown source '{source}' "
            f"(valid: {', '.join(SOURCES)})"
        )
    if rest.startswith("file:"):
        path, transforms = _split_path_transforms(rest[len("file:"):])
        if not path:
            raise NeurozooError(f"model id '{model_id}': empty checkpoint path")
        return ModelSpec(source, arch, "file", None, path, tuple(transforms))
    weights, *transforms = rest.split("+")
    seed = None
    if weights.startswith("random"):
        _, _, seed_text = weights.partition(":")
        try:
            seed = int(seed_text) if seed_text else 0
        except ValueError:
            raise NeurozooError(
                f"model id '{model_id}': seed '{seed_text}' is not an integer"
            ) from None
        if weights not in ("random", f"random:{seed_text}"):
            raise NeurozooError(f"model id '{model_id}': bad weights '{weights}'")
        weights = "random"
    if not weights:
        raise NeurozooError(f"model id '{model_id}': empty weights tag")
    if any(not t for t in transforms):
        raise NeurozooError(f"model id '{model_id}': empty transform after '+'")
    return ModelSpec(source, arch, weights, seed, None, tuple(transforms))
