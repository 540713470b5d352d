"""Neural responses as a labelled xarray, with validation and reliability.

A *NeuralResponses* object is an :class:`xarray.DataArray` with dims
``("trial", "stimulus", "neuroid")``:

- ``trial``: the repeat index of a stimulus (0, 1, ...). A neuroid recorded
  with fewer repeats than others carries NaN in the missing repeats.
- ``stimulus``: coordinate ``stimulus_id`` (str), matched against a
  :class:`~neurozoo.data.stimuli.StimulusSet`.
- ``neuroid``: coordinates ``neuroid_id`` (str, unique), ``area`` (str, e.g.
  ``"VISp"``) and ``specimen_id`` (int); optional extra coords (``unit_id``,
  ``depth``, ``cre_line`` ...) travel along.

This is also the on-disk schema (netCDF, variable ``responses``): see
:func:`save_responses` and :func:`load_responses`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import xarray as xr

from neurozoo.errors import NeurozooError
from neurozoo.io import atomic_path

__all__ = [
    "DIMS",
    "REQUIRED_COORDS",
    "make_responses",
    "validate_responses",
    "check_responses",
    "trial_average",
    "split_half_reliability",
    "save_responses",
    "load_responses",
]

log = logging.getLogger(__name__)

DIMS = ("trial", "stimulus", "neuroid")
REQUIRED_COORDS = {
    "stimulus_id": "stimulus",
    "neuroid_id": "neuroid",
    "area": "neuroid",
    "specimen_id": "neuroid",
}


def make_responses(
    values: np.ndarray,
    stimulus_ids,
    neuroid_ids,
    area,
    specimen_id,
    attrs: dict | None = None,
    **neuroid_coords,
) -> xr.DataArray:
    """Build a NeuralResponses array.

    Parameters
    ----------
    values : ndarray, shape (n_trials, n_stimuli, n_neuroids)
        Responses; NaN marks a missing repeat.
    stimulus_ids : sequence of str, length n_stimuli
    neuroid_ids : sequence of str, length n_neuroids
    area, specimen_id : sequence, length n_neuroids
    attrs : dict, optional
        Free-form metadata (units, source, response window ...).
    **neuroid_coords : sequence, length n_neuroids
        Further per-neuroid coordinates.
    """
    coords = {
        "stimulus_id": ("stimulus", np.asarray(stimulus_ids, dtype=str)),
        "neuroid_id": ("neuroid", np.asarray(neuroid_ids, dtype=str)),
        "area": ("neuroid", np.asarray(area, dtype=str)),
        "specimen_id": ("neuroid", np.asarray(specimen_id, dtype=np.int64)),
    }
    for name, value in neuroid_coords.items():
        coords[name] = ("neuroid", np.asarray(value))
    da = xr.DataArray(np.asarray(values), dims=DIMS, coords=coords, name="responses")
    da.attrs.update(attrs or {})
    return da


def validate_responses(da, source: str = "responses") -> list[str]:
    """Return every problem found in a NeuralResponses object (empty if valid).

    Each message names ``source`` and the offending field.
    """
    problems: list[str] = []
    if not isinstance(da, xr.DataArray):
        return [f"{source}: expected an xarray.DataArray, got {type(da).__name__}"]
    if tuple(da.dims) != DIMS:
        problems.append(
            f"{source}: dims are {tuple(da.dims)}, expected {DIMS} in this order"
        )
        return problems
    for coord, dim in REQUIRED_COORDS.items():
        if coord not in da.coords:
            problems.append(f"{source}: missing coord '{coord}' on dim '{dim}'")
        elif da.coords[coord].dims != (dim,):
            problems.append(
                f"{source}: coord '{coord}' has dims {da.coords[coord].dims}, "
                f"expected ('{dim}',)"
            )
    if any(s == 0 for s in da.shape):
        problems.append(f"{source}: empty dimension in shape {dict(da.sizes)}")
        return problems
    if not np.issubdtype(da.dtype, np.floating):
        problems.append(f"{source}: values have dtype {da.dtype}, expected floating")
        return problems
    for coord in ("stimulus_id", "neuroid_id"):
        if coord in da.coords:
            ids = np.asarray(da.coords[coord].values).astype(str)
            uniq, counts = np.unique(ids, return_counts=True)
            if (counts > 1).any():
                dup = uniq[counts > 1][:5].tolist()
                problems.append(f"{source}: duplicate {coord} values {dup}")
    values = np.asarray(da.values)
    if np.isinf(values).any():
        problems.append(f"{source}: responses contain infinite values")
    finite = np.isfinite(values)
    empty = ~finite.any(axis=(0, 1))
    if empty.any():
        ids = np.asarray(da.coords["neuroid_id"].values)[empty] if (
            "neuroid_id" in da.coords
        ) else np.flatnonzero(empty)
        problems.append(
            f"{source}: {int(empty.sum())} neuroid(s) have no finite response "
            f"(all NaN), e.g. neuroid_id {ids[:3].tolist()}"
        )
    # Scores and reliabilities use complete repeats (finite for every stimulus).
    no_complete = ~finite.all(axis=1).any(axis=0) & ~empty
    if no_complete.any():
        ids = np.asarray(da.coords["neuroid_id"].values)[no_complete] if (
            "neuroid_id" in da.coords) else np.flatnonzero(no_complete)
        problems.append(
            f"{source}: {int(no_complete.sum())} neuroid(s) have no complete repeat "
            f"(a trial finite for every stimulus), e.g. neuroid_id {ids[:3].tolist()}"
        )
    # Every neuroid needs at least one finite repeat of every stimulus.
    missing_stim = ~finite.any(axis=0) & ~empty[None, :]
    if missing_stim.any():
        s, n = np.argwhere(missing_stim)[0]
        nid = da.coords["neuroid_id"].values[n] if "neuroid_id" in da.coords else n
        sid = da.coords["stimulus_id"].values[s] if "stimulus_id" in da.coords else s
        problems.append(
            f"{source}: {int(missing_stim.sum())} (stimulus, neuroid) pairs have no "
            f"finite trial, e.g. neuroid_id {nid} at stimulus_id {sid}"
        )
    return problems


def check_responses(da, source: str = "responses") -> xr.DataArray:
    """Raise :class:`NeurozooError` listing every problem, else return ``da``."""
    problems = validate_responses(da, source)
    if problems:
        raise NeurozooError("; ".join(problems))
    return da


def trial_average(da: xr.DataArray) -> np.ndarray:
    """Mean over finite trials.

    Returns
    -------
    ndarray, shape (n_stimuli, n_neuroids), float64
    """
    values = np.asarray(da.values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.nanmean(values, axis=0)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (n, k) -> (k,)."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    num = (a * b).sum(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _trial_groups(values: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
    """Group neuroids by their set of complete repeats.

    A repeat (trial index) counts for a neuroid when it is finite for every
    stimulus. Returns ``{valid_trial_indices: neuroid_indices}``.
    """
    complete = np.isfinite(values).all(axis=1)  # (n_trials, n_neuroids)
    groups: dict[tuple[int, ...], list[int]] = {}
    for j in range(complete.shape[1]):
        groups.setdefault(tuple(np.flatnonzero(complete[:, j]).tolist()), []).append(j)
    return {k: np.asarray(v) for k, v in groups.items()}


def split_half_reliability(
    da: xr.DataArray, n_splits: int = 100, seed: int = 0
) -> np.ndarray:
    """Split-half reliability of each neuroid, Spearman-Brown corrected.

    For each of ``n_splits`` random splits, the neuroid's complete repeats are
    shuffled and cut into two halves (sizes ``floor(T/2)`` and ``ceil(T/2)``,
    the same partition for every stimulus); the two half means are correlated
    across stimuli (Pearson r) and corrected to the full trial count with
    Spearman-Brown, ``2 r / (1 + r)``. The corrected values are averaged over
    splits. Neuroids with the same complete repeats share the splits, which
    come from ``numpy.random.default_rng([seed, T])`` where ``T`` is the number
    of complete repeats: permutation ``k`` of that generator defines split ``k``.

    A neuroid with a constant half mean gets NaN (flag it as unreliable).

    Parameters
    ----------
    da : NeuralResponses, dims (trial, stimulus, neuroid)
    n_splits : int
    seed : int

    Returns
    -------
    ndarray, shape (n_neuroids,), float64
    """
    values = np.asarray(da.values, dtype=np.float64)
    out = np.full(values.shape[2], np.nan)
    for trials, neuroids in _trial_groups(values).items():
        t = len(trials)
        if t < 2:
            log.warning(
                "%d neuroid(s) have fewer than 2 complete repeats: reliability NaN",
                len(neuroids),
            )
            continue
        trials_arr = np.asarray(trials)
        sub = values[:, :, neuroids]
        rng = np.random.default_rng([seed, t])
        acc = np.zeros(len(neuroids))
        for _ in range(n_splits):
            perm = trials_arr[rng.permutation(t)]
            half_a = sub[perm[: t // 2]].mean(axis=0)
            half_b = sub[perm[t // 2 :]].mean(axis=0)
            r = _rowwise_pearson(half_a, half_b)
            with np.errstate(invalid="ignore", divide="ignore"):
                acc += 2 * r / (1 + r)
        out[neuroids] = acc / n_splits
    return out


def save_responses(da: xr.DataArray, path: str | os.PathLike) -> None:
    """Write a NeuralResponses array to netCDF (atomically), after validation."""
    check_responses(da, str(path))
    ds = da.to_dataset(name="responses")
    # netCDF attributes must be scalars, strings or 1-d arrays.
    ds.attrs = {k: (str(v) if isinstance(v, (dict, list)) else v)
                for k, v in da.attrs.items()}
    ds["responses"].attrs = {}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf",
                     encoding={"responses": {"zlib": True, "complevel": 4}})


def load_responses(path: str | os.PathLike, validate: bool = True) -> xr.DataArray:
    """Read a NeuralResponses netCDF file written by :func:`save_responses`."""
    path = Path(path)
    if not path.exists():
        raise NeurozooError(f"{path}: no such responses file")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as exc:  # h5py raises a zoo of types on corrupt files
        raise NeurozooError(f"{path}: not a readable netCDF file ({exc})") from exc
    if "responses" not in ds:
        raise NeurozooError(
            f"{path}: missing variable 'responses' (found {list(ds.data_vars)})"
        )
    da = ds["responses"]
    da.attrs = dict(ds.attrs)
    for coord in ("stimulus_id", "neuroid_id", "area"):
        if coord in da.coords:
            da = da.assign_coords({coord: da.coords[coord].astype(str)})
    if validate:
        check_responses(da, str(path))
    return da
