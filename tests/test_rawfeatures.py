"""Raw features on disk: the saved arrays against the network's outputs
captured directly, resuming, interruption, disk space and bad input."""

import json
import logging

import numpy as np
import pytest
import torch
from torch import nn

from neurozoo.cli import main
from neurozoo.config import RunConfig
from neurozoo.data.stimuli import load_stimulus_set
from neurozoo.errors import NeurozooError
from neurozoo.features import extract_summaries, preprocess_stimuli
from neurozoo.models import load_model
from neurozoo.rawfeatures import INDEX_NAME, load_features, save_features

MODEL = "torchvision:alexnet@random:0"
# features.0 is overwritten by the in-place ReLU after it
LAYERS = ["features.0", "features.5", "classifier.2"]


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL)


@pytest.fixture(scope="module")
def stimuli(small_dataset):
    return load_stimulus_set(small_dataset / "stimuli")


def _captured(loaded, stimuli, layers, batch_size):
    """The layers' outputs, cloned in forward hooks: the obvious reference."""
    images = preprocess_stimuli(stimuli, loaded.preprocessing)
    mods = dict(loaded.module.named_modules())
    got = {nm: [] for nm in layers}
    handles = [mods[nm].register_forward_hook(
        lambda _m, _i, o, nm=nm: got[nm].append(o.reshape(o.shape[0], -1).clone()))
        for nm in layers]
    try:
        with torch.inference_mode():
            for lo in range(0, len(images), batch_size):
                loaded.module(images[lo: lo + batch_size])
    finally:
        for h in handles:
            h.remove()
    return {nm: torch.cat(v).numpy() for nm, v in got.items()}


def test_saved_features_are_the_layer_outputs(model, stimuli, tmp_path):
    # the network as it is (the hooks of _captured see it so), bit for bit
    index = save_features(model, stimuli, tmp_path / "raw", layers=LAYERS,
                          batch_size=5, device="cpu", progress=False, layout="contiguous")
    ref = _captured(model, stimuli, LAYERS, batch_size=5)
    saved_index, feats = load_features(tmp_path / "raw")
    assert saved_index == json.loads((tmp_path / "raw" / INDEX_NAME).read_text())
    assert index["stimulus_ids"] == [str(s) for s in stimuli.stimulus_ids]
    assert [e["layer"] for e in index["layers"]] == LAYERS
    for nm in LAYERS:
        assert isinstance(feats[nm], np.memmap) and feats[nm].dtype == np.float32
        np.testing.assert_array_equal(np.asarray(feats[nm]), ref[nm])
        assert (tmp_path / "raw" / f"{nm}.npy.json").is_file()
    # Default layout (channels-last on the CPU): the usual feature order,
    # values within float32 rounding of the network as it is, and the same
    # numbers as the Gram summaries of an extraction in that layout
    save_features(model, stimuli, tmp_path / "auto", layers=LAYERS, batch_size=5,
                  device="cpu", progress=False)
    _, auto = load_features(tmp_path / "auto")
    assert json.loads((tmp_path / "auto" / f"{LAYERS[0]}.npy.json").read_text()
                      )["layout"] == "channels_last"
    summaries = extract_summaries(model, stimuli, layers=LAYERS, batch_size=5,
                                  device="cpu", progress=False)
    for nm in LAYERS:
        np.testing.assert_allclose(auto[nm], ref[nm], rtol=1e-4,
                                   atol=1e-5 * np.abs(ref[nm]).max())
        x = np.asarray(auto[nm], dtype=np.float64)
        np.testing.assert_allclose(summaries[nm].gram, x @ x.T, rtol=1e-12)
        np.testing.assert_allclose(summaries[nm].rowsum, x.sum(axis=1), rtol=1e-12)
    assert not list((tmp_path / "raw").glob(".*partial"))


def test_rerun_keeps_valid_files_and_redoes_the_others(model, stimuli, tmp_path,
                                                       monkeypatch):
    import neurozoo.rawfeatures as rf

    out = tmp_path / "raw"
    save_features(model, stimuli, out, layers=LAYERS, device="cpu", progress=False)
    before = (out / "features.5.npy").stat().st_mtime_ns
    written = []
    real = rf._write_pass

    def spy(module, todo, *args, **kwargs):
        written.append(list(todo))
        return real(module, todo, *args, **kwargs)

    monkeypatch.setattr(rf, "_write_pass", spy)
    save_features(model, stimuli, out, layers=LAYERS, device="cpu", progress=False)
    assert written == []
    (out / "classifier.2.npy").write_bytes(b"truncated")
    save_features(model, stimuli, out, layers=LAYERS, device="cpu", progress=False)
    assert written == [["classifier.2"]]
    assert (out / "features.5.npy").stat().st_mtime_ns == before
    _, feats = load_features(out, ["classifier.2"])
    ref = _captured(model, stimuli, ["classifier.2"], batch_size=32)
    np.testing.assert_allclose(feats["classifier.2"], ref["classifier.2"], rtol=1e-6,
                               atol=1e-6)


def test_interrupted_pass_leaves_no_file(model, stimuli, tmp_path):
    calls = {"n": 0}

    def boom(_m, _i, _o):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    handle = dict(model.module.named_modules())["features.5"].register_forward_hook(boom)
    try:
        with pytest.raises(KeyboardInterrupt):
            save_features(model, stimuli, tmp_path / "raw", layers=LAYERS, batch_size=8,
                          device="cpu", progress=False)
    finally:
        handle.remove()
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == []


def test_too_little_disk_space_is_an_error_before_writing(model, stimuli, tmp_path,
                                                          monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 1000))
    with pytest.raises(NeurozooError, match=r"needs 0\.\d+ GB in .*raw.* 0\.00 GB are free"):
        save_features(model, stimuli, tmp_path / "raw", layers=LAYERS, device="cpu",
                      progress=False)
    assert list((tmp_path / "raw").iterdir()) == []


def test_load_features_errors_name_the_problem(model, stimuli, tmp_path):
    with pytest.raises(NeurozooError, match="no features.json"):
        load_features(tmp_path)
    save_features(model, stimuli, tmp_path / "raw", layers=LAYERS[1:], device="cpu",
                  progress=False)
    with pytest.raises(NeurozooError, match="no layer features.9; it holds features.5, "
                                            "classifier.2"):
        load_features(tmp_path / "raw", ["features.9"])
    (tmp_path / "raw" / "features.5.npy").write_bytes(b"not numpy")
    with pytest.raises(NeurozooError, match="features.5.npy: not a readable .npy"):
        load_features(tmp_path / "raw", ["features.5"])


def test_save_features_config_field_and_stage_flag(small_dataset, tmp_path, cache_env,
                                                   capsys, caplog):
    with pytest.raises(NeurozooError, match="save_features.*true or false"):
        RunConfig(save_features="yes")
    cfg, run_dir = _cfg(small_dataset, tmp_path)
    with caplog.at_level(logging.INFO, logger="neurozoo"):
        assert main(["stage", "extract", "--config", str(cfg), "--data-dir",
                     str(run_dir / "data"), "--model", MODEL, "--out",
                     str(run_dir / "features" / "m.json"), "--save-features"]) == 0
    index = json.loads((run_dir / "features" / "m.json").read_text())
    assert index["extraction"]["save_features"] is True
    from neurozoo.features import resolve_device
    assert index["extraction"]["device"] == str(resolve_device(None))  # not "auto"
    assert index["raw_features"] == str(run_dir / "features" / "m")
    _, feats = load_features(index["raw_features"])
    assert sorted(feats) == sorted(LAYERS[1:])
    assert all(f.shape[0] == 24 for f in feats.values())
    assert "writing the raw features of 2 layers" in caplog.text


def test_a_layer_named_like_the_index_does_not_overwrite_it(model, stimuli, tmp_path):
    """AlexNet's `features` (the whole Sequential) is a valid layer: its sidecar
    must not be features.json, the folder's index."""
    save_features(model, stimuli, tmp_path / "raw", layers=["features", "classifier.2"],
                  device="cpu", progress=False)
    index, feats = load_features(tmp_path / "raw")
    assert [e["layer"] for e in index["layers"]] == ["features", "classifier.2"]
    assert feats["features"].shape == (len(stimuli), 256 * 6 * 6)
    assert (tmp_path / "raw" / "features.npy.json").is_file()


def test_a_layer_whose_rows_are_not_stimuli_is_refused(model, stimuli, tmp_path,
                                                       monkeypatch):
    """An output whose first dimension is not the batch would be written into
    the next stimuli's rows: it is an error that names the layer."""
    conv = dict(model.module.named_modules())["features.3"]
    real = conv.forward
    monkeypatch.setattr(conv, "forward",
                        lambda x: real(x) if x.shape[0] == 1 else real(x).flatten(0, 1))
    with pytest.raises(NeurozooError, match="layer features.3: a batch of 8 stimuli"):
        save_features(model, stimuli, tmp_path / "raw", layers=["features.3"],
                      batch_size=8, device="cpu", progress=False)
    assert not list((tmp_path / "raw").iterdir())

def _cfg(small_dataset, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"data": str(small_dataset / "responses.nc"),
                               "models": [MODEL], "layers": {MODEL: LAYERS[1:]},
                               "reliability_splits": 10, "batch_size": 8,
                               "scoring": {"n_bootstrap": 50, "n_folds": 4}}))
    run_dir = tmp_path / "run"
    assert main(["-q", "stage", "prepare", "--config", str(cfg), "--out",
                 str(run_dir / "data")]) == 0
    return cfg, run_dir


def test_stage_extract_out_without_json_suffix(small_dataset, tmp_path, cache_env):
    """--out features/m (no .json suffix): the raw features go to features/m-raw/
    (review: the folder was the index's own path, and writing the index failed)."""
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
    """A ModuleDict key may hold '/' (torch forbids only '.' and ''): the file
    name is made safe (review: the file went to a folder that does not exist)."""
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


def test_stale_partial_files_of_a_killed_run_are_removed(model, stimuli, tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    stale = out / ".features.9.npy.partial"  # SIGKILL leaves these behind
    stale.write_bytes(b"x" * 100)
    save_features(model, stimuli, out, layers=["features.5"], device="cpu",
                  progress=False)
    assert not stale.exists()


def test_output_folders_that_are_files_are_errors(model, stimuli, small_dataset,
                                                  tmp_path, cache_env, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(NeurozooError, match="afile exists and is not a folder"):
        save_features(model, stimuli, afile, layers=["features.5"], device="cpu",
                      progress=False)
    cfg, _ = _cfg(small_dataset, tmp_path)
    code = main(["-q", "run", "--config", str(cfg), "--out", str(afile / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "afile exists and is not a folder" in err
    assert len(err.strip().splitlines()) == 1


def test_a_broken_index_is_a_clear_error(model, stimuli, tmp_path):
    save_features(model, stimuli, tmp_path / "raw", layers=["features.5"], device="cpu",
                  progress=False)
    index = tmp_path / "raw" / INDEX_NAME
    good = json.loads(index.read_text())
    index.write_text("{not json")
    with pytest.raises(NeurozooError, match="features.json: not a valid index"):
        load_features(tmp_path / "raw")
    del good["layers"][0]["file"]
    index.write_text(json.dumps(good))
    with pytest.raises(NeurozooError, match="without 'file' or 'shape'"):
        load_features(tmp_path / "raw")
