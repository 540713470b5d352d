"""Validation of data on disk: the checks behind ``neurozoo data validate``.

The on-disk schema (see ``docs/own_data.md``):

- a NeuralResponses netCDF file: variable ``responses`` with dims
  ``(trial, stimulus, neuroid)`` in that order, float values (NaN for a
  missing repeat), coords ``stimulus_id`` (on ``stimulus``), ``neuroid_id``,
  ``area``, ``specimen_id`` (on ``neuroid``); optional per-neuroid coords, of
  which ``n_trials`` (recorded repeats, ``0 <= n_trials <= n_trial``) is checked;
- a stimulus folder: ``stimuli.csv`` with columns ``stimulus_id,filename``
  (optional ``sha256``) beside the image files;
- a data folder: ``responses.nc`` plus ``stimuli/``, the layout that
  ``neurozoo data fetch`` writes, or plus ``stimuli.csv`` beside it, the
  layout of a run's prepared ``data/`` folder (a run folder itself is read
  through its ``data/``);
- a data bundle: ``MANIFEST.json``, ``recordings.csv``, ``responses/`` and
  ``stimuli/``, the layout of the bundled data set
  (:mod:`neurozoo.data.bundled`).

Every function here returns a list of problems (empty when valid), each one
line naming the file, the field and what was expected, so that a user sees all
of them at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neurozoo.data.responses import DIMS, validate_responses
from neurozoo.errors import NeurozooError

__all__ = [
    "data_layout",
    "validate_path",
    "validate_bundle",
    "validate_responses_file",
    "validate_stimulus_folder",
    "match_problems",
    "find_stimuli",
]

MAX_LISTED = 20


def _cap(problems: list[str], source: str, what: str) -> list[str]:
    if len(problems) <= MAX_LISTED:
        return problems
    return problems[:MAX_LISTED] + [
        f"{source}: ... and {len(problems) - MAX_LISTED} more {what} problems"]


def validate_stimulus_folder(path: str | os.PathLike, check_images: bool = True):
    """Check a stimulus folder (or its ``stimuli.csv``).

    Parameters
    ----------
    path : path
        The folder or the CSV file.
    check_images : bool
        Also open every image and compare its SHA-256 with the table's.

    Returns
    -------
    problems : list of str
    stimuli : StimulusSet or None
        None when the table itself is unreadable.
    """
    from PIL import Image

    from neurozoo.data.stimuli import load_stimulus_set
    from neurozoo.io import sha256_file

    try:
        stimuli = load_stimulus_set(path)
    except NeurozooError as exc:
        return [str(exc)], None
    csv = Path(path) / "stimuli.csv" if Path(path).is_dir() else Path(path)
    problems = []
    for k, (sid, p) in enumerate(zip(stimuli.stimulus_ids, stimuli.paths)):
        if not sid.strip():
            problems.append(f"{csv}: row {k + 1}: empty stimulus_id")
        if not p.is_file():
            problems.append(f"{csv}: stimulus_id {sid}: filename {p} does not exist")
            continue
        if not check_images:
            continue
        want = stimuli.sha256[k] if stimuli.sha256 else ""
        if want and sha256_file(p) != want:
            problems.append(
                f"{csv}: stimulus_id {sid}: sha256 of {p.name} differs from the "
                "table's (file changed or corrupt)")
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception as exc:
            problems.append(
                f"{csv}: stimulus_id {sid}: {p.name} is not a readable image ({exc})")
    return _cap(problems, str(csv), "stimulus"), stimuli


def validate_responses_file(path: str | os.PathLike):
    """Check a NeuralResponses netCDF file against the schema.

    Returns
    -------
    problems : list of str
    responses : xarray.DataArray or None
        The responses (in canonical dim order when only the order was wrong);
        None when the file or its variable cannot be read.
    """
    import xarray as xr

    path = Path(path)
    src = str(path)
    if not path.is_file():
        return [f"{src}: no such file"], None
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except Exception as exc:
        return [f"{src}: not a readable netCDF file ({exc})"], None
    if "responses" not in ds:
        return [f"{src}: missing variable 'responses' "
                f"(found {sorted(ds.data_vars)})"], None
    da = ds["responses"]
    da.attrs = dict(ds.attrs)
    problems = []
    if tuple(da.dims) != DIMS:
        if set(da.dims) == set(DIMS):
            problems.append(
                f"{src}: variable 'responses' has dims {tuple(da.dims)}, expected "
                f"{DIMS} in this order (transpose it before saving)")
            da = da.transpose(*DIMS)
        else:
            missing = [d for d in DIMS if d not in da.dims]
            extra = [d for d in da.dims if d not in DIMS]
            problems.append(
                f"{src}: variable 'responses' has dims {tuple(da.dims)}, expected "
                f"{DIMS} (missing {missing}, unexpected {extra})")
            return problems, None
    return _cap(problems + _array_problems(da, src), src, "responses"), da


def _array_problems(da, src: str) -> list[str]:
    """Schema problems of a NeuralResponses array in canonical dim order."""
    problems = validate_responses(da, src)
    if "trial" in da.coords:
        trial = np.asarray(da.coords["trial"].values)
        if np.issubdtype(trial.dtype, np.number) and (trial < 0).any():
            problems.append(
                f"{src}: coord 'trial' has negative values {trial[trial < 0][:5]}"
                " (trial indices count repeats from 0)")
    if "n_trials" in da.coords:
        problems += _n_trials_problems(da, src)
    if "specimen_id" in da.coords and not np.issubdtype(
            da.coords["specimen_id"].dtype, np.integer):
        problems.append(
            f"{src}: coord 'specimen_id' has dtype {da.coords['specimen_id'].dtype},"
            " expected integer")
    return problems


def _n_trials_problems(da, src: str) -> list[str]:
    n = np.asarray(da.coords["n_trials"].values)
    ids = (np.asarray(da.coords["neuroid_id"].values).astype(str)
           if "neuroid_id" in da.coords else np.arange(n.size).astype(str))
    if da.coords["n_trials"].dims != ("neuroid",):
        return [f"{src}: coord 'n_trials' has dims {da.coords['n_trials'].dims}, "
                "expected ('neuroid',)"]
    if not np.issubdtype(n.dtype, np.number):
        return [f"{src}: coord 'n_trials' has dtype {n.dtype}, expected integer"]
    out = []
    neg = n < 0
    if neg.any():
        out.append(
            f"{src}: coord 'n_trials' has negative trial counts "
            f"{n[neg][:3].tolist()} at neuroid_id {ids[neg][:3].tolist()}")
    if (n != np.round(n)).any():
        out.append(f"{src}: coord 'n_trials' has non-integer values")
    big = n > da.sizes["trial"]
    if big.any():
        out.append(
            f"{src}: coord 'n_trials' exceeds the {da.sizes['trial']} trials of "
            f"dim 'trial' at neuroid_id {ids[big][:3].tolist()}")
    return out


def match_problems(da, stimuli, source: str, stimuli_source: str) -> list[str]:
    """Differences between the responses' stimulus ids and a stimulus set.

    Parameters
    ----------
    da : NeuralResponses
    stimuli : StimulusSet
    source, stimuli_source : str
        Names for the messages.
    """
    if "stimulus_id" not in da.coords:
        return []
    ids = [str(s) for s in da.coords["stimulus_id"].values]
    have = set(stimuli.stimulus_ids)
    missing = [s for s in ids if s not in have]
    extra = [s for s in stimuli.stimulus_ids if s not in set(ids)]
    problems = []
    if missing:
        problems.append(
            f"{source}: coord 'stimulus_id' has {len(missing)} id(s) with no image "
            f"in {stimuli_source}: {missing[:5]}")
    if extra:
        problems.append(
            f"{source}: {stimuli_source} lists {len(extra)} stimulus_id(s) that the "
            f"responses lack: {extra[:5]}")
    if not missing and not extra and ids != stimuli.stimulus_ids:
        k = next(i for i, (a, b) in enumerate(zip(ids, stimuli.stimulus_ids))
                 if a != b)
        problems.append(
            f"{source}: coord 'stimulus_id' order differs from {stimuli_source} "
            f"(position {k}: '{ids[k]}' vs '{stimuli.stimulus_ids[k]}')")
    return problems


def find_stimuli(responses_path: str | os.PathLike, attrs: dict | None = None):
    """The stimulus folder that belongs to a responses file, or None.

    Looked up in order: the file's ``stimuli`` attribute (a path relative to
    the file), a ``stimuli/`` folder beside it (the layout ``data fetch``
    writes), then a ``stimuli.csv`` beside it (a run's ``data/`` folder).
    """
    base = Path(responses_path).parent
    rel = (attrs or {}).get("stimuli")
    candidates = ([base / str(rel)] if rel else []) + [base / "stimuli",
                                                       base / "stimuli.csv"]
    for c in candidates:
        if (c.is_dir() and (c / "stimuli.csv").is_file()) or (
                c.is_file() and c.suffix == ".csv"):
            return c
    return None


def data_layout(path: str | os.PathLike) -> tuple[str, Path]:
    """What a data path holds, and the file or folder to read.

    Parameters
    ----------
    path : path
        A data bundle folder, a folder with ``responses.nc`` (a fetched data
        folder or a run's ``data/``), a run folder (``data/responses.nc``), a
        stimulus folder or ``stimuli.csv``, or a responses file.

    Returns
    -------
    kind : str
        ``"bundle"`` (the folder), ``"responses"`` (the ``.nc`` file) or
        ``"stimuli"`` (the folder or CSV file).
    path : Path

    Raises :class:`NeurozooError` for a folder in none of these layouts.
    """
    from neurozoo.data.bundled import is_bundle

    path = Path(path)
    if not path.is_dir():
        return ("stimuli" if path.suffix == ".csv" else "responses"), path
    if is_bundle(path):
        return "bundle", path
    for nc in (path / "responses.nc", path / "data" / "responses.nc"):
        if nc.is_file():
            return "responses", nc
    if (path / "stimuli.csv").is_file():
        return "stimuli", path
    raise NeurozooError(
        f"{path}: no data found in this folder; expected responses.nc, a run folder "
        "(data/responses.nc), a stimulus folder (stimuli.csv) or a data bundle "
        "(MANIFEST.json and recordings.csv)")


def validate_bundle(root: str | os.PathLike, stimuli: str | os.PathLike | None = None,
                    check_images: bool = True) -> list[str]:
    """Every problem found in a data bundle (the bundled data set's layout).

    Checks every file against ``MANIFEST.json``, then the assembled responses
    against the schema, the stimulus folder (``stimuli/``, or ``stimuli``)
    and that the two match.

    Returns
    -------
    list of str
        Empty when everything is valid.
    """
    from neurozoo.data.bundled import bundle_problems, load_bundled

    root = Path(root)
    problems, _ = bundle_problems(root)
    try:
        da, _ = load_bundled(root, verify=False, validate=False)
    except Exception as exc:  # a corrupt file fails in numpy, json or csv
        if problems:  # numpy's message for a corrupt .npz would mislead
            return problems + [f"{root}: responses not checked: files listed above "
                               "are missing or corrupt"]
        why = str(exc) if isinstance(exc, NeurozooError) else f"{type(exc).__name__}: {exc}"
        return [f"{root}: cannot assemble the bundle's responses ({why})"]
    src = str(root)
    problems += _cap(_array_problems(da, src), src, "responses")
    stim_path = Path(stimuli) if stimuli is not None else root / "stimuli"
    stim_problems, stimulus_set = validate_stimulus_folder(stim_path, check_images)
    problems += stim_problems
    if stimulus_set is not None:
        problems += match_problems(da, stimulus_set, src, str(stim_path))
    return problems


def validate_path(path: str | os.PathLike, stimuli: str | os.PathLike | None = None,
                  check_images: bool = True) -> list[str]:
    """Every problem found in a data folder, responses file or stimulus folder.

    Parameters
    ----------
    path : path
        A folder with ``responses.nc`` (and ``stimuli/`` or ``stimuli.csv``), a
        run folder, a ``.nc`` file, a stimulus folder / ``stimuli.csv``, or a
        data bundle (see :func:`data_layout`).
    stimuli : path, optional
        The stimulus folder to match a responses file against (default: found
        by :func:`find_stimuli`).
    check_images : bool
        Open every image and check its checksum.

    Returns
    -------
    list of str
        Empty when everything is valid.
    """
    path = Path(path)
    if not path.exists():
        return [f"{path}: no such file or folder"]
    try:
        kind, path = data_layout(path)
    except NeurozooError as exc:
        return [str(exc)]
    if kind == "stimuli":
        return validate_stimulus_folder(path, check_images)[0]
    if kind == "bundle":
        return validate_bundle(path, stimuli, check_images)
    problems, da = validate_responses_file(path)
    stim_path = Path(stimuli) if stimuli is not None else find_stimuli(
        path, dict(da.attrs) if da is not None else None)
    if stim_path is None:
        if stimuli is None and da is not None:
            problems.append(
                f"{path}: no stimulus folder found (expected {path.parent / 'stimuli'}"
                f"/stimuli.csv or {path.parent / 'stimuli.csv'}, or pass --stimuli)")
        return problems
    stim_problems, stimulus_set = validate_stimulus_folder(stim_path, check_images)
    problems += stim_problems
    if da is not None and stimulus_set is not None:
        problems += match_problems(da, stimulus_set, str(path), str(stim_path))
    return problems
