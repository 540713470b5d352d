"""The CLI end to end on small real data: outputs, bad input, cache reuse."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from neurozoo.cli import main

MODEL = "torchvision:alexnet@random:0"
LAYERS = ["features.2", "features.5", "features.12", "classifier.2"]


def write_config(path, data_dir, **extra):
    cfg = {
        "data": str(data_dir / "responses.nc"),
        "models": [MODEL],
        "layers": {MODEL: LAYERS},
        "reliability_splits": 10,
        "batch_size": 8,
        "scoring": {"n_bootstrap": 50, "n_folds": 4},
    }
    cfg.update(extra)
    path.write_text(json.dumps(cfg))
    return path


def run_cli(args, capsys):
    code = main(["-q", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_writes_all_outputs_and_reuses_cache(small_dataset, tmp_path, cache_env,
                                                 capsys):
    cfg = write_config(tmp_path / "cfg.json", small_dataset)
    out = tmp_path / "res"
    code, stdout, _ = run_cli(["run", "--config", cfg, "--out", out], capsys)
    assert code == 0
    assert "VISp" in stdout and MODEL in stdout
    table = pd.read_csv(out / "scores.csv")
    assert set(table.area) == {"VISp", "VISl"}
    assert set(table.layer.dropna()) >= set(LAYERS)
    assert {"ridge_r", "ridge_r_corrected", "ridge_fev", "rsa", "rsa_ceiling"} <= set(
        table.metric)
    assert {"layer", "best_heldout", "in_sample_max"} <= set(table.selection)
    best = table[(table.selection == "best_heldout") & (table.metric == "ridge_r")]
    assert len(best) == 2 and (best.ci_low <= best.value).all()
    assert (best.value <= best.ci_high).all()
    per = pd.read_csv(out / "neuroid_scores.csv")
    assert len(per) == 60 and per.reliability.notna().all()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["neurozoo_version"] and prov["seed"] == 0
    assert prov["models"][MODEL]["weights_sha256"]
    made = prov["models"][MODEL]["made_by"]
    assert len(made) == 1 and made[0]["neurozoo_version"] == prov["neurozoo_version"]
    assert made[0]["layout"] == "channels_last" and prov["config"]["layout"] == "auto"
    assert prov["data"]["data_sha256"] and "total" in prov["timings_s"]
    for fig in ("scores_by_area.png", "score_vs_depth.png"):
        assert (out / "figures" / fig).stat().st_size > 10_000
    with xr.open_dataset(next((out / "scores").glob("*.nc")), engine="h5netcdf") as ds:
        assert ds["ridge_r"].shape == (len(LAYERS), 60)

    cached = sorted((cache_env / "summaries").glob("*.npz"))
    assert len(cached) == len(LAYERS)
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    scores_file = next((out / "scores").glob("*.csv"))
    score_stamp = scores_file.stat().st_mtime_ns
    # second run: everything reused
    assert run_cli(["run", "--config", cfg, "--out", out], capsys)[0] == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert scores_file.stat().st_mtime_ns == score_stamp
    # the reused summaries still name the run that made them
    assert json.loads((out / "provenance.json").read_text())["models"][MODEL][
        "made_by"] == made
    # delete one cache entry: only it is recomputed
    cached[0].unlink()
    assert run_cli(["run", "--config", cfg, "--out", out], capsys)[0] == 0
    assert cached[0].is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != cached[0])
    np.testing.assert_allclose(pd.read_csv(out / "scores.csv").value, table.value)


def _bad_case(kind, small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    cfg_extra = {}
    if kind == "missing_image":
        (data / "stimuli" / "img_003.png").unlink()
    elif kind == "corrupt_image":
        (data / "stimuli" / "img_004.png").write_bytes(b"not a png at all")
    elif kind == "corrupt_image_no_checksum":
        csv = pd.read_csv(data / "stimuli" / "stimuli.csv").drop(columns="sha256")
        csv.to_csv(data / "stimuli" / "stimuli.csv", index=False)
        (data / "stimuli" / "img_004.png").write_bytes(b"not a png at all")
    elif kind == "stimulus_count":
        with xr.open_dataset(data / "responses.nc", engine="h5netcdf") as ds:
            ds = ds.load()
        (data / "responses.nc").unlink()
        ds.isel(stimulus=slice(0, 23)).to_netcdf(data / "responses.nc", engine="h5netcdf")
    elif kind == "all_nan_neuroid":
        with xr.open_dataset(data / "responses.nc", engine="h5netcdf") as ds:
            ds = ds.load()
        ds["responses"][:, :, 5] = np.nan
        (data / "responses.nc").unlink()
        ds.to_netcdf(data / "responses.nc", engine="h5netcdf")
    elif kind == "stimulus_ids":
        csv = pd.read_csv(data / "stimuli" / "stimuli.csv")
        csv.loc[5, "stimulus_id"] = 999
        csv.to_csv(data / "stimuli" / "stimuli.csv", index=False)
    elif kind == "unknown_model":
        cfg_extra = {"models": ["torchvision:no_such_net@random:0"], "layers": {}}
    elif kind == "unknown_layer":
        cfg_extra = {"layers": {MODEL: ["features.2", "features.77"]}}
    elif kind == "unknown_transform":
        cfg_extra = {"models": [MODEL + "+shrink:2"], "layers": {}}
    return write_config(tmp_path / "cfg.json", data, **cfg_extra)


@pytest.mark.parametrize("kind,needle", [
    ("missing_image", "img_003.png"),
    ("corrupt_image", "img_004.png"),
    ("corrupt_image_no_checksum", "img_004.png"),
    ("stimulus_count", "23 stimuli in the responses but 24"),
    ("all_nan_neuroid", "no finite response"),
    ("stimulus_ids", "'999'"),
    ("unknown_model", "no_such_net"),
    ("unknown_layer", "features.77"),
    ("unknown_transform", "shrink"),
])
def test_bad_input_fails_cleanly(kind, needle, small_dataset, tmp_path, cache_env,
                                 capsys):
    cfg = _bad_case(kind, small_dataset, tmp_path)
    out = tmp_path / "res"
    code, stdout, stderr = run_cli(["run", "--config", cfg, "--out", out], capsys)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurozoo: error:")
    assert needle in lines[0]
    assert "Traceback" not in stderr
    assert not out.exists()  # no partial results


def test_too_many_folds_for_the_stimuli_is_an_error(small_dataset, tmp_path, capsys):
    import xarray as xr

    n = xr.open_dataset(small_dataset / "responses.nc").sizes["stimulus"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {small_dataset / 'responses.nc'}\n"
                   f"stimuli: {small_dataset / 'stimuli'}\n"
                   f"scoring:\n  n_folds: {n // 3 + 1}\n")
    code, _, stderr = run_cli(["run", "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert code == 2
    assert "scoring.n_folds" in stderr and f"at most {n // 3} folds" in stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_invalid_yaml_and_missing_gpu_fail_before_writing(tmp_path, capsys):
    import torch

    cfg = tmp_path / "c.yaml"
    cfg.write_text("scoring:\n  n_folds: [3\n")
    code, _, stderr = run_cli(["run", "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "not valid YAML at line" in stderr
    assert len(stderr.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        code, _, stderr = run_cli(["run", "--device", "cuda", "--models", "alexnet_random",
                                   "--areas", "VISp", "--out", tmp_path / "o"], capsys)
        assert code == 2 and "config field 'device' (--device)" in stderr
    assert not (tmp_path / "o").exists()


def test_bad_config_field_is_named(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("scoring:\n  n_folds: 1\n")
    code, _, stderr = run_cli(["run", "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "scoring.n_folds" in stderr
    cfg.write_text("colour: blue\n")
    code, _, stderr = run_cli(["run", "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "colour" in stderr
    cfg.write_text("layout: nhwc\n")
    code, _, stderr = run_cli(["run", "--config", cfg, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "config field 'layout'" in stderr and "channels_last" in stderr
    with pytest.raises(SystemExit):  # argparse: the valid choices
        run_cli(["run", "--layout", "nhwc", "--out", tmp_path / "o"], capsys)
    assert "invalid choice: 'nhwc'" in capsys.readouterr().err


def test_stages_chain_like_a_workflow_engine(small_dataset, tmp_path, cache_env, capsys):
    cfg = write_config(tmp_path / "cfg.json", small_dataset)
    run_dir = tmp_path / "run"
    assert run_cli(["stage", "prepare", "--config", cfg, "--out", run_dir / "data"],
                   capsys)[0] == 0
    assert run_cli(["stage", "extract", "--config", cfg, "--data-dir", run_dir / "data",
                    "--model", MODEL, "--out", run_dir / "features" / "m.json"],
                   capsys)[0] == 0
    assert run_cli(["stage", "score", "--config", cfg, "--data-dir", run_dir / "data",
                    "--features", run_dir / "features" / "m.json",
                    "--out", run_dir / "scores" / "m.csv"], capsys)[0] == 0
    assert run_cli(["stage", "aggregate", "--config", cfg, "--scores",
                    run_dir / "scores" / "m.csv", "--out", run_dir], capsys)[0] == 0
    code, stdout, _ = run_cli(["stage", "plot", "--table", run_dir / "scores.csv",
                               "--out", run_dir / "figures"], capsys)
    assert code == 0 and "scores_by_area.png" in stdout
    assert (run_dir / "provenance.json").is_file()


def test_aggregate_provenance_records_what_was_aggregated(small_dataset, tmp_path,
                                                          cache_env, capsys):
    """Aggregate run without --config/--models/--areas (its config is the default
    zoo on all areas): the provenance still names the one model and area that
    the score table holds, and the scoring settings the scores were made with."""
    cfg = write_config(tmp_path / "cfg.json", small_dataset, areas=["VISp"],
                       layers={MODEL: LAYERS[:2]})
    run_dir = tmp_path / "run"
    stages = [
        ["prepare", "--config", cfg, "--out", run_dir / "data"],
        ["extract", "--config", cfg, "--data-dir", run_dir / "data", "--model", MODEL,
         "--out", run_dir / "features" / "m.json"],
        ["score", "--config", cfg, "--data-dir", run_dir / "data",
         "--features", run_dir / "features" / "m.json", "--out", run_dir / "scores" / "m.csv"],
        ["aggregate", "--scores", run_dir / "scores" / "m.csv", "--out", run_dir],
    ]
    for stage in stages:
        assert run_cli(["stage", *stage], capsys)[0] == 0, stage[0]
    table = pd.read_csv(run_dir / "scores.csv")
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["config"]["models"] == sorted(set(table.model_id)) == [MODEL]
    assert prov["config"]["areas"] == sorted(set(table.area)) == ["VISp"]
    written = json.loads((run_dir / "scores" / "m.json").read_text())
    scoring = written["provenance"]["scoring"]
    assert scoring["n_folds"] == 4 and scoring["n_bootstrap"] == 50
    assert prov["config"]["scoring"] == scoring
    assert prov["models"][MODEL]["scoring"] == scoring
    assert prov["seed"] == scoring["seed"]
    # extraction settings and data: those the stages ran with, not the
    # aggregate's own defaults (batch 32, the bundled data, default layers)
    assert prov["config"]["layers"] == {MODEL: LAYERS[:2]}
    assert prov["config"]["batch_size"] == 8
    assert prov["config"]["data"] == str(small_dataset / "responses.nc")
    assert prov["models"][MODEL]["extraction"]["layers"] == LAYERS[:2]


def test_closed_stdout_exits_quietly(tmp_path):
    """`neurozoo layers MODEL | head -2`: the reader goes away before the
    output is written; no traceback, exit status 141 (128 + SIGPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # no reader at all: the first write to stdout fails
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "neurozoo.cli", "layers", MODEL], stdout=write_end,
            stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    assert proc.returncode == 141, proc.stderr


def test_sigterm_stops_like_ctrl_c(monkeypatch, capsys):
    """SLURM and Snakemake stop jobs with SIGTERM: the same clean-up as Ctrl-C
    runs (temporary files removed), then exit status 143."""
    import signal

    import neurozoo.cli as cli

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli, "cmd_models",
                        lambda args: os.kill(os.getpid(), signal.SIGTERM) or 0)
    code, _, stderr = run_cli(["models"], capsys)
    assert code == 143 and "terminated; rerun to resume" in stderr
    assert signal.getsignal(signal.SIGTERM) is before


def test_layout_choices_are_the_library_s():
    from neurozoo.cli import build_parser
    from neurozoo.features import LAYOUTS

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    (action,) = [a for a in run._actions if a.dest == "layout"]
    assert tuple(action.choices) == LAYOUTS
