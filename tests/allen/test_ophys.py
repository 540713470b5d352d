"""2-photon loader on a small Brain Observatory cache read by allensdk itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ophys_files import CONTAINERS, N_IMAGES, N_REPEATS, brute_force, write_ophys_cache

from neurozoo.allen.common import depth_to_layer
from neurozoo.allen.fetch import finish
from neurozoo.allen.ophys import OphysConfig, fetch_ophys
from neurozoo.data.responses import load_responses, split_half_reliability
from neurozoo.data.schema import validate_path
from neurozoo.data.stimuli import load_stimulus_set
from neurozoo.errors import NeurozooError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return write_ophys_cache(tmp_path_factory.mktemp("ophys"))


def _by_cell(da, session):
    ids = [str(c) for c in session.cell_ids]
    return da.sel(neuroid=np.isin(da.neuroid_id.values, ids)).values


@pytest.mark.parametrize("window,baseline", [((0.0, 0.5), None),
                                             ((0.1, 0.35), (-1.0, 0.0))])
def test_dff_trials_match_brute_force(cache, window, baseline):
    cfg = OphysConfig(window_s=window, baseline_s=baseline)
    da, templates, prov = fetch_ophys(cache.root, cfg, offline=True, progress=False)
    assert da.dims == ("trial", "stimulus", "neuroid")
    assert da.shape[:2] == (N_REPEATS, N_IMAGES)
    # the failed container (511500003) is left out
    assert prov["experiment_container_ids"] == [511500001, 511500002, 511500004]
    for exp_id in prov["ophys_experiment_ids"]:
        s = cache.sessions[exp_id]
        want = brute_force(s, s.dff.astype(np.float64), window, baseline)
        got = _by_cell(da, s)
        assert np.isfinite(want).all()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(templates, cache.templates)


def test_events_signal_match_brute_force(cache):
    cfg = OphysConfig(signal="events", areas=["VISl"])
    da, _, prov = fetch_ophys(cache.root, cfg, offline=True, progress=False)
    (exp_id,) = prov["ophys_experiment_ids"]
    s = cache.sessions[exp_id]
    want = brute_force(s, s.events.astype(np.float64), (0.0, 0.5))
    np.testing.assert_allclose(_by_cell(da, s), want, rtol=1e-5, atol=1e-7)
    assert da.attrs["units"] == "event magnitude per frame"


def test_trial_k_is_kth_showing_in_time(cache):
    """A single-frame window picks exactly the onset frame: check the order."""
    da, _, prov = fetch_ophys(cache.root, OphysConfig(areas=["VISp"],
                                                      window_s=(0.0, 0.02)),
                              offline=True, progress=False)
    s = cache.sessions[prov["ophys_experiment_ids"][0]]
    for img in range(N_IMAGES):
        starts = sorted(s.start[s.frames == img])
        np.testing.assert_allclose(da.values[:, img, :], s.dff[:, starts].T,
                                   rtol=1e-6)


def test_selection_and_metadata(cache):
    meta = {c[0]: c for c in CONTAINERS}
    for cfg, want in [
        (OphysConfig(areas=["VISp"]), [511500001]),
        (OphysConfig(areas=["VISp"], include_failed=True), [511500001, 511500003]),
        (OphysConfig(cre_lines=["Rbp4-Cre_KL100"]), [511500002]),
        (OphysConfig(depths=[275]), [511500004]),
        (OphysConfig(reporter_lines=["Ai93(TITL-GCaMP6f)"], max_experiments=2),
         [511500001, 511500002]),
    ]:
        da, _, prov = fetch_ophys(cache.root, cfg, offline=True, progress=False)
        assert prov["experiment_container_ids"] == want
        for j in range(da.sizes["neuroid"]):
            cid, area, depth, cre, reporter, _, donor = meta[
                int(da.experiment_container_id[j])]
            assert da.area.values[j] == area
            assert da.depth.values[j] == depth
            assert da.layer.values[j] == depth_to_layer([depth])[0]
            assert da.cre_line.values[j] == cre
            assert da.reporter_line.values[j] == reporter
            assert da.specimen_id.values[j] == donor * 10
            assert da.neuroid_id.values[j] == str(da.cell_specimen_id.values[j])
    with pytest.raises(NeurozooError, match="no natural-scenes session matches"):
        fetch_ophys(cache.root, OphysConfig(areas=["VISrl"]), offline=True)


def test_reliability_filter_and_report(cache, tmp_path):
    da, templates, prov = fetch_ophys(cache.root, OphysConfig(), offline=True,
                                      progress=False)
    rel = split_half_reliability(da, n_splits=50, seed=0)
    out, rows = finish(da, templates, prov, tmp_path / "o", min_reliability=0.75,
                       n_splits=50)
    keep = rel >= 0.75
    assert 0 < keep.sum() < rel.size  # the fixture has cells on both sides
    assert out.neuroid_id.values.tolist() == da.neuroid_id.values[keep].tolist()
    for row in rows[:-1]:
        mask = (da.area.values == row["area"]) & (da.layer.values == row["layer"])
        assert (row["n"], row["n_pass"]) == (mask.sum(), (keep & mask).sum())
    assert rows[-1]["n_pass"] == keep.sum()
    back = load_responses(tmp_path / "o" / "responses.nc")
    np.testing.assert_allclose(back.reliability.values, rel[keep])
    prov_file = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert prov_file["reliability"]["n_after_filter"] == keep.sum()


def _cli(*args, env=None, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "neurozoo.allen.cli", *args],
                          capture_output=True, text=True, env=env, cwd=cwd)
    return proc, time.monotonic() - t0


def test_cli_fetch_writes_valid_folder(cache, tmp_path):
    out = tmp_path / "out"
    proc, _ = _cli("data", "fetch", "ophys", "--cache-dir", str(cache.root),
                   "--out", str(out), "--areas", "VISp", "VISl", "--offline",
                   "--n-splits", "20")
    assert proc.returncode == 0, proc.stderr
    assert "n_pass" in proc.stdout and "VISl" in proc.stdout
    assert validate_path(out) == []
    da = load_responses(out / "responses.nc")
    assert sorted(set(da.area.values)) == ["VISl", "VISp"]
    stimuli = load_stimulus_set(out / "stimuli")
    assert stimuli.stimulus_ids == [str(i) for i in range(N_IMAGES)]
    for i in range(N_IMAGES):
        np.testing.assert_array_equal(np.asarray(stimuli.load_image(i)),
                                      cache.templates[i])
    prov = json.loads(da.attrs["provenance"])
    assert prov["allensdk_version"] == "2.16.2"
    assert prov["ophys_experiment_ids"] == [600000001, 600000011]
    assert prov["config"]["filters"] == {"areas": ["VISp", "VISl"]}
    proc, _ = _cli("data", "info", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "reliability (stored)" in proc.stdout
    assert "cre_line: Cux2-CreERT2: 3, Rbp4-Cre_KL100: 4" in proc.stdout


@pytest.mark.parametrize("offline_flag", [True, False])
def test_fetch_offline_without_files_fails_fast(tmp_path, offline_flag):
    args = ["data", "fetch", "ophys", "--cache-dir", str(tmp_path / "empty"),
            "--out", str(tmp_path / "o")] + (["--offline"] if offline_flag else [])
    proc, seconds = _cli(*args)
    assert seconds < 30
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "2 Brain Observatory metadata file(s) missing" in err
    assert str(tmp_path / "empty" / "experiment_containers.json") in err
    assert "--cache-dir" in err
    assert not (tmp_path / "o").exists()


def test_fetch_missing_session_file_is_named(cache, tmp_path):
    import shutil

    root = tmp_path / "partial"
    shutil.copytree(cache.root, root)
    gone = root / "ophys_experiment_data" / "600000011.nwb"
    gone.unlink()
    with pytest.raises(NeurozooError) as err:
        fetch_ophys(root, OphysConfig(), offline=True)
    assert "1 2-photon session file(s) missing" in str(err.value)
    assert str(gone) in str(err.value)
