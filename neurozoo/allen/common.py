"""Pieces shared by the Allen loaders; none of them needs ``allensdk``.

Response windows
----------------
A presentation's response is the mean of a signal over a window fixed relative
to the presentation's onset time ``t_on``:

- sampled signals (2-photon dF/F or events, one value per imaging frame with
  timestamp ``t_k``): the frames with ``t_on + w0 <= t_k < t_on + w1``
  (:func:`window_bounds`). A window that reaches past either end of the
  recording, or holds no frame, gives NaN;
- spikes (Neuropixels): the spikes with ``t_on + w0 <= t <= t_on + w1``, the
  counting convention of ``allensdk``'s ``presentationwise_spike_counts``.

An optional baseline window ``(b0, b1)`` is averaged the same way and subtracted.

Trials
------
The ``k``-th presentation of image ``i`` (in time order) fills trial ``k`` of
stimulus ``i``; images shown fewer times than the most repeated one are
NaN-padded (:func:`assemble_trials`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from neurozoo.errors import NeurozooError

__all__ = [
    "LAYER_BOUNDS_UM",
    "depth_to_layer",
    "window_bounds",
    "window_means",
    "assemble_trials",
    "stack_sessions",
    "reliability_table",
    "format_table",
    "provenance_base",
    "write_output",
]

log = logging.getLogger(__name__)

#: Cortical layer assigned to an imaging depth (micrometres below the pia):
#: ``(lower bound inclusive, upper bound exclusive, layer)``. The Allen
#: Brain Observatory images at about 175 um (L2/3), 265-350 um (L4),
#: 365-435 um (L5) and 500-625 um (L6); the depth alone decides the layer here
#: (the Cre line, kept beside it, is the finer label).
LAYER_BOUNDS_UM = (
    (0.0, 250.0, "L2/3"),
    (250.0, 350.0, "L4"),
    (350.0, 500.0, "L5"),
    (500.0, float("inf"), "L6"),
)


def depth_to_layer(depth_um) -> np.ndarray:
    """Cortical layer label of each imaging depth (see :data:`LAYER_BOUNDS_UM`).

    Parameters
    ----------
    depth_um : array-like, shape (n,)
        Depths in micrometres; NaN or negative gives ``""``.

    Returns
    -------
    ndarray of str, shape (n,)
    """
    depth = np.asarray(depth_um, dtype=np.float64).reshape(-1)
    out = np.full(depth.shape, "", dtype=object)
    for lo, hi, name in LAYER_BOUNDS_UM:
        out[(depth >= lo) & (depth < hi)] = name
    return out.astype(str)


def window_bounds(timestamps, onsets_s, window_s) -> tuple[np.ndarray, np.ndarray]:
    """Frame index range of a window after each onset.

    Parameters
    ----------
    timestamps : ndarray, shape (n_frames,)
        Frame times in seconds, increasing.
    onsets_s : ndarray, shape (n_presentations,)
        Onset time of each presentation, seconds.
    window_s : (float, float)
        ``(w0, w1)`` relative to onset, ``w0 < w1``.

    Returns
    -------
    start, stop : ndarray of int, shape (n_presentations,)
        Frames ``start <= k < stop`` have ``t_on + w0 <= t_k < t_on + w1``.
        ``stop = start = -1`` where the window leaves the recording (it
        starts before the first frame or ends after the last frame's period)
        or holds no frame.
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    onsets = np.asarray(onsets_s, dtype=np.float64)
    w0, w1 = (float(w) for w in window_s)
    if not w1 > w0:
        raise NeurozooError(f"response window {window_s}: end must exceed start")
    if ts.size < 2:
        raise NeurozooError("timestamps: need at least 2 frames")
    period = float(np.median(np.diff(ts)))
    lo = onsets + w0
    hi = onsets + w1
    start = np.searchsorted(ts, lo, side="left")
    stop = np.searchsorted(ts, hi, side="left")
    bad = (lo < ts[0]) | (hi > ts[-1] + period) | (stop <= start)
    start[bad] = -1
    stop[bad] = -1
    return start, stop


def window_means(traces, timestamps, onsets_s, window_s, baseline_s=None):
    """Mean of each trace in a window after each onset, minus an optional baseline.

    Parameters
    ----------
    traces : ndarray, shape (n_cells, n_frames)
    timestamps : ndarray, shape (n_frames,)
    onsets_s : ndarray, shape (n_presentations,)
    window_s : (float, float)
        Response window relative to onset (see :func:`window_bounds`).
    baseline_s : (float, float), optional
        Baseline window relative to onset, e.g. ``(-1.0, 0.0)``; its mean is
        subtracted.

    Returns
    -------
    ndarray, shape (n_presentations, n_cells), float64
        NaN for presentations whose window (or baseline) leaves the recording.
    """
    traces = np.asarray(traces)
    if traces.ndim != 2 or traces.shape[1] != len(timestamps):
        raise NeurozooError(
            f"traces have shape {traces.shape}, expected (n_cells, "
            f"{len(timestamps)}) to match the timestamps"
        )

    def means(win):
        start, stop = window_bounds(timestamps, onsets_s, win)
        out = np.full((len(start), traces.shape[0]), np.nan)
        for p, (a, b) in enumerate(zip(start, stop)):
            if b > a:
                out[p] = traces[:, a:b].mean(axis=1, dtype=np.float64)
        return out

    resp = means(window_s)
    if baseline_s is not None:
        resp = resp - means(baseline_s)
    return resp


def assemble_trials(stimulus_index, responses, n_stimuli: int):
    """Arrange per-presentation responses into (trial, stimulus, neuroid).

    Parameters
    ----------
    stimulus_index : ndarray of int, shape (n_presentations,)
        Image shown at each presentation, ``0 <= i < n_stimuli``, in time order.
    responses : ndarray, shape (n_presentations, n_neuroids)
    n_stimuli : int

    Returns
    -------
    ndarray, shape (n_trials, n_stimuli, n_neuroids), float32
        ``n_trials`` is the largest repeat count; fewer repeats are NaN.
    """
    idx = np.asarray(stimulus_index).astype(np.int64)
    responses = np.asarray(responses)
    if idx.shape[0] != responses.shape[0]:
        raise NeurozooError(
            f"{idx.shape[0]} presentations but {responses.shape[0]} response rows"
        )
    if idx.size and (idx.min() < 0 or idx.max() >= n_stimuli):
        raise NeurozooError(
            f"stimulus index outside [0, {n_stimuli}): {idx.min()}..{idx.max()}"
        )
    counts = np.bincount(idx, minlength=n_stimuli)
    n_trials = int(counts.max()) if idx.size else 0
    out = np.full((n_trials, n_stimuli, responses.shape[1]), np.nan, np.float32)
    seen = np.zeros(n_stimuli, dtype=np.int64)
    for p, i in enumerate(idx):
        out[seen[i], i] = responses[p]
        seen[i] += 1
    return out


def stack_sessions(blocks, coord_blocks):
    """Join per-session responses along ``neuroid``, NaN-padding trials.

    Parameters
    ----------
    blocks : list of ndarray, each shape (n_trials_k, n_stimuli, n_neuroids_k)
    coord_blocks : list of dict of str -> ndarray, each shape (n_neuroids_k,)
        Same keys in every session.

    Returns
    -------
    values : ndarray, shape (max n_trials_k, n_stimuli, sum n_neuroids_k), float32
    coords : dict of str -> ndarray, shape (sum n_neuroids_k,)
    """
    n_trials = max(b.shape[0] for b in blocks)
    n_stimuli = blocks[0].shape[1]
    values = np.full((n_trials, n_stimuli, sum(b.shape[2] for b in blocks)),
                     np.nan, dtype=np.float32)
    j = 0
    for b in blocks:
        values[: b.shape[0], :, j: j + b.shape[2]] = b
        j += b.shape[2]
    coords = {k: np.concatenate([c[k] for c in coord_blocks])
              for k in coord_blocks[0]}
    return values, coords


def reliability_table(da, reliability, threshold: float, by=("area", "layer")):
    """Count neuroids passing a reliability threshold, per group.

    Parameters
    ----------
    da : NeuralResponses, dims (trial, stimulus, neuroid)
        Supplies the grouping coords ``by`` (absent coords group as ``"-"``).
    reliability : ndarray, shape (n_neuroids,)
        Split-half reliability (NaN counts as failing).
    threshold : float
    by : tuple of str
        Per-neuroid coords to group by.

    Returns
    -------
    list of dict
        One row per group (sorted), then a row with every key ``"all"``: the
        group values, ``n``, ``n_pass``, ``frac_pass`` and ``median_reliability``.
    """
    rel = np.asarray(reliability, dtype=np.float64)
    keys = []
    for name in by:
        if name in da.coords:
            keys.append(np.asarray(da.coords[name].values).astype(str))
        else:
            keys.append(np.full(rel.shape, "-"))
    passed = rel >= threshold  # NaN compares False

    def row(mask, labels):
        n = int(mask.sum())
        vals = rel[mask]
        finite = vals[np.isfinite(vals)]
        return {
            **dict(zip(by, labels)),
            "n": n,
            "n_pass": int(passed[mask].sum()),
            "frac_pass": float(passed[mask].mean()) if n else float("nan"),
            "median_reliability": float(np.median(finite)) if finite.size else float(
                "nan"),
        }

    combos = sorted({tuple(k[j] for k in keys) for j in range(rel.size)})
    rows = []
    for combo in combos:
        mask = np.ones(rel.shape, dtype=bool)
        for k, v in zip(keys, combo):
            mask &= k == v
        rows.append(row(mask, combo))
    rows.append(row(np.ones(rel.shape, dtype=bool), ["all"] * len(by)))
    return rows


def format_table(rows: list[dict], floatfmt: str = ".3f") -> str:
    """Plain-text table of ``rows`` (list of dicts with the same keys)."""
    if not rows:
        return "(empty)"
    cols = list(rows[0])
    cells = [[
        format(r[c], floatfmt) if isinstance(r[c], float) else str(r[c])
        for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def provenance_base(source: str, config: dict) -> dict:
    """Provenance common to every file the loaders write.

    Parameters
    ----------
    source : str
        ``"allen_ophys"`` or ``"allen_ecephys"``.
    config : dict
        The loader's configuration (filters, windows ...), JSON-serialisable.
    """
    import xarray as xr

    import neurozoo

    try:
        from importlib.metadata import version

        allensdk_version = version("allensdk")
    except Exception:  # not installed: the core env reading a file
        allensdk_version = None
    return {
        "source": source,
        "config": config,
        "neurozoo_version": neurozoo.__version__,
        "allensdk_version": allensdk_version,
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
        "python": platform.python_version(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
    }


def _image_to_png(image: np.ndarray, path: Path) -> None:
    """Write a 2-d template image losslessly where possible (8- or 16-bit)."""
    from PIL import Image

    from neurozoo.io import atomic_path

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(axis=-1)
    if arr.ndim != 2:
        raise NeurozooError(f"stimulus template has shape {arr.shape}, expected 2-d")
    if arr.dtype == np.uint8:
        im = Image.fromarray(arr, mode="L")
    elif arr.dtype == np.uint16:
        im = Image.fromarray(arr.astype(np.uint16), mode="I;16")
    else:
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if lo >= 0 and hi <= 255 and np.array_equal(arr, np.round(arr)):
            im = Image.fromarray(arr.astype(np.uint8), mode="L")
        else:
            log.warning("template %s: %s values rescaled to 8 bits", path.name,
                        arr.dtype)
            scaled = (arr - lo) / (hi - lo if hi > lo else 1.0) * 255
            im = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def write_output(out, responses, templates, stimulus_ids, provenance: dict) -> Path:
    """Write a fetched data set as ``OUT/responses.nc`` + ``OUT/stimuli/``.

    Layout::

        OUT/responses.nc          NeuralResponses (netCDF, variable "responses";
                                  attrs carry the provenance as JSON)
        OUT/stimuli/stimuli.csv   stimulus_id,filename,sha256
        OUT/stimuli/stimulus_{i:03d}.png
        OUT/provenance.json       the same provenance, plus file checksums

    Parameters
    ----------
    out : path
        Output folder (created).
    responses : NeuralResponses, dims (trial, stimulus, neuroid)
    templates : sequence of ndarray, each shape (height, width)
        One image per stimulus, in the order of ``stimulus_ids``.
    stimulus_ids : sequence of str, length n_stimuli
    provenance : dict

    Returns
    -------
    Path
        The folder ``out``.
    """
    from neurozoo.data.responses import save_responses
    from neurozoo.data.stimuli import StimulusSet, check_match
    from neurozoo.io import sha256_file, write_json

    out = Path(out)
    stim_dir = out / "stimuli"
    stim_dir.mkdir(parents=True, exist_ok=True)
    ids = [str(s) for s in stimulus_ids]
    if len(templates) != len(ids):
        raise NeurozooError(f"{len(templates)} templates for {len(ids)} stimuli")
    paths = []
    for sid, image in zip(ids, templates):
        name = f"stimulus_{int(sid):03d}.png" if sid.isdigit() else f"{sid}.png"
        _image_to_png(image, stim_dir / name)
        paths.append(stim_dir / name)
    stimuli = StimulusSet(ids, paths)
    stimuli.save_csv(stim_dir / "stimuli.csv")
    check_match(responses, stimuli, str(out / "responses.nc"))

    da = responses.copy()
    da.attrs = dict(da.attrs)
    da.attrs["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
    da.attrs["stimuli"] = "stimuli/stimuli.csv"
    save_responses(da, out / "responses.nc")
    full = dict(provenance)
    full["files"] = {
        os.path.relpath(p, out): sha256_file(p)
        for p in [out / "responses.nc", stim_dir / "stimuli.csv", *paths]
    }
    write_json(out / "provenance.json", full)
    log.info("wrote %s: %d trials x %d stimuli x %d neuroids", out,
             *da.shape)
    return out
