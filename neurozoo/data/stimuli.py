"""Stimulus sets: ordered image files with ids and checksums.

On disk a stimulus set is a folder with ``stimuli.csv`` (columns
``stimulus_id,filename`` and optionally ``sha256``) next to the images.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from neurozoo.errors import NeurozooError
from neurozoo.io import sha256_file, stable_hash

__all__ = ["StimulusSet", "load_stimulus_set", "check_match"]


@dataclass
class StimulusSet:
    """An ordered set of stimulus images.

    Parameters
    ----------
    stimulus_ids : list of str, length n_stimuli
    paths : list of Path, length n_stimuli
    sha256 : list of str, optional
        Expected checksums; checked by :meth:`verify`.
    """

    stimulus_ids: list[str]
    paths: list[Path]
    sha256: list[str] | None = None
    _digests: list[str] | None = field(default=None, repr=False)

    def __post_init__(self):
        self.stimulus_ids = [str(s) for s in self.stimulus_ids]
        self.paths = [Path(p) for p in self.paths]
        if len(self.stimulus_ids) != len(self.paths):
            raise NeurozooError(
                f"stimulus set: {len(self.stimulus_ids)} ids but {len(self.paths)} files"
            )
        if len(set(self.stimulus_ids)) != len(self.stimulus_ids):
            raise NeurozooError("stimulus set: duplicate stimulus ids")

    def __len__(self) -> int:
        return len(self.paths)

    def digests(self) -> list[str]:
        """SHA-256 of each image file (computed once); missing file -> error."""
        if self._digests is None:
            out = []
            for sid, p in zip(self.stimulus_ids, self.paths):
                if not p.is_file():
                    raise NeurozooError(f"stimulus {sid}: image file {p} is missing")
                out.append(sha256_file(p))
            self._digests = out
        return self._digests

    def verify(self) -> None:
        """Check files exist and, if expected checksums are known, match them."""
        digests = self.digests()
        if self.sha256 is not None:
            for sid, p, want, got in zip(self.stimulus_ids, self.paths,
                                         self.sha256, digests):
                if want and want != got:
                    raise NeurozooError(
                        f"stimulus {sid}: {p} is corrupt (sha256 {got[:12]}..., "
                        f"expected {want[:12]}...)"
                    )

    def identity(self) -> str:
        """A hash of the ids and image contents: names cache entries."""
        return stable_hash({"ids": self.stimulus_ids, "sha256": self.digests()})

    def load_image(self, i: int) -> Image.Image:
        """Open image ``i`` as an 8-bit grayscale PIL image (mode ``L``).

        Colour images are converted to luminance; the models' preprocessing
        repeats the channel three times.
        """
        p = self.paths[i]
        try:
            with Image.open(p) as im:
                im.load()
                if im.mode in ("I;16", "I", "F"):
                    arr = np.asarray(im, dtype=np.float64)
                    lo, hi = arr.min(), arr.max()
                    arr = (arr - lo) / (hi - lo if hi > lo else 1.0) * 255
                    return Image.fromarray(arr.round().astype(np.uint8), mode="L")
                if im.mode in ("RGBA", "LA"):
                    im = im.convert("RGB" if im.mode == "RGBA" else "L")
                return im.convert("L")
        except FileNotFoundError:
            raise NeurozooError(
                f"stimulus {self.stimulus_ids[i]}: image file {p} is missing"
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise NeurozooError(
                f"stimulus {self.stimulus_ids[i]}: cannot decode image {p} ({exc})"
            ) from None

    def subset(self, ids) -> StimulusSet:
        """The stimuli with the given ids, in that order."""
        index = {s: i for i, s in enumerate(self.stimulus_ids)}
        ids = [str(s) for s in ids]
        missing = [s for s in ids if s not in index]
        if missing:
            raise NeurozooError(f"stimulus set has no stimulus_id {missing[:5]}")
        sel = [index[s] for s in ids]
        return StimulusSet(
            ids,
            [self.paths[i] for i in sel],
            None if self.sha256 is None else [self.sha256[i] for i in sel],
        )

    def save_csv(self, path: str | os.PathLike, absolute: bool = False) -> None:
        """Write ``stimuli.csv`` (ids, file names and SHA-256).

        Parameters
        ----------
        path : path
        absolute : bool
            Store absolute image paths, so that the table stays valid when it
            is moved without the images (a run's ``data/stimuli.csv``). By
            default paths are relative to the table's folder where possible,
            so that a folder holding the table and its images can be moved.
        """
        from neurozoo.io import atomic_path

        path = Path(path)
        digests = self.digests()
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["stimulus_id", "filename", "sha256"])
            for sid, p, d in zip(self.stimulus_ids, self.paths, digests):
                name = str(p.resolve())
                if not absolute:
                    try:
                        name = os.path.relpath(p.resolve(), path.parent.resolve())
                    except ValueError:  # another drive (Windows)
                        pass
                w.writerow([sid, name, d])


def load_stimulus_set(path: str | os.PathLike) -> StimulusSet:
    """Read a stimulus set from ``stimuli.csv`` (or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "stimuli.csv"
    if not path.is_file():
        raise NeurozooError(f"{path}: no stimulus table (stimuli.csv) found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        for need in ("stimulus_id", "filename"):
            if need not in cols:
                raise NeurozooError(f"{path}: missing column '{need}' (found {cols})")
        rows = list(reader)
    if not rows:
        raise NeurozooError(f"{path}: no stimuli listed")
    ids = [r["stimulus_id"] for r in rows]
    paths = [path.parent / r["filename"] for r in rows]
    sha = [r.get("sha256") or "" for r in rows] if "sha256" in cols else None
    return StimulusSet(ids, paths, sha)


def check_match(responses, stimuli: StimulusSet, source: str = "responses") -> None:
    """Raise unless every stimulus of ``responses`` is in ``stimuli``, in order.

    The responses' ``stimulus_id`` coordinate must equal the stimulus set's
    ids, element by element.
    """
    ids = [str(s) for s in responses.coords["stimulus_id"].values]
    if len(ids) != len(stimuli):
        raise NeurozooError(
            f"{source}: {len(ids)} stimuli in the responses but {len(stimuli)} "
            "in the stimulus set"
        )
    for k, (a, b) in enumerate(zip(ids, stimuli.stimulus_ids)):
        if a != b:
            raise NeurozooError(
                f"{source}: stimulus {k} is '{a}' in the responses but '{b}' in the "
                "stimulus set (ids must match in order)"
            )
