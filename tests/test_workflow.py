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
