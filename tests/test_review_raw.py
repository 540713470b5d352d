"""Review reproductions for raw features (save_features / stage extract)."""

import json

import pytest
import torch
from torch import nn

from neurozoo.cli import main
from neurozoo.data.stimuli import load_stimulus_set
from neurozoo.models import load_model
from neurozoo.rawfeatures import save_features

MODEL = "torchvision:alexnet@random:0"
LAYERS = ["features.5", "classifier.2"]


def _cfg(small_dataset, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"data": str(small_dataset / "responses.nc"),
                               "models": [MODEL], "layers": {MODEL: LAYERS},
                               "reliability_splits": 10, "batch_size": 8,
                               "scoring": {"n_bootstrap": 50, "n_folds": 4}}))
    run_dir = tmp_path / "run"
    assert main(["-q", "stage", "prepare", "--config", str(cfg), "--out",
                 str(run_dir / "data")]) == 0
    return cfg, run_dir


def test_stage_extract_out_without_json_suffix(small_dataset, tmp_path, cache_env):
    """--out features/m (no .json): the raw folder is the index path itself."""
    cfg, run_dir = _cfg(small_dataset, tmp_path)
    out = run_dir / "features" / "m"
    rc = main(["-q", "stage", "extract", "--config", str(cfg), "--data-dir",
               str(run_dir / "data"), "--model", MODEL, "--out", str(out),
               "--save-features"])
    assert rc == 0 and out.is_file()
    index = json.loads(out.read_text())
    assert index["raw_features"] == str(out) + "-raw"
    assert (out.parent / "m-raw" / "features.json").is_file()


def test_layer_names_unsafe_as_file_names(small_dataset, tmp_path):
    """A ModuleDict key may hold '/' (torch forbids only '.' and ''): the layer's
    file goes to a subfolder that does not exist, after the stale stamps went."""
    loaded = load_model(MODEL)
    stimuli = load_stimulus_set(small_dataset / "stimuli")
    old = loaded.module.classifier
    loaded.module.classifier = nn.ModuleDict({"a/b": old})
    loaded.module.forward = lambda x, m=loaded.module: m.classifier["a/b"](
        torch.flatten(m.avgpool(m.features(x)), 1))
    save_features(loaded, stimuli, tmp_path / "raw", layers=["classifier.a/b"],
                  device="cpu", progress=False)
    from neurozoo.rawfeatures import load_features

    index, feats = load_features(tmp_path / "raw")
    assert feats["classifier.a/b"].shape == (len(stimuli), 1000)
    assert all("/" not in e["file"] for e in index["layers"])
    assert index["layers"][0]["file"].startswith("classifier.a_b-")
