"""Labelled images for sparse training, held in memory.

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8 x 8
  images of 10 classes, UCI), which need no download: the offline default.
- a folder path: one sub-folder per class holding image files (the
  ``ImageFolder`` layout; CIFAR or an ImageNet subset exported to disk).

Images become ``(3, size, size)`` tensors, normalised with the zoo model's
mean and standard deviation. The split into training and test images is
stratified and seeded, with at least one test image per class.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neurozoo.errors import NeurozooError

__all__ = ["LabelledImages", "load_labelled_images", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class LabelledImages:
    """Training and test images with integer labels.

    Attributes
    ----------
    x_train, x_test : Tensor, shape (n, 3, size, size), float32
    y_train, y_test : Tensor, shape (n,), int64
    classes : list of str
    sha256 : str
        Hash of the images and labels as given to the network.
    source : str
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    sha256: str
    source: str

    def to(self, device) -> LabelledImages:
        return LabelledImages(self.x_train.to(device), self.y_train.to(device),
                              self.x_test.to(device), self.y_test.to(device),
                              self.classes, self.sha256, self.source)


def _digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise NeurozooError("training data 'digits' comes with scikit-learn: "
                            "pip install 'neurozoo[sparsity]' (or scikit-learn)") \
            from None

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8)
    return images, d.target.astype(np.int64), [str(c) for c in d.target_names]


def _folder(root: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    if not root.is_dir():
        raise NeurozooError(f"training data {root}: not a folder (expected 'digits' "
                            "or a folder with one sub-folder of images per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise NeurozooError(f"training data {root}: needs at least two class "
                            f"sub-folders, found {len(classes)}")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise NeurozooError(f"training data {root / name}: no image files "
                                f"({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB")
                    w, h = im.size
                    s = size / min(w, h)
                    im = im.resize((max(size, round(w * s)), max(size, round(h * s))),
                                   Image.BILINEAR)
                    left = (im.size[0] - size) // 2
                    top = (im.size[1] - size) // 2
                    im = im.crop((left, top, left + size, top + size))
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except OSError as exc:
                raise NeurozooError(f"training image {f} cannot be read ({exc})") \
                    from None
            images.append(arr.transpose(2, 0, 1))
            labels.append(label)
    return np.stack(images), np.asarray(labels, np.int64), classes


def _split(y: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask: ``max(1, round(test_fraction * n_c))`` per class,
    seeded."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = max(1, int(round(test_fraction * len(idx))))
        if k >= len(idx):
            raise NeurozooError(f"class {c} has {len(idx)} images: too few for a "
                                f"test fraction of {test_fraction}")
        test[rng.permutation(idx)[:k]] = True
    return test


def load_labelled_images(
    source: str,
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    test_fraction: float = 0.2,
    seed: int = 0,
) -> LabelledImages:
    """Load ``digits`` or a class-per-folder image tree.

    Parameters
    ----------
    source : str
        ``"digits"`` or a folder path.
    size : int
        Side of the square images given to the network.
    mean, std : tuple of float
        Per-channel normalisation (the zoo model's).
    test_fraction : float
        Fraction of each class held out for testing.
    seed : int
        Seed of the split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise NeurozooError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if source == "digits":
        images, labels, classes = _digits()
        x = torch.from_numpy(images)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = x.expand(-1, 3, -1, -1)
    else:
        images, labels, classes = _folder(Path(source), size)
        x = torch.from_numpy(images)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    x = ((x - m) / s).contiguous()
    y = torch.from_numpy(labels)
    h = hashlib.sha256()
    h.update(x.numpy().tobytes())
    h.update(y.numpy().tobytes())
    test = torch.from_numpy(_split(labels, test_fraction, seed))
    log.info("training data %s: %d images, %d classes, %d held out", source,
             len(y), len(classes), int(test.sum()))
    return LabelledImages(x[~test], y[~test], x[test], y[test], classes,
                          h.hexdigest(), source)
