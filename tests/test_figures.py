"""figures/plot_scores.py: the figure the pipeline draws, or an error that
names the metric; never an empty figure."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from neurozoo.errors import NeurozooError
from neurozoo.plotting import (
    best_layer_selection,
    plot_score_vs_depth,
    plot_scores_by_area,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "figures" / "plot_scores.py"


def _table() -> pd.DataFrame:
    """A scores table like a run's: ridge with held-out rows, CKA without."""
    rng = np.random.default_rng(0)
    rows = []
    for model, trained in (("torchvision:alexnet@random:0", False),
                           ("torchvision:mobilenet_v2@imagenet", True)):
        for area in ("VISp", "VISl"):
            for metric, selections in (
                    ("ridge_r_corrected", ("layer", "best_heldout", "in_sample_max")),
                    ("cka", ("layer", "in_sample_max"))):
                for selection in selections:
                    for li in range(4 if selection == "layer" else 1):
                        v = float(rng.uniform(0.2, 0.6))
                        rows.append({
                            "model_id": model, "trained": trained, "layer": f"l{li}",
                            "layer_index": li, "relative_depth": li / 3, "area": area,
                            "metric": metric, "selection": selection, "value": v,
                            "ci_low": v - 0.05, "ci_high": v + 0.05,
                            "n_neuroids": 30, "n_reliable": 25})
    return pd.DataFrame(rows)


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _script(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_by_area_falls_back_to_in_sample_max_like_the_pipeline(tmp_path):
    table = _table()
    table.to_csv(tmp_path / "scores.csv", index=False)
    assert best_layer_selection(table, "cka") == "in_sample_max"
    assert best_layer_selection(table, "ridge_r_corrected") == "best_heldout"
    ref = plot_scores_by_area(table, tmp_path / "ref.png", "cka", "in_sample_max")
    proc = _script("by-area", tmp_path / "scores.csv", tmp_path / "c.png",
                   "--metric", "cka")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(_pixels(tmp_path / "c.png"), _pixels(ref))
    # the held-out figure of ridge is a different one
    held = plot_scores_by_area(table, tmp_path / "held.png", "ridge_r_corrected")
    assert _pixels(held).shape != _pixels(ref).shape or (
        _pixels(held) != _pixels(ref)).any()


@pytest.mark.parametrize("kind", ["by-area", "vs-depth"])
def test_absent_metric_is_an_error_listing_the_metrics(kind, tmp_path):
    _table().to_csv(tmp_path / "scores.csv", index=False)
    proc = _script(kind, tmp_path / "scores.csv", tmp_path / "x.png",
                   "--metric", "bogus")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "'bogus'" in lines[0] and str(tmp_path / "scores.csv") in lines[0]
    assert "ridge_r_corrected, cka" in lines[0]
    assert not (tmp_path / "x.png").exists()


def test_library_refuses_rows_that_are_absent(tmp_path):
    table = _table()
    with pytest.raises(NeurozooError, match="metric 'cka' has no 'best_heldout' rows"):
        plot_scores_by_area(table, tmp_path / "a.png", "cka", "best_heldout")
    with pytest.raises(NeurozooError, match="no rows for metric 'pls_r'"):
        plot_score_vs_depth(table, tmp_path / "b.png", "pls_r")
    assert not list(tmp_path.glob("*.png"))


def test_score_vs_density_reads_the_checkpoints_metrics(tmp_path):
    import json

    table = _table()
    ids = []
    for name, density, acc in (("round_0", 1.0, 0.9), ("round_1", 0.4, 0.85)):
        folder = tmp_path / "imp" / name
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({
            "config_hash": "abc123", "config": {"method": "imp", "rewind": "lr"},
            "checkpoint": name,
            "weight_density": density, "mask_density": density,
            "test_accuracy": acc}))
        ids.append(f"torchvision:resnet18@file:{folder / 'model.pt'}")
    sparse = table[table.model_id == "torchvision:alexnet@random:0"]
    table = pd.concat([table] + [sparse.assign(model_id=i) for i in ids])
    table.to_csv(tmp_path / "scores.csv", index=False)
    script = REPO / "figures" / "plot_sparsity.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "density.png"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "scores.csv"),
                           str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _pixels(out).std() > 0
    from neurozoo.plotting import sparse_checkpoints

    ck = sparse_checkpoints(table)
    assert ck.model_id.tolist() == ids and ck.weight_density.tolist() == [1.0, 0.4]
    assert set(ck.label) == {"IMP, lr rewinding"}
    _table().to_csv(tmp_path / "plain.csv", index=False)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "plain.csv"),
                           str(tmp_path / "x.png")], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 2 and "sparsify checkpoint" in proc.stderr
    assert not (tmp_path / "x.png").exists()
