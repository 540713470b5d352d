"""Streamed per-layer summaries against explicit features; layer rules; cache."""

import numpy as np
import pytest
import torch
from torch import nn

from neurozoo.errors import NeurozooError
from neurozoo.features import (
    LayerSummary,
    _groups,
    candidate_layers,
    check_gram,
    choose_layout,
    default_layers,
    extract_projections,
    extract_summaries,
    gram_from_features,
    preprocess_stimuli,
)
from neurozoo.models import load_model


@pytest.fixture(scope="module")
def small_stimuli(bundled):
    _, stimuli = bundled
    return stimuli.subset(stimuli.stimulus_ids[:10])


def explicit_features(loaded, stimuli, layers):
    """All stimuli in one batch; plain hooks keeping full activations."""
    images = preprocess_stimuli(stimuli, loaded.preprocessing)
    mods = dict(loaded.module.named_modules())
    feats = {}
    handles = [
        mods[n].register_forward_hook(
            lambda m, i, o, n=n: feats.__setitem__(n, o.detach().clone()))
        for n in layers
    ]
    with torch.no_grad():
        loaded.module(images)
    for h in handles:
        h.remove()
    return {n: feats[n].reshape(len(stimuli), -1).double().numpy() for n in layers}


def test_streamed_summaries_match_explicit_features(small_stimuli, tmp_path):
    loaded = load_model("torchvision:resnet18@random:0")
    # An 8 MB budget cuts conv1 (10 x 802,816 float32 = 32 MB) into feature
    # blocks, one pass each, and groups the later layers; batches of 3 stimuli.
    budget = 8 * 2**20
    assert [len(g) for g in _groups([("conv1", (64, 112, 112))], 10, budget)] == [1] * 4
    got = extract_summaries(loaded, small_stimuli, batch_size=3, memory_budget=budget,
                            cache_dir=tmp_path, progress=False)
    want = explicit_features(loaded, small_stimuli, list(got))
    assert list(got)[0] == "conv1" and list(got)[-1] == "fc"
    for name, s in got.items():
        x = want[name]
        np.testing.assert_allclose(s.gram, x @ x.T, rtol=1e-5,
                                   atol=1e-5 * np.abs(x @ x.T).max())
        np.testing.assert_allclose(s.rowsum, x.sum(1), rtol=1e-5,
                                   atol=1e-5 * np.abs(x).sum(1).max())
        assert s.n_features == x.shape[1]


def test_inplace_activation_does_not_leak_into_previous_layer(small_stimuli):
    """AlexNet's ReLUs are in place: the conv summary must be pre-activation."""
    loaded = load_model("torchvision:alexnet@random:1")
    got = extract_summaries(loaded, small_stimuli, layers=["features.0", "features.1"],
                            progress=False)
    conv = got["features.0"].rowsum
    relu = got["features.1"].rowsum
    assert (conv < relu).all()  # negative pre-activations were summed for conv


def test_gram_chunking_is_exact():
    x = torch.randn(7, 1001)
    ref = x.double() @ x.double().T
    np.testing.assert_allclose(gram_from_features(x, chunk_bytes=8 * 7 * 13), ref,
                               atol=1e-10)


def test_default_layer_rule_on_resnet():
    loaded = load_model("torchvision:resnet18@random:0")
    names = [n for n, _ in default_layers(loaded.module, torch.zeros(1, 3, 64, 64))]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1.0", "layer1.1",
                     "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0",
                     "layer4.1", "avgpool", "fc"]
    assert "layer1.0.conv1" not in candidate_layers(loaded.module)


def test_default_layers_skip_dropout_and_reused_modules():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 4)
            self.act = torch.nn.ReLU()
            self.drop = torch.nn.Dropout()
            self.b = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.b(self.drop(self.act(self.a(self.act(x)))))

    names = [n for n, _ in default_layers(Net(), torch.zeros(1, 4))]
    assert names == ["a", "b"]


def test_unknown_layer_is_an_error(small_stimuli):
    loaded = load_model("torchvision:alexnet@random:0")
    with pytest.raises(NeurozooError, match="unknown layer 'features.99'"):
        extract_summaries(loaded, small_stimuli, layers=["features.99"], progress=False)


def test_cache_reuse_and_single_entry_recompute(small_stimuli, tmp_path):
    loaded = load_model("torchvision:alexnet@random:0")
    layers = ["features.0", "features.5", "classifier.1"]
    first = extract_summaries(loaded, small_stimuli, layers=layers, cache_dir=tmp_path,
                              progress=False)
    files = sorted(tmp_path.glob("*.npz"))
    assert len(files) == 3
    stamps = {f: f.stat().st_mtime_ns for f in files}
    victim = files[1]
    victim.unlink()
    second = extract_summaries(loaded, small_stimuli, layers=layers, cache_dir=tmp_path,
                               batch_size=4, progress=False)
    # reused entries report the run that made them, not this one
    made = {name: second[name].meta["batch_size"] for name in layers}
    assert sorted(made.values()) == [4, 32, 32]
    assert LayerSummary.load(victim).meta["batch_size"] == 4
    assert all(second[name].meta["created_utc"] and second[name].meta["device"] == "cpu"
               for name in layers)
    for f in files:
        assert f.is_file()
        if f != victim:
            assert f.stat().st_mtime_ns == stamps[f]  # untouched: reused
    for name in layers:
        np.testing.assert_array_equal(first[name].gram, second[name].gram)
    # a corrupt entry is recomputed, not used
    files[0].write_bytes(b"garbage")
    third = extract_summaries(loaded, small_stimuli, layers=layers, cache_dir=tmp_path,
                              progress=False)
    np.testing.assert_array_equal(third[layers[0]].gram, first[layers[0]].gram)
    LayerSummary.load(files[0])


def test_cache_entries_without_or_with_broken_meta_still_load(small_stimuli, tmp_path):
    import json

    from neurozoo.features import _write_npz
    from neurozoo.pipeline import _made_by

    loaded = load_model("torchvision:alexnet@random:0")
    s = extract_summaries(loaded, small_stimuli, layers=["classifier.6"],
                          progress=False)["classifier.6"]
    fields = dict(gram=s.gram, rowsum=s.rowsum, n_features=s.n_features,
                  shape=np.asarray(s.shape), index=s.index,
                  relative_depth=s.relative_depth, layer=s.layer)
    old_meta = {"model_id": "m", "layer": "classifier.6", "version": 1, "device": "cpu"}
    _write_npz(tmp_path / "old.npz", old_meta, **fields)  # before runs were recorded
    old = LayerSummary.load(tmp_path / "old.npz")
    assert old.meta == old_meta and _made_by(old.meta) == {}
    np.testing.assert_array_equal(old.gram, s.gram)
    with open(tmp_path / "broken.npz", "wb") as f:
        np.savez(f, meta="{not json", **fields)
    assert LayerSummary.load(tmp_path / "broken.npz").meta == {}
    assert _made_by(s.meta) == {k: s.meta[k] for k in
                                ("device", "batch_size", "layout", "neurozoo_version",
                                 "created_utc")}
    json.dumps(s.meta)  # plain JSON types only
    # a projection's meta makes the same round trip
    from neurozoo.features import LayerProjection, extract_projections

    p = extract_projections(loaded, small_stimuli, layers=["features.12"],
                            n_components=16, cache_dir=tmp_path, progress=False)
    back = LayerProjection.load(_only_projection(tmp_path))
    assert back.meta == p["features.12"].meta and back.meta["k"] == 16


def _only_projection(folder):
    found = [f for f in folder.glob("*.npz") if f.name not in ("old.npz", "broken.npz")]
    assert len(found) == 1
    return found[0]


def test_corrupt_cache_entry_is_reported_as_corrupt_and_recomputed(small_stimuli, tmp_path,
                                                                    caplog):
    """Garbage, a truncated archive, an empty file, an archive without its
    Gram matrix: each warning names the entry and says it is corrupt (not
    numpy's "pickled data"), and the entry is recomputed to the same values."""
    import logging
    import re
    import zipfile

    from neurozoo.features import LayerProjection

    loaded = load_model("torchvision:alexnet@random:0")
    layers = ["features.0", "features.3", "features.5", "features.8"]
    first = extract_summaries(loaded, small_stimuli, layers=layers, cache_dir=tmp_path,
                              progress=False)
    files = {LayerSummary.load(f).layer: f for f in tmp_path.glob("*.npz")}
    files["features.0"].write_bytes(b"garbage")
    files["features.3"].write_bytes(files["features.3"].read_bytes()[:2000])
    files["features.5"].write_bytes(b"")
    with zipfile.ZipFile(files["features.8"], "w") as z:  # a valid archive, no gram
        z.writestr("layer.npy", b"")
    for path in files.values():
        with pytest.raises(NeurozooError, match=re.escape(f"cache entry {path} is corrupt")):
            LayerSummary.load(path)
    with pytest.raises(NeurozooError, match="is corrupt: not an .npz archive"):
        LayerProjection.load(files["features.0"])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="neurozoo.features"):
        again = extract_summaries(loaded, small_stimuli, layers=layers,
                                  cache_dir=tmp_path, progress=False)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "cache entry" in r.getMessage()]
    assert len(warnings) == 4
    for layer, path in files.items():
        (msg,) = [w for w in warnings if str(path) in w]
        assert "is corrupt" in msg and "recomputing" in msg and "pickled" not in msg
        np.testing.assert_array_equal(again[layer].gram, first[layer].gram)
    assert LayerSummary.load(files["features.0"]).layer == "features.0"  # rewritten


def test_gram_checks():
    with pytest.raises(NeurozooError, match="not symmetric"):
        check_gram(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(NeurozooError, match="non-finite"):
        check_gram(np.array([[np.nan, 0.0], [0.0, 1.0]]))


@pytest.mark.parametrize("n,p,chunk,threads,dtype,transposed", [
    (13, 1000, 13 * 8 * 70, 2, torch.float32, False),   # several chunks, 2 threads
    (13, 1000, 13 * 8 * 70, 1, torch.float32, False),   # one thread
    (9, 3000, 1 << 23, 2, torch.float16, False),        # half precision input
    (11, 700, 11 * 8 * 256, 2, torch.float32, True),    # non-contiguous input
    (600, 1000, 1 << 23, 2, torch.float32, False),      # n > 512: BLAS threads
])
def test_gram_rowsum_paths_match_brute_force(n, p, chunk, threads, dtype, transposed):
    from neurozoo.features import gram_rowsum_from_features

    rng = np.random.default_rng(n + p)
    x = torch.from_numpy(rng.normal(size=(p, n) if transposed else (n, p))
                         .astype(np.float32)).to(dtype)
    if transposed:
        x = x.T
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gram, rowsum = gram_rowsum_from_features(x, chunk_bytes=chunk)
    finally:
        torch.set_num_threads(before)
    x64 = x.double().numpy()
    ref = np.array([[sum(x64[i, k] * x64[j, k] for k in range(p)) for j in range(n)]
                    for i in range(n)]) if n <= 13 else x64 @ x64.T
    np.testing.assert_allclose(gram.numpy(), ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(gram.numpy(), gram.numpy().T)
    np.testing.assert_allclose(rowsum.numpy(), x64.sum(axis=1), rtol=1e-12)
    assert gram.dtype == torch.float64 and rowsum.dtype == torch.float64


@pytest.mark.parametrize("threads", [1, 2])
def test_gram_rowsum_many_matches_one_layer_at_a_time(threads):
    """Several layers in one pool: layers of one chunk and of many, row
    blocks that differ between layers, against float64 numpy per layer."""
    from neurozoo.features import gram_rowsum_many

    rng = np.random.default_rng(3)
    n = 12
    layers = [
        torch.from_numpy(rng.normal(size=(n, 5000)).astype(np.float32)),  # many chunks
        [torch.from_numpy(rng.normal(size=(k, 300)).astype(np.float32))  # one chunk
         for k in (5, 5, 2)],
        [torch.from_numpy(rng.normal(size=(k, 900)).astype(np.float32))  # other blocks
         for k in (7, 5)],
    ]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = gram_rowsum_many(layers, chunk_bytes=(n + 1) * 8 * 256)
    finally:
        torch.set_num_threads(before)
    assert len(out) == 3
    for x, (gram, rowsum) in zip(layers, out):
        x64 = (torch.cat(x) if isinstance(x, list) else x).double().numpy()
        np.testing.assert_allclose(gram.numpy(), x64 @ x64.T, rtol=1e-12, atol=1e-10)
        np.testing.assert_array_equal(gram.numpy(), gram.numpy().T)
        np.testing.assert_allclose(rowsum.numpy(), x64.sum(axis=1), rtol=1e-12,
                                   atol=1e-10)
    with pytest.raises(NeurozooError, match="different numbers of rows"):
        gram_rowsum_many([layers[0], layers[0][:5]])


def test_outputs_modified_in_place_are_found_by_the_probe():
    from neurozoo.features import modified_in_place

    loaded = load_model("torchvision:alexnet@random:0")
    names = [n for n, _ in default_layers(loaded.module, torch.zeros(1, 3, 224, 224))]
    found = modified_in_place(loaded.module, names, torch.zeros(1, 3, 224, 224))
    # every convolution and the first two linear layers feed an in-place ReLU
    assert found == {"features.0", "features.3", "features.6", "features.8",
                     "features.10", "classifier.1", "classifier.4"}


def test_in_place_addition_in_a_block_is_copied_and_exact(small_stimuli):
    """ResNet's blocks add the shortcut into bn2's output in place (a write
    in forward(), not a module): the probe finds it, extraction copies the
    output, and the Gram matrix is that of the values before the addition."""
    from neurozoo.features import modified_in_place

    loaded = load_model("torchvision:resnet18@random:0")
    layers = ["layer1.0.bn2", "layer1.0"]
    assert modified_in_place(loaded.module, layers, torch.zeros(1, 3, 64, 64)) == {
        "layer1.0.bn2"}
    got = extract_summaries(loaded, small_stimuli, layers=layers, batch_size=4,
                            progress=False)
    want = explicit_features(loaded, small_stimuli, layers)
    for name in layers:
        x = want[name]
        np.testing.assert_allclose(got[name].gram, x @ x.T, rtol=1e-5,
                                   atol=1e-5 * np.abs(x @ x.T).max())


class _BatchInplaceReLU(torch.nn.Module):
    """A ReLU that writes in place only on batches of more than one input: the
    one-image probe cannot see the write; the check after the pass must."""

    def forward(self, x):
        return torch.relu_(x) if x.shape[0] > 1 else torch.relu(x)


def test_in_place_write_missed_by_the_probe_triggers_a_rerun_with_copies(
        small_stimuli, caplog):
    loaded = load_model("torchvision:alexnet@random:2")
    loaded.module.features[1] = _BatchInplaceReLU()
    with caplog.at_level("WARNING", logger="neurozoo.features"):
        # features.2 makes the pass run through the ReLU
        got = extract_summaries(loaded, small_stimuli, layers=["features.0", "features.2"],
                                batch_size=4, progress=False)
    assert "modified in place during the pass" in caplog.text
    x = explicit_features(loaded, small_stimuli, ["features.0"])["features.0"]
    assert (x < 0).any()  # pre-activation values survive in the reference
    np.testing.assert_allclose(got["features.0"].gram, x @ x.T, rtol=1e-5,
                               atol=1e-5 * np.abs(x @ x.T).max())


def test_threaded_preprocessing_equals_serial_and_names_a_bad_image(small_stimuli, tmp_path):
    from neurozoo.data.stimuli import StimulusSet

    loaded = load_model("torchvision:alexnet@random:0")
    serial = preprocess_stimuli(small_stimuli, loaded.preprocessing, workers=1)
    threaded = preprocess_stimuli(small_stimuli, loaded.preprocessing, workers=3)
    assert serial.shape == (10, 3, 224, 224)
    assert torch.equal(serial, threaded)
    # an undecodable file in the middle of the set: the error names it
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    paths = list(small_stimuli.paths)
    paths[6] = bad
    broken = StimulusSet(small_stimuli.stimulus_ids, paths)
    with pytest.raises(NeurozooError, match=f"stimulus {small_stimuli.stimulus_ids[6]}: "
                                            "cannot decode image"):
        preprocess_stimuli(broken, loaded.preprocessing, workers=3)


def test_exact_float32_turns_tf32_off_on_gpus_only_and_restores_it():
    from neurozoo.features import exact_float32

    knobs = [torch.backends.cudnn.conv, torch.backends.cudnn.rnn,
             torch.backends.cuda.matmul]
    before = [k.fp32_precision for k in knobs]
    assert before[0] == "tf32"  # torch's default for cuDNN convolutions
    with exact_float32(torch.device("cpu")):
        assert [k.fp32_precision for k in knobs] == before
    with exact_float32(torch.device("cuda")):  # flags only: no GPU needed
        assert [k.fp32_precision for k in knobs] == ["ieee"] * 3
    assert [k.fp32_precision for k in knobs] == before


def test_gram_rowsum_many_holds_few_sums_per_worker():
    """Memory: with W workers and L layers of several chunks, the workers together
    hold about L + W partial sums of (n+1)^2, not W * L (review: with 16
    threads and AlexNet's 19 layers at n = 512 the pool held 0.3 GB, 4x the
    one-layer-at-a-time code)."""
    import tracemalloc

    from neurozoo.features import gram_rowsum_many

    n, n_layers, threads = 200, 16, 8
    rng = np.random.default_rng(0)
    layers = [torch.from_numpy(rng.normal(size=(n, 8 * 256)).astype(np.float32))
              for _ in range(n_layers)]  # 8 chunks each
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    tracemalloc.start()
    try:
        out = gram_rowsum_many(layers, chunk_bytes=(n + 1) * 8 * 256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        torch.set_num_threads(before)
    square = (n + 1) ** 2 * 8
    # results (gram + rowsum) and partial sums: well under W * L squares
    assert peak < (3 * n_layers + 2 * threads) * square, peak / square
    for x, (gram, rowsum) in zip(layers, out):
        x64 = x.double().numpy()
        np.testing.assert_allclose(gram.numpy(), x64 @ x64.T, rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(rowsum.numpy(), x64.sum(axis=1), rtol=1e-12)


def test_gram_rowsum_many_layer_without_columns():
    """A layer with no columns has a zero Gram matrix (it was a TypeError)."""
    from neurozoo.features import gram_rowsum_many

    x = torch.ones(4, 3)
    (g0, r0), (g1, r1) = gram_rowsum_many([torch.ones(4, 0), x])
    assert g0.shape == (4, 4) and not g0.any() and not r0.any()
    np.testing.assert_array_equal(g1.numpy(), np.full((4, 4), 3.0))
    (g0, r0), = gram_rowsum_many([torch.ones(4, 0)])
    assert not g0.any()


# ------------------------------------------------------------------ layouts
class _Viewing(nn.Module):
    """Needs the usual layout: ``view`` of a convolution's output fails on a
    channels-last tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 5, stride=4)  # 224 -> 55
        self.fc = nn.Linear(4 * 55 * 55, 3)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(y.view(y.shape[0], -1))


class _ReadsMemory(_Viewing):
    """Runs channels-last but computes something else: it reads the raw
    memory of the convolution's output in its own order."""

    def forward(self, x):
        y = self.conv(x)
        n, p = y.shape[0], y[0].numel()
        return self.fc(torch.as_strided(y, (n, p), (p, 1)))


def _wrapped(cls, like):
    from neurozoo.models.zoo import LoadedModel

    torch.manual_seed(0)
    return LoadedModel(like.spec, cls().eval(), like.preprocessing, "random init",
                       "0" * 64)


def test_layout_choice_and_bad_name():
    alexnet = load_model("torchvision:alexnet@random:0").module
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    assert choose_layout(alexnet, torch.device("cpu")) == "channels_last"
    assert choose_layout(mlp, torch.device("cpu")) == "contiguous"
    assert choose_layout(alexnet, torch.device("cuda")) == "contiguous"
    assert choose_layout(mlp, torch.device("cpu"), "channels_last") == "channels_last"
    with pytest.raises(NeurozooError, match="unknown layout 'nhwc'.*auto, channels_last, "
                                            "contiguous"):
        choose_layout(alexnet, torch.device("cpu"), "nhwc")


def test_channels_last_extraction_matches_and_gives_the_network_back(small_stimuli):
    loaded = load_model("torchvision:resnet18@random:0")
    before = {k: v.stride() for k, v in loaded.module.state_dict().items()}
    layers = ["conv1", "layer1.0", "layer3.1", "fc"]
    fast = extract_summaries(loaded, small_stimuli, layers=layers, batch_size=4,
                             progress=False)
    assert {k: v.stride() for k, v in loaded.module.state_dict().items()} == before
    plain = extract_summaries(loaded, small_stimuli, layers=layers, batch_size=4,
                              progress=False, layout="contiguous")
    for nm in layers:
        assert fast[nm].meta["layout"] == "channels_last"
        assert plain[nm].meta["layout"] == "contiguous"
        scale = np.abs(plain[nm].gram).max()
        np.testing.assert_allclose(fast[nm].gram, plain[nm].gram, atol=1e-5 * scale)
        assert np.abs(fast[nm].gram - plain[nm].gram).max() > 0  # really another pass
    with pytest.raises(NeurozooError, match="unknown layout"):
        extract_summaries(loaded, small_stimuli, layers=layers, layout="NHWC",
                          progress=False)


@pytest.mark.parametrize("cls, problem", [(_Viewing, "it fails"),
                                          (_ReadsMemory, "its output differs")])
def test_network_that_cannot_run_channels_last_falls_back(cls, problem, small_stimuli,
                                                          caplog):
    like = load_model("torchvision:alexnet@random:0")
    loaded = _wrapped(cls, like)
    with caplog.at_level("WARNING", logger="neurozoo.features"):
        got = extract_summaries(loaded, small_stimuli, progress=False)
    assert f"cannot run channels-last: {problem}" in caplog.text
    assert got["conv"].meta["layout"] == "contiguous"
    assert loaded.module.conv.weight.is_contiguous()
    want = explicit_features(loaded, small_stimuli, ["conv"])["conv"]
    np.testing.assert_allclose(got["conv"].gram, want @ want.T, rtol=1e-10)
    with pytest.raises(NeurozooError, match=f"cannot run channels-last: {problem}"):
        extract_summaries(loaded, small_stimuli, progress=False, layout="channels_last")
    assert loaded.module.conv.weight.is_contiguous()


class _Refuses(_Viewing):
    """Asserts the usual layout (an AssertionError, not a RuntimeError)."""

    def forward(self, x):
        y = self.conv(x)
        assert y.is_contiguous()
        return self.fc(y.reshape(y.shape[0], -1))


class _Interrupted(_Viewing):
    """Ctrl-C arrives during the channels-last check pass."""

    def forward(self, x):
        if x.shape[0] == 1 and not x.is_contiguous():
            raise KeyboardInterrupt
        return super().forward(x)


def test_network_that_asserts_its_layout_falls_back(small_stimuli, caplog):
    loaded = _wrapped(_Refuses, load_model("torchvision:alexnet@random:0"))
    with caplog.at_level("WARNING", logger="neurozoo.features"):
        got = extract_summaries(loaded, small_stimuli, progress=False)
    assert "cannot run channels-last: it fails (AssertionError" in caplog.text
    assert got["conv"].meta["layout"] == "contiguous"
    assert loaded.module.conv.weight.is_contiguous()


def test_interrupt_during_the_layout_check_leaves_the_network_as_it_was(small_stimuli):
    loaded = _wrapped(_Interrupted, load_model("torchvision:alexnet@random:0"))
    for extract in (extract_summaries, extract_projections):
        with pytest.raises(KeyboardInterrupt):
            extract(loaded, small_stimuli, progress=False)
        assert loaded.module.conv.weight.is_contiguous()


def _strides(module):
    return {k: v.stride() for k, v in module.state_dict().items()}


def test_a_channels_last_network_is_given_back_channels_last(small_stimuli):
    """ResNet-18 has 1x1 kernels, which are both layouts at once: each weight
    must come back exactly as it was, whatever the call's layout."""
    loaded = load_model("torchvision:resnet18@random:0")
    loaded.module.to(memory_format=torch.channels_last)
    before = _strides(loaded.module)
    assert any(len(s) == 4 and s[1] == 1 for s in before.values())
    layers = ["conv1", "layer2.0"]
    for layout in ("auto", "contiguous", "channels_last"):
        got = extract_summaries(loaded, small_stimuli, layers=layers, progress=False,
                                layout=layout, batch_size=5)
        assert _strides(loaded.module) == before, layout
        want = "contiguous" if layout == "contiguous" else "channels_last"
        assert got["conv1"].meta["layout"] == want
    # "contiguous" really ran contiguous: the same Gram as the network laid
    # out plainly by the caller
    plain = load_model("torchvision:resnet18@random:0")
    ref = extract_summaries(plain, small_stimuli, layers=layers, progress=False,
                            layout="contiguous", batch_size=5)
    again = extract_summaries(loaded, small_stimuli, layers=layers, progress=False,
                              layout="contiguous", batch_size=5)
    for nm in layers:
        np.testing.assert_array_equal(again[nm].gram, ref[nm].gram)
