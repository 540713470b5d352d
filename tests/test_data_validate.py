"""`neurozoo data validate|info|fetch` in the core environment, and the
allensdk-free helpers of neurozoo.allen (windows, trials, layers, tables)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from neurozoo.allen.cli import _fetch_argv, main
from neurozoo.allen.common import (
    assemble_trials,
    depth_to_layer,
    reliability_table,
    window_bounds,
    window_means,
    write_output,
)
from neurozoo.data.bundled import default_bundle_path
from neurozoo.data.responses import load_responses, make_responses, save_responses
from neurozoo.data.schema import validate_path
from neurozoo.data.stimuli import load_stimulus_set

REPO = Path(__file__).resolve().parents[1]
N_T, N_S, N_N = 6, 5, 4


def _responses(seed=0, **extra):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(1, N_S, N_N))
    values = (signal + 0.3 * rng.normal(size=(N_T, N_S, N_N))).astype(np.float32)
    return make_responses(
        values, [str(i) for i in range(N_S)], [f"n{j}" for j in range(N_N)],
        ["VISp", "VISp", "VISl", "VISl"], [1, 1, 2, 2],
        depth=[175.0, 375.0, 175.0, 550.0], layer=["L2/3", "L5", "L2/3", "L6"],
        cre_line=["Cux2-CreERT2"] * 2 + ["Rbp4-Cre_KL100"] * 2, **extra)


def _folder(tmp_path: Path, da=None, ids=None) -> Path:
    """A data folder in the fetch layout: responses.nc + stimuli/."""
    out = tmp_path / "data"
    stim = out / "stimuli"
    stim.mkdir(parents=True)
    ids = ids or [str(i) for i in range(N_S)]
    rows = ["stimulus_id,filename"]
    for k, sid in enumerate(ids):
        Image.fromarray(np.full((8, 8), 10 * k, np.uint8), mode="L").save(
            stim / f"im{k}.png")
        rows.append(f"{sid},im{k}.png")
    (stim / "stimuli.csv").write_text("\n".join(rows) + "\n")
    da = _responses() if da is None else da
    if isinstance(da, xr.Dataset):
        da.to_netcdf(out / "responses.nc", engine="h5netcdf")
    else:
        save_responses(da, out / "responses.nc")
    return out


def _raw_dataset(da) -> xr.Dataset:
    return da.to_dataset(name="responses")


def test_valid_folder_passes(tmp_path):
    out = _folder(tmp_path)
    assert validate_path(out) == []
    assert validate_path(out / "responses.nc") == []
    assert validate_path(out / "stimuli") == []
    assert main(["data", "validate", str(out)]) == 0


def test_mismatched_stimulus_ids(tmp_path):
    out = _folder(tmp_path, ids=["0", "1", "2", "3", "x9"])
    problems = validate_path(out)
    assert len(problems) == 2
    assert "coord 'stimulus_id'" in problems[0] and "'4'" in problems[0]
    assert "lack:" in problems[1] and "x9" in problems[1]


def test_stimulus_order_mismatch(tmp_path):
    out = _folder(tmp_path, ids=["1", "0", "2", "3", "4"])
    (problem,) = validate_path(out)
    assert "order differs" in problem and "position 0" in problem


def test_nan_only_neuroid(tmp_path):
    da = _responses()
    da.values[:, :, 2] = np.nan
    out = _folder(tmp_path, _raw_dataset(da))
    (problem,) = validate_path(out)
    assert "all NaN" in problem and "n2" in problem


def test_missing_coord(tmp_path):
    ds = _raw_dataset(_responses()).drop_vars("area")
    out = _folder(tmp_path, ds)
    (problem,) = validate_path(out)
    assert "missing coord 'area'" in problem


def test_wrong_dimension_order(tmp_path):
    ds = _raw_dataset(_responses().transpose("stimulus", "trial", "neuroid"))
    out = _folder(tmp_path, ds)
    (problem,) = validate_path(out)
    assert "('stimulus', 'trial', 'neuroid')" in problem and "in this order" in problem


def test_wrong_dimension_names(tmp_path):
    ds = _raw_dataset(_responses().rename(neuroid="unit"))
    out = _folder(tmp_path, ds)
    problems = validate_path(out)
    assert "missing ['neuroid'], unexpected ['unit']" in problems[0]


def test_negative_trial_counts(tmp_path):
    da = _responses(n_trials=[N_T, -3, N_T, N_T])
    out = _folder(tmp_path, _raw_dataset(da))
    (problem,) = validate_path(out)
    assert "coord 'n_trials' has negative trial counts [-3]" in problem
    assert "n1" in problem


def test_all_problems_reported_together(tmp_path):
    da = _responses(n_trials=[N_T, -1, N_T, N_T])
    da.values[:, :, 0] = np.nan
    ds = _raw_dataset(da.transpose("neuroid", "trial", "stimulus")).drop_vars(
        "specimen_id")
    out = _folder(tmp_path, ds, ids=["0", "1", "2", "3", "zz"])
    problems = validate_path(out)
    text = "\n".join(problems)
    for needle in ("in this order", "missing coord 'specimen_id'", "all NaN",
                   "negative trial counts", "no image", "zz"):
        assert needle in text, needle
    assert main(["data", "validate", str(out)]) == 1


def test_stimulus_folder_problems(tmp_path):
    out = _folder(tmp_path)
    (out / "stimuli" / "im1.png").unlink()
    (out / "stimuli" / "im2.png").write_bytes(b"not a png")
    problems = validate_path(out / "stimuli")
    assert any("stimulus_id 1" in p and "does not exist" in p for p in problems)
    assert any("stimulus_id 2" in p and "not a readable image" in p for p in problems)
    assert validate_path(tmp_path / "nowhere") == [
        f"{tmp_path / 'nowhere'}: no such file or folder"]


def test_checksum_mismatch(tmp_path):
    out = _folder(tmp_path)
    stimuli = load_stimulus_set(out / "stimuli")
    stimuli.save_csv(out / "stimuli" / "stimuli.csv")  # adds sha256
    Image.fromarray(np.full((8, 8), 99, np.uint8), mode="L").save(
        out / "stimuli" / "im3.png")
    (problem,) = validate_path(out)
    assert "stimulus_id 3" in problem and "sha256" in problem


def test_cli_validate_subprocess_reports(tmp_path):
    ds = _raw_dataset(_responses()).drop_vars("neuroid_id")
    out = _folder(tmp_path, ds)
    proc = subprocess.run(
        [sys.executable, "-m", "neurozoo.allen.cli", "data", "validate", str(out)],
        capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1
    assert "missing coord 'neuroid_id'" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_info_counts_and_reliability(tmp_path, capsys):
    out = _folder(tmp_path)
    assert main(["data", "info", str(out), "--threshold", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "6 trials x 5 stimuli x 4 neuroids" in text
    assert "area: VISl: 2, VISp: 2" in text
    assert "cre_line: Cux2-CreERT2: 2, Rbp4-Cre_KL100: 2" in text
    assert "split-half reliability (computed, 100 splits)" in text
    assert "reliability >= 0.5" in text


def test_info_missing_file_is_one_line(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "none.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such responses file" in err


def test_bundled_data_validates_and_reports_like_its_loader(bundled, capsys):
    responses, _ = bundled
    root = default_bundle_path()
    assert validate_path(root) == []
    assert main(["data", "validate", str(root)]) == 0
    capsys.readouterr()
    assert main(["data", "info", str(root), "--n-splits", "5"]) == 0
    text = capsys.readouterr().out
    sizes = responses.sizes
    assert (f"{sizes['trial']} trials x {sizes['stimulus']} stimuli x "
            f"{sizes['neuroid']} neuroids") in text
    areas, counts = np.unique(responses.coords["area"].values, return_counts=True)
    assert "area: " + ", ".join(f"{a}: {c}" for a, c in zip(areas, counts)) in text


def test_corrupt_bundle_copy_lists_each_bad_file(tmp_path, capsys):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), copy)
    bad_counts = sorted((copy / "responses").glob("*.npz"))[3]
    bad_counts.write_bytes(b"garbage")
    (copy / "stimuli" / "stimulus_007.png").unlink()
    problems = validate_path(copy)
    assert any(str(bad_counts) in p and "corrupt" in p for p in problems)
    assert any("stimulus_007.png" in p and "missing" in p for p in problems)
    assert not any("pickled" in p for p in problems)
    assert main(["data", "validate", str(copy)]) == 1


def test_run_folder_validates_and_survives_a_move(small_dataset, tmp_path, capsys):
    import shutil

    from neurozoo.config import load_config
    from neurozoo.pipeline import stage_prepare

    config = load_config(None, data=str(small_dataset / "responses.nc"),
                         reliability_splits=5)
    run = tmp_path / "results"
    stage_prepare(config, run / "data")
    source = load_stimulus_set(small_dataset / "stimuli")
    for path in (run / "data", run, run / "data" / "responses.nc"):
        assert validate_path(path) == [], path
    assert main(["data", "info", str(run)]) == 0
    assert "24 stimuli x 60 neuroids" in capsys.readouterr().out
    # the prepared data still name the same images after the folder moved
    moved = tmp_path / "elsewhere" / "deeper" / "results"
    moved.parent.mkdir(parents=True)
    shutil.move(run, moved)
    assert validate_path(moved / "data") == []
    prepared = load_stimulus_set(moved / "data" / "stimuli.csv")
    assert [p.resolve() for p in prepared.paths] == [p.resolve() for p in source.paths]
    assert prepared.identity() == source.identity()
    # a folder with none of the layouts says what it looked for
    (tmp_path / "empty").mkdir()
    (problem,) = validate_path(tmp_path / "empty")
    assert "no data found" in problem and "MANIFEST.json" in problem
    assert main(["data", "info", str(tmp_path / "empty")]) == 2


def test_fetch_without_allen_env_fails_fast(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "NEUROZOO_ALLEN_PYTHON": str(tmp_path / "no-python")}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "neurozoo.allen.cli", "data", "fetch", "ophys",
         "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env,
        cwd=tmp_path)
    assert time.monotonic() - t0 < 20
    if proc.returncode == 0 or "allensdk" not in proc.stderr:
        pytest.fail(proc.stderr)
    assert proc.returncode == 2
    assert "make allen-env" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fetch_argv_round_trip():
    import argparse

    from neurozoo.allen.fetch import add_fetch_arguments

    words = ["ophys", "--out", "o", "--areas", "VISp", "VISl", "--depths", "175",
             "--window", "0.0", "0.4", "--offline", "--signal", "events",
             "--baseline", "-1.0", "0.0", "--min-reliability", "0.75"]
    parser = argparse.ArgumentParser()
    add_fetch_arguments(parser)
    first = parser.parse_args(words)
    again = parser.parse_args(_fetch_argv(first))
    assert vars(again) == vars(first)


# -- allensdk-free helpers ----------------------------------------------------

def test_window_bounds_match_brute_force():
    rng = np.random.default_rng(3)
    ts = np.cumsum(rng.uniform(0.030, 0.036, size=400)) + 5.0
    onsets = np.concatenate([ts[rng.integers(0, 400, 50)],
                             rng.uniform(ts[0] - 1, ts[-1] + 1, 50)])
    for window in [(0.0, 0.5), (0.1, 0.25), (-1.0, 0.0)]:
        start, stop = window_bounds(ts, onsets, window)
        period = np.median(np.diff(ts))
        for p, t in enumerate(onsets):
            inside = [k for k in range(len(ts))
                      if t + window[0] <= ts[k] < t + window[1]]
            leaves = t + window[0] < ts[0] or t + window[1] > ts[-1] + period
            if leaves or not inside:
                assert (start[p], stop[p]) == (-1, -1)
            else:
                assert (start[p], stop[p]) == (inside[0], inside[-1] + 1)


def test_window_means_with_baseline_match_brute_force():
    rng = np.random.default_rng(4)
    ts = np.arange(300) / 30.0
    traces = rng.normal(size=(3, 300))
    onsets = ts[[40, 100, 290, 10]]
    got = window_means(traces, ts, onsets, (0.0, 0.5), baseline_s=(-1.0, 0.0))
    for p, t in enumerate(onsets):
        resp = [k for k in range(300) if t <= ts[k] < t + 0.5]
        base = [k for k in range(300) if t - 1.0 <= ts[k] < t]
        if t - 1.0 < ts[0] or t + 0.5 > ts[-1] + 1 / 30:
            assert np.isnan(got[p]).all()
            continue
        want = traces[:, resp].mean(axis=1) - traces[:, base].mean(axis=1)
        np.testing.assert_allclose(got[p], want, rtol=1e-12)
    assert np.isnan(got[3]).all() and np.isnan(got[2]).all()
    assert np.isfinite(got[:2]).all()


def test_assemble_trials_brute_force():
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 4, size=30)
    resp = rng.normal(size=(30, 2))
    out = assemble_trials(idx, resp, 5)
    assert out.shape == (np.bincount(idx).max(), 5, 2)
    for i in range(5):
        rows = resp[idx == i]
        np.testing.assert_allclose(out[: len(rows), i], rows, rtol=1e-6)
        assert np.isnan(out[len(rows):, i]).all()


def test_depth_to_layer():
    got = depth_to_layer([175, 250, 275, 350, 375, 435, 550, 625, np.nan])
    assert got.tolist() == ["L2/3", "L4", "L4", "L5", "L5", "L5", "L6", "L6", ""]


def test_reliability_table_counts():
    da = _responses()
    rel = np.array([0.9, 0.7, np.nan, 0.8])
    rows = reliability_table(da, rel, 0.75)
    table = {(r["area"], r["layer"]): (r["n"], r["n_pass"]) for r in rows}
    assert table == {("VISl", "L2/3"): (1, 0), ("VISl", "L6"): (1, 1),
                     ("VISp", "L2/3"): (1, 1), ("VISp", "L5"): (1, 0),
                     ("all", "all"): (4, 2)}


def test_write_output_layout_round_trip(tmp_path):
    da = _responses()
    templates = [np.full((6, 7), k, np.uint8) for k in range(N_S)]
    out = write_output(tmp_path / "o", da, templates, da.stimulus_id.values,
                       {"source": "test"})
    assert validate_path(out) == []
    back = load_responses(out / "responses.nc")
    np.testing.assert_array_equal(back.values, da.values)
    stimuli = load_stimulus_set(out / "stimuli")
    assert stimuli.stimulus_ids == [str(i) for i in range(N_S)]
    assert np.asarray(stimuli.load_image(2)).tolist() == templates[2].tolist()
    assert '"source": "test"' in back.attrs["provenance"]
    assert (out / "provenance.json").is_file()
