"""Shared fixtures: small real data cut from the bundled Allen data set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurozoo.data import StimulusSet, load_bundled, make_responses, save_responses

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def bundled():
    """The whole bundled data set: (responses, stimuli)."""
    return load_bundled()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory, bundled):
    """A small real data set on disk: 24 stimuli (downsized), 60 neuroids.

    Returns the folder holding ``responses.nc`` and ``stimuli/``.
    """
    responses, stimuli = bundled
    root = tmp_path_factory.mktemp("small")
    (root / "stimuli").mkdir()
    keep_stim = np.arange(24)
    paths = []
    for i in keep_stim:
        img = stimuli.load_image(int(i)).resize((147, 115))
        p = root / "stimuli" / f"img_{i:03d}.png"
        img.save(p)
        paths.append(p)
    ids = [stimuli.stimulus_ids[i] for i in keep_stim]
    StimulusSet(ids, paths).save_csv(root / "stimuli" / "stimuli.csv")
    # 10 neuroids from each of the first area's recordings, two areas
    areas = np.asarray(responses.coords["area"].values)
    pick = np.concatenate([np.flatnonzero(areas == a)[:30] for a in ("VISp", "VISl")])
    sub = responses.isel(stimulus=keep_stim, neuroid=pick)
    save_responses(sub, root / "responses.nc")
    return root


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    """A fresh summary cache for one test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NEUROZOO_CACHE", str(cache))
    return cache


def write_responses(path, values, stimulus_ids, areas=None):
    """Helper: a NeuralResponses netCDF from raw values (trial, stim, neuroid)."""
    n = values.shape[2]
    da = make_responses(
        values, stimulus_ids, [f"n{j}" for j in range(n)],
        areas if areas is not None else ["VISp"] * n, [1] * n,
    )
    ds = da.to_dataset(name="responses")
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def copy_stimuli(src: Path, dst: Path) -> Path:
    """Copy a stimulus folder (csv + images)."""
    import shutil

    shutil.copytree(src, dst)
    return dst


os.environ.setdefault("NEUROZOO_OFFLINE", "1")
Image.MAX_IMAGE_PIXELS = None
