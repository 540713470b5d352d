"""Image preprocessing tied to an architecture's trained weights.

Untrained models of an architecture get exactly the pipeline of its trained
weights, so that a trained-versus-untrained comparison differs in the weights
only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

__all__ = ["Preprocessing"]

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class Preprocessing:
    """Grayscale image -> normalised 3-channel tensor.

    The image is resized so that its shorter side is ``resize_size`` (aspect
    kept), centre-cropped to ``crop_size`` x ``crop_size``, scaled to [0, 1],
    repeated to three channels and normalised with ``mean`` and ``std``.
    """

    resize_size: int = 256
    crop_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"

    def __post_init__(self):
        if self.interpolation not in _RESAMPLE:
            raise ValueError(
                f"interpolation '{self.interpolation}' not in {sorted(_RESAMPLE)}"
            )
        if self.crop_size > self.resize_size:
            raise ValueError("crop_size must not exceed resize_size")

    def to_dict(self) -> dict:
        """A JSON-ready description."""
        return asdict(self)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one image.

        Returns
        -------
        Tensor, shape (3, crop_size, crop_size), float32
        """
        image = image.convert("L")
        w, h = image.size
        scale = self.resize_size / min(w, h)
        new = (max(self.crop_size, round(w * scale)), max(self.crop_size, round(h * scale)))
        image = image.resize(new, _RESAMPLE[self.interpolation])
        left = (new[0] - self.crop_size) // 2
        top = (new[1] - self.crop_size) // 2
        image = image.crop((left, top, left + self.crop_size, top + self.crop_size))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
        x = x.unsqueeze(0).expand(3, -1, -1)
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return (x - mean) / std
