"""The Snakemake workflow runs the stage entrypoints as separate jobs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL = "torchvision:alexnet@random:0"


def test_snakemake_runs_every_stage(small_dataset, tmp_path, cache_env):
    pytest.importorskip("snakemake", reason="install the 'workflow' or 'test' extra")
    zoo = tmp_path / "zoo.json"
    zoo.write_text(json.dumps({
        "data": str(small_dataset / "responses.nc"),
        "models": [MODEL, "torchvision:resnet18@random:1"],
        "layers": {MODEL: ["features.5", "classifier.2"],
                   "torchvision:resnet18@random:1": ["layer2.1", "avgpool"]},
        "reliability_splits": 5,
        "scoring": {"n_bootstrap": 20, "n_folds": 3,
                    "methods": ["ridge", "pls", "rsa", "cka"]},
    }))
    out = tmp_path / "out"
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "pipelines" / "Snakefile"),
         "--cores", "1", "--directory", str(tmp_path), "--quiet",
         "--config", f"zoo={zoo}", f"out={out}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_csv(out / "scores.csv")
    assert set(table.model_id) == {MODEL, "torchvision:resnet18@random:1"}
    assert {"ridge_r", "pls_r", "rsa", "cka"} <= set(table.metric)
    assert (out / "figures" / "scores_by_area.png").is_file()
    assert len(list((out / "features").glob("*.json"))) == 2
    assert json.loads((out / "provenance.json").read_text())["config"]["scoring"]["n_folds"] == 3


def test_snakemake_trains_and_scores_sparse_models(small_dataset, tmp_path, cache_env):
    pytest.importorskip("snakemake", reason="install the 'workflow' or 'test' extra")
    import yaml

    zoo = tmp_path / "zoo.json"
    zoo.write_text(json.dumps({
        "data": str(small_dataset / "responses.nc"), "models": [MODEL],
        "layers": {MODEL: ["classifier.2"]}, "reliability_splits": 5,
        "scoring": {"n_bootstrap": 20, "n_folds": 3}}))
    sparse = tmp_path / "snip.yaml"
    sparse.write_text(yaml.safe_dump({
        "model": "torchvision:resnet18@random:0", "method": "oneshot",
        "criterion": "snip", "density": 0.3, "image_size": 16,
        "train": {"steps": 6, "batch_size": 32}}))
    out = tmp_path / "out"
    settings = tmp_path / "snake.yaml"
    settings.write_text(yaml.safe_dump({"zoo": str(zoo), "out": str(out),
                                        "sparsify": {"snip": str(sparse)}}))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "pipelines" / "Snakefile"),
         "--cores", "1", "--directory", str(tmp_path), "--quiet",
         "--configfile", str(settings)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = (out / "sparsify" / "snip" / "models.txt").read_text().split()
    assert [i.rsplit("/", 2)[-2] for i in ids] == ["pruned", "trained"]
    table = pd.read_csv(out / "scores.csv")
    assert set(table.model_id) == {MODEL, *ids}
    best = table[(table.selection == "best_heldout") & (table.metric == "ridge_r")]
    assert best.value.notna().all() and len(best) == 6
