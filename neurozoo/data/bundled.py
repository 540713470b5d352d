"""The bundled data set: Allen Visual Coding Neuropixels, natural scenes.

4,312 units from 28 mice in six visual areas, about 50 repeats of each of the
118 natural scenes, and the 118 images. See ``data/allen_npx_natural_scenes/
README.md`` for provenance and citation.

Storage (built by :func:`build_bundle`, lossless):

- ``responses/{AREA}_{specimen}.npz``: ``counts``, uint8, (n_trials, 118,
  n_units): spike counts in the recording's response window. The upstream
  float32 rates are exactly ``float32(counts / window_s)`` (checked bitwise
  when the bundle is built).
- ``responses/{AREA}_{specimen}.json``: the upstream metadata, verbatim.
- ``stimuli/stimulus_{i:03d}.png``: 8-bit single-channel images, pixel-equal
  to one channel of the upstream RGBA files; ``stimuli/stimuli.csv``.
- ``MANIFEST.json``: SHA-256 of every file, verified at load.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np

from neurozoo.data.responses import check_responses, make_responses
from neurozoo.data.stimuli import StimulusSet, load_stimulus_set
from neurozoo.errors import NeurozooError
from neurozoo.io import atomic_path, read_json, sha256_file, write_json

__all__ = [
    "AREA_CODES",
    "BUNDLE_NAME",
    "default_bundle_path",
    "is_bundle",
    "load_bundled",
    "bundle_problems",
    "verify_bundle",
    "build_bundle",
]

log = logging.getLogger(__name__)

BUNDLE_NAME = "allen_npx_natural_scenes"
AREA_CODES = {"V1": "VISp", "LM": "VISl", "AL": "VISal", "RL": "VISrl",
              "AM": "VISam", "PM": "VISpm"}
N_IMAGES = 118


def default_bundle_path() -> Path:
    """Where the bundled data set lives: ``$NEUROZOO_BUNDLE`` or ``data/`` of
    the source tree this package was installed from."""
    env = os.environ.get("NEUROZOO_BUNDLE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "data" / BUNDLE_NAME


def is_bundle(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder in the bundle layout (``MANIFEST.json``
    and ``recordings.csv``), like the bundled data set."""
    path = Path(path)
    return (path / "MANIFEST.json").is_file() and (path / "recordings.csv").is_file()


def bundle_problems(root: str | os.PathLike,
                    stop_at_first: bool = False) -> tuple[list[str], dict | None]:
    """Every bundle file that is missing or whose SHA-256 differs from
    ``MANIFEST.json``, one line each.

    Returns the problems and the manifest (None when it cannot be read).
    """
    root = Path(root)
    manifest_path = root / "MANIFEST.json"
    if not manifest_path.is_file():
        return [f"{root}: not a neurozoo data bundle (no MANIFEST.json); "
                "set NEUROZOO_BUNDLE or rebuild it with data/build_bundle.py"], None
    try:
        manifest = read_json(manifest_path)
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{manifest_path}: not a readable bundle manifest ({exc!r})"], None
    problems = []
    for rel, digest in files.items():
        p = root / rel
        if not p.is_file():
            problems.append(f"bundle file {p} is missing")
        elif (got := sha256_file(p)) != digest:
            problems.append(
                f"bundle file {p} is corrupt: sha256 {got[:12]}..., expected "
                f"{digest[:12]}... (restore it from git)")
        if problems and stop_at_first:
            break
    return problems, manifest


def verify_bundle(root: str | os.PathLike) -> dict:
    """Check every file of the bundle against ``MANIFEST.json``.

    Returns the manifest. Raises :class:`NeurozooError` naming the first file
    that is missing or whose SHA-256 differs.
    """
    problems, manifest = bundle_problems(root, stop_at_first=True)
    if problems:
        raise NeurozooError(problems[0])
    return manifest


def _read_recordings(root: Path) -> list[dict]:
    with open(root / "recordings.csv", newline="") as f:
        return list(csv.DictReader(f))


def load_bundled(root: str | os.PathLike | None = None, areas=None, verify=True,
                 validate=True):
    """Load the bundled responses and stimuli.

    Parameters
    ----------
    root : path, optional
        The bundle folder; default :func:`default_bundle_path`.
    areas : list of str, optional
        Keep only these areas (Allen codes, e.g. ``["VISp", "VISl"]``).
    verify : bool
        Check SHA-256 checksums first (about a tenth of a second).
    validate : bool
        Raise when the responses break the schema
        (:func:`neurozoo.data.responses.check_responses`); False returns
        them as they are, for a validator that lists every problem.

    Returns
    -------
    responses : xarray.DataArray, dims (trial, stimulus, neuroid)
        Firing rate in Hz in each recording's response window. Recordings
        with fewer repeats are NaN-padded at the end of ``trial``.
    stimuli : StimulusSet
    """
    root = Path(root) if root is not None else default_bundle_path()
    if not root.is_dir():
        raise NeurozooError(f"bundled data not found at {root}")
    if verify:
        verify_bundle(root)
    recs = _read_recordings(root)
    if areas is not None:
        unknown = sorted(set(areas) - {r["area"] for r in recs})
        if unknown:
            raise NeurozooError(
                f"unknown area(s) {unknown}; the bundle has "
                f"{sorted({r['area'] for r in recs})}"
            )
        recs = [r for r in recs if r["area"] in set(areas)]
    blocks, coords = [], {k: [] for k in (
        "neuroid_id", "unit_id", "area", "specimen_id", "recording",
        "t_start_s", "t_end_s", "n_trials")}
    for r in recs:
        counts = np.load(root / r["counts_file"])["counts"]
        meta = json.loads((root / r["meta_file"]).read_text())
        t0, t1 = meta["time_window_s"]
        rates = (counts.astype(np.float64) / (t1 - t0)).astype(np.float32)
        n_units = rates.shape[2]
        if len(meta["unit_ids"]) != n_units:
            raise NeurozooError(
                f"{r['meta_file']}: {len(meta['unit_ids'])} unit_ids but "
                f"{n_units} units in {r['counts_file']}"
            )
        if rates.shape[1] != N_IMAGES:
            raise NeurozooError(
                f"{r['counts_file']}: {rates.shape[1]} stimuli, expected {N_IMAGES}"
            )
        if meta.get("n_trials") != rates.shape[0]:
            log.debug("%s: metadata says %s trials, array has %d (kept the array)",
                      r["meta_file"], meta.get("n_trials"), rates.shape[0])
        blocks.append(rates)
        coords["neuroid_id"] += [str(u) for u in meta["unit_ids"]]
        coords["unit_id"] += list(meta["unit_ids"])
        coords["area"] += [AREA_CODES[meta["visual_area"]]] * n_units
        coords["specimen_id"] += [int(meta["specimen_id"])] * n_units
        coords["recording"] += [Path(r["counts_file"]).stem] * n_units
        coords["t_start_s"] += [float(t0)] * n_units
        coords["t_end_s"] += [float(t1)] * n_units
        coords["n_trials"] += [rates.shape[0]] * n_units
    n_trials = max(b.shape[0] for b in blocks)
    values = np.full((n_trials, N_IMAGES, sum(b.shape[2] for b in blocks)), np.nan,
                     dtype=np.float32)
    j = 0
    for b in blocks:
        values[: b.shape[0], :, j: j + b.shape[2]] = b
        j += b.shape[2]
    stimuli = load_stimulus_set(root / "stimuli")
    da = make_responses(
        values,
        stimulus_ids=stimuli.stimulus_ids,
        neuroid_ids=coords.pop("neuroid_id"),
        area=coords.pop("area"),
        specimen_id=coords.pop("specimen_id"),
        attrs={"source": f"neurozoo bundled {BUNDLE_NAME}", "units": "Hz",
               "bundle_sha256": sha256_file(root / "MANIFEST.json")},
        **coords,
    )
    return (check_responses(da, str(root)) if validate else da), stimuli


# --------------------------------------------------------------------------
# Building the bundle from the upstream files
# --------------------------------------------------------------------------

def build_bundle(src: str | os.PathLike, dst: str | os.PathLike) -> dict:
    """Build the compact bundle at ``dst`` from the upstream folder ``src``.

    ``src`` is the folder with ``index.csv``, ``responses/*.npy|json`` and
    ``stimuli_images/stimulus_{i}.png`` (see ``data/allen_npx_natural_scenes/
    README.md``). Every conversion is checked to be lossless; a mismatch
    raises. Returns the manifest.
    """
    from PIL import Image

    src, dst = Path(src), Path(dst)
    (dst / "responses").mkdir(parents=True, exist_ok=True)
    (dst / "stimuli").mkdir(parents=True, exist_ok=True)
    with open(src / "index.csv", newline="") as f:
        index = list(csv.DictReader(f))
    rows = []
    for entry in index:
        npy = src / entry["file"]
        meta_path = npy.with_suffix(".json")
        rates = np.load(npy)
        meta = json.loads(meta_path.read_text())
        if not np.isfinite(rates).all():
            raise NeurozooError(f"{npy}: non-finite rates; handle them before bundling")
        t0, t1 = meta["time_window_s"]
        window = t1 - t0
        counts = np.round(rates.astype(np.float64) * window)
        if counts.min() < 0 or counts.max() > 255:
            raise NeurozooError(f"{npy}: counts outside uint8 range")
        back = (counts / window).astype(np.float32)
        if not np.array_equal(back, rates):
            raise NeurozooError(f"{npy}: rates are not exactly counts / window")
        stem = npy.stem
        out = dst / "responses" / f"{stem}.npz"
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, counts=counts.astype(np.uint8))
        with atomic_path(dst / "responses" / f"{stem}.json") as tmp:
            tmp.write_bytes(meta_path.read_bytes())
        rows.append({
            "counts_file": f"responses/{stem}.npz",
            "meta_file": f"responses/{stem}.json",
            "area": AREA_CODES[meta["visual_area"]],
            "specimen_id": meta["specimen_id"],
            "n_trials": rates.shape[0],
            "n_trials_in_metadata": meta.get("n_trials"),
            "n_stimuli": rates.shape[1],
            "n_units": rates.shape[2],
            "t_start_s": t0,
            "t_end_s": t1,
        })
        log.info("bundled %s: %s", stem, rates.shape)
    with atomic_path(dst / "recordings.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    paths = []
    for i in range(N_IMAGES):
        with Image.open(src / "stimuli_images" / f"stimulus_{i}.png") as im:
            arr = np.asarray(im)
        if arr.ndim == 3:
            if not (np.array_equal(arr[..., 0], arr[..., 1])
                    and np.array_equal(arr[..., 0], arr[..., 2])):
                raise NeurozooError(f"stimulus_{i}.png: channels differ (not grayscale)")
            arr = arr[..., 0]
        out = dst / "stimuli" / f"stimulus_{i:03d}.png"
        with atomic_path(out) as tmp:
            Image.fromarray(arr, mode="L").save(tmp, format="PNG", optimize=True)
        with Image.open(out) as im:
            if not np.array_equal(np.asarray(im), arr):
                raise NeurozooError(f"{out}: PNG round trip is not lossless")
        paths.append(out)
    StimulusSet([str(i) for i in range(N_IMAGES)], paths).save_csv(
        dst / "stimuli" / "stimuli.csv")

    licence = src / "UPSTREAM_REPO_LICENSE_MIT.txt"
    if licence.is_file():
        with atomic_path(dst / licence.name) as tmp:
            tmp.write_bytes(licence.read_bytes())
    files = sorted(
        str(p.relative_to(dst)) for p in dst.rglob("*")
        if p.is_file() and p.name not in ("MANIFEST.json", "README.md")
        and not p.name.startswith(".")
    )
    manifest = {
        "name": BUNDLE_NAME,
        "n_recordings": len(rows),
        "n_units": int(sum(r["n_units"] for r in rows)),
        "files": {rel: sha256_file(dst / rel) for rel in files},
    }
    write_json(dst / "MANIFEST.json", manifest)
    return manifest
