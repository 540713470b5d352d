"""Neuropixels loader on a small ecephys project cache read by allensdk itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ecephys_files import (
    IMAGE_S,
    N_IMAGES,
    N_REPEATS,
    brute_force_counts,
    write_ecephys_cache,
)

from neurozoo.allen import VISUAL_AREAS
from neurozoo.allen.ecephys import EcephysConfig, fetch_ecephys
from neurozoo.data.responses import load_responses
from neurozoo.data.schema import validate_path
from neurozoo.data.stimuli import load_stimulus_set
from neurozoo.errors import NeurozooError

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_ecephys_cache(tmp_path_factory.mktemp("ecephys"))


def _units(cache):
    return {u.id: (s, u) for s in cache.sessions.values() for u in s.units}


def _expected_ids(cache, areas=VISUAL_AREAS, snr_min=None, sessions=None):
    ids = []
    for s in cache.sessions.values():
        if s.session_type != "brain_observatory_1.1" or (
                sessions is not None and s.id not in sessions):
            continue
        for u in s.units:
            if (u.quality == "good" and u.amplitude_cutoff <= 0.1
                    and u.presence_ratio >= 0.9 and u.isi_violations <= 0.5
                    and u.area in areas and (snr_min is None or u.snr >= snr_min)):
                ids.append(u.id)
    return sorted(ids)


@pytest.mark.parametrize("window", [(0.0, IMAGE_S), (0.05, 0.2)])
def test_counts_match_brute_force(cache, window):
    da, templates, _ = fetch_ecephys(
        cache.root, EcephysConfig(window_s=window, measure="count"), offline=True,
        progress=False)
    assert da.shape[:2] == (N_REPEATS, N_IMAGES)
    units = _units(cache)
    edge_hits = 0
    for j, uid in enumerate(da.unit_id.values):
        s, u = units[int(uid)]
        want = brute_force_counts(s, u, window)
        np.testing.assert_array_equal(da.values[:, :, j], want)
        edge_hits += np.isin(u.spike_times, s.start).sum()
    assert edge_hits > 0  # spikes sit exactly on window edges
    for got, want in zip(templates, cache.templates):
        np.testing.assert_array_equal(got, want)


def test_rates_are_counts_over_window(cache):
    counts, _, _ = fetch_ecephys(cache.root, EcephysConfig(measure="count"),
                                 offline=True, progress=False)
    rates, _, _ = fetch_ecephys(cache.root, EcephysConfig(), offline=True,
                                progress=False)
    np.testing.assert_allclose(rates.values, counts.values / IMAGE_S, rtol=1e-6)
    assert rates.attrs["units"] == "Hz"


@pytest.mark.parametrize("kwargs,areas,snr", [
    ({}, VISUAL_AREAS, None),
    ({"areas": ["VISp"]}, ["VISp"], None),
    ({"snr_min": 1.0}, VISUAL_AREAS, 1.0),
])
def test_quality_and_area_filters(cache, kwargs, areas, snr):
    da, _, prov = fetch_ecephys(cache.root, EcephysConfig(**kwargs), offline=True,
                                progress=False)
    assert sorted(da.unit_id.values.tolist()) == _expected_ids(cache, areas, snr)
    # the functional_connectivity session shows no natural scenes
    assert prov["ecephys_session_ids"] == [715093703, 719161530]


def test_unit_metadata(cache):
    da, _, _ = fetch_ecephys(cache.root, EcephysConfig(session_ids=[719161530]),
                             offline=True, progress=False)
    units = _units(cache)
    assert set(da.ecephys_session_id.values) == {719161530}
    for j, uid in enumerate(da.unit_id.values):
        s, u = units[int(uid)]
        assert da.neuroid_id.values[j] == str(uid)
        assert da.area.values[j] == u.area
        assert da.specimen_id.values[j] == s.specimen_id
        assert da.probe.values[j] == "probeA"
        assert da.snr.values[j] == u.snr
        assert da.amplitude_cutoff.values[j] == u.amplitude_cutoff
        assert da.presence_ratio.values[j] == u.presence_ratio
        assert da.isi_violations.values[j] == u.isi_violations
    with pytest.raises(NeurozooError, match="766640955"):
        fetch_ecephys(cache.root, EcephysConfig(session_ids=[766640955]),
                      offline=True)


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "neurozoo.allen.cli", *args],
                          capture_output=True, text=True, env=env)
    return proc, time.monotonic() - t0


def test_cli_fetch_ecephys(cache, tmp_path):
    out = tmp_path / "out"
    proc, _ = _cli("data", "fetch", "ecephys", "--cache-dir", str(cache.root),
                   "--out", str(out), "--offline", "--window", "0.0", "0.25",
                   "--n-splits", "20")
    assert proc.returncode == 0, proc.stderr
    assert validate_path(out) == []
    da = load_responses(out / "responses.nc")
    assert sorted(da.unit_id.values.tolist()) == _expected_ids(cache)
    stimuli = load_stimulus_set(out / "stimuli")
    for i in range(N_IMAGES):
        np.testing.assert_array_equal(np.asarray(stimuli.load_image(i)),
                                      cache.templates[i])
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["ecephys_session_ids"] == [715093703, 719161530]
    assert prov["config"]["amplitude_cutoff_max"] == 0.1
    assert "responses.nc" in prov["files"]


@pytest.mark.parametrize("missing", ["tables", "nwb"])
def test_offline_without_files_fails_fast(cache, tmp_path, missing):
    import shutil

    root = tmp_path / "cache"
    if missing == "nwb":
        shutil.copytree(cache.root, root)
        shutil.rmtree(root / "session_719161530")
    proc, seconds = _cli("data", "fetch", "ecephys", "--cache-dir", str(root),
                         "--out", str(tmp_path / "o"))
    assert seconds < 30
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    if missing == "tables":
        assert "4 Neuropixels project table(s) missing" in err
        assert str(root / "sessions.csv") in err
    else:
        assert "1 Neuropixels session NWB file(s) missing" in err
        assert str(root / "session_719161530" / "session_719161530.nwb") in err
    assert "--cache-dir" in err
