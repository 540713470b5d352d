"""The bundled data: checksums, content, and faithfulness to the upstream files."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurozoo.data import load_bundled
from neurozoo.data.bundled import build_bundle, default_bundle_path, verify_bundle
from neurozoo.errors import NeurozooError

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "allen_npx_natural_scenes"


def test_bundle_counts(bundled):
    responses, stimuli = bundled
    assert responses.dims == ("trial", "stimulus", "neuroid")
    assert responses.shape == (50, 118, 4312) and len(stimuli) == 118
    per_area = dict(zip(*np.unique(responses.coords["area"].values, return_counts=True)))
    assert per_area == {"VISp": 1139, "VISl": 483, "VISal": 886, "VISrl": 655,
                        "VISam": 638, "VISpm": 511}
    assert len(np.unique(responses.coords["specimen_id"].values)) == 28
    # RL_718643567 has 47 trials: the last three repeats are NaN, nothing else is
    rec = np.asarray(responses.coords["recording"].values) == "RL_718643567"
    values = responses.values
    assert np.isnan(values[47:, :, rec]).all() and np.isfinite(values[:47, :, rec]).all()
    assert np.isfinite(values[:, :, ~rec]).all()


def test_corrupt_bundle_is_detected(tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), copy)
    victim = next((copy / "responses").glob("*.npz"))
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(NeurozooError, match=f"{victim.name} is corrupt"):
        verify_bundle(copy)
    victim.unlink()
    with pytest.raises(NeurozooError, match="missing"):
        load_bundled(copy)


@pytest.mark.skipif(not RAW.is_dir(), reason="upstream raw files not present here")
def test_bundle_equals_upstream_files(bundled):
    """Bit for bit: rates, unit order, trial counts and pixels."""
    import csv
    import json

    responses, stimuli = bundled
    with open(RAW / "index.csv") as f:
        index = list(csv.DictReader(f))
    recs = np.asarray(responses.coords["recording"].values)
    for row in index[::7]:
        raw = np.load(RAW / row["file"])
        meta = json.loads((RAW / row["file"]).with_suffix(".json").read_text())
        stem = Path(row["file"]).stem
        ours = responses.values[: raw.shape[0], :, recs == stem]
        np.testing.assert_array_equal(ours, raw)
        assert [int(u) for u in responses.coords["unit_id"].values[recs == stem]] == \
            meta["unit_ids"]
    for i in (0, 57, 117):
        with Image.open(RAW / "stimuli_images" / f"stimulus_{i}.png") as im:
            raw = np.asarray(im)[..., 0]
        np.testing.assert_array_equal(np.asarray(stimuli.load_image(i)), raw)


@pytest.mark.skipif(not RAW.is_dir(), reason="upstream raw files not present here")
def test_build_script_reproduces_the_bundle(tmp_path):
    """Rebuild two recordings from the raw files: same checksums as shipped."""
    src = tmp_path / "src"
    (src / "responses").mkdir(parents=True)
    shutil.copytree(RAW / "stimuli_images", src / "stimuli_images")
    lines = (RAW / "index.csv").read_text().splitlines()
    keep = [lines[0]] + [ln for ln in lines[1:] if "RL_718643567" in ln or
                         "AL_717038288" in ln]
    (src / "index.csv").write_text("\n".join(keep) + "\n")
    for ln in keep[1:]:
        f = ln.split(",")[0]
        shutil.copy(RAW / f, src / f)
        shutil.copy((RAW / f).with_suffix(".json"), (src / f).with_suffix(".json"))
    manifest = build_bundle(src, tmp_path / "out")
    shipped = verify_bundle(default_bundle_path())["files"]
    for rel, digest in manifest["files"].items():
        if rel.startswith(("responses/", "stimuli/stimulus_")):
            assert shipped[rel] == digest, rel
