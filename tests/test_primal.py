"""The primal path: streamed sparse random projection and primal ridge."""

import logging

import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeCV
from sklearn.random_projection import johnson_lindenstrauss_min_dim

from neurozoo.features import (
    LayerProjection,
    LayerSummary,
    extract_auto,
    extract_projections,
    preprocess_stimuli,
)
from neurozoo.mapping import KernelRidgeCV
from neurozoo.mapping.primal import (
    PrimalRidgeCV,
    SparseProjector,
    jl_dimension,
    sparse_projection,
)
from neurozoo.models import load_model


@pytest.fixture(scope="module")
def small_stimuli(bundled):
    _, stimuli = bundled
    return stimuli.subset(stimuli.stimulus_ids[:12])


def test_jl_dimension_matches_sklearn():
    for n in (10, 118, 5000, 10**6):
        assert jl_dimension(n, 0.1) == johnson_lindenstrauss_min_dim(n, eps=0.1)


def test_sparse_projection_statistics_and_determinism():
    p, k = 20000, 500
    rows, cols, vals = sparse_projection(p, k, seed=3)
    assert rows.max() < p and cols.max() < k
    assert abs(rows.size / (p * k) - 1 / np.sqrt(p)) < 0.1 / np.sqrt(p)
    np.testing.assert_allclose(np.abs(vals), np.sqrt(np.sqrt(p) / k), rtol=1e-6)
    again = sparse_projection(p, k, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((rows, cols, vals), again))
    assert not np.array_equal(rows, sparse_projection(p, k, seed=4)[0])
    # squared norms preserved on average
    x = np.random.default_rng(0).normal(size=(50, p)).astype(np.float32)
    z = SparseProjector(p, k, seed=3)(torch.from_numpy(x)).numpy()
    ratio = (z ** 2).sum(1) / (x ** 2).sum(1)
    assert abs(ratio.mean() - 1) < 0.05


def test_projector_matches_dense_product():
    p, k = 3000, 200
    proj = SparseProjector(p, k, seed=1)
    x = np.random.default_rng(1).normal(size=(7, p)).astype(np.float32)
    want = x.astype(np.float64) @ proj.dense().astype(np.float64)
    np.testing.assert_allclose(proj(torch.from_numpy(x)).numpy(), want, rtol=1e-4,
                               atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("n,k,t", [(200, 30, 40), (40, 120, 300)])
def test_primal_ridge_matches_kernel_ridge_and_sklearn(n, k, t):
    """Stimuli outnumber features, and the reverse."""
    rng = np.random.default_rng(n)
    z = rng.normal(size=(n + 10, k)) * rng.uniform(0.3, 3, size=k) + 1
    y = z @ rng.normal(size=(k, t)) + 5 * rng.normal(size=(n + 10, t))
    ours = PrimalRidgeCV().fit(z[:n], y[:n])
    dual = KernelRidgeCV().fit(z[:n] @ z[:n].T, y[:n])
    np.testing.assert_allclose(ours.alphas_, dual.alphas_, rtol=1e-10)
    np.testing.assert_array_equal(ours.alpha_index_, dual.alpha_index_)
    np.testing.assert_allclose(ours.loo_predictions_, dual.loo_predictions_,
                               atol=1e-6)
    ref = RidgeCV(alphas=ours.alphas_, alpha_per_target=True).fit(z[:n], y[:n])
    np.testing.assert_array_equal(ours.alpha_, ref.alpha_)
    np.testing.assert_allclose(ours.predict(z[n:]), ref.predict(z[n:]), atol=1e-6)


def test_streamed_projection_matches_explicit(small_stimuli):
    loaded = load_model("torchvision:alexnet@random:0")
    layers = ["features.2", "features.10", "classifier.6"]
    got = extract_projections(loaded, small_stimuli, layers=layers, n_components=300,
                              seed=5, batch_size=5, device="cpu", progress=False)
    images = preprocess_stimuli(small_stimuli, loaded.preprocessing)
    mods = dict(loaded.module.named_modules())
    feats = {}
    handles = [mods[nm].register_forward_hook(
        lambda _m, _i, o, nm=nm: feats.__setitem__(nm, o.reshape(len(o), -1).clone()))
        for nm in layers]
    with torch.no_grad():
        loaded.module(images)
    for h in handles:
        h.remove()
    for nm in layers:
        x = feats[nm].double().numpy()
        g = got[nm]
        assert isinstance(g, LayerProjection) and g.n_features == x.shape[1]
        if x.shape[1] > 300:
            want = x @ SparseProjector(x.shape[1], 300, seed=5).dense()
            assert g.seed == 5
        else:  # narrow layer kept as it is
            want = x
            assert g.seed == -1
        np.testing.assert_allclose(g.z, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_extract_auto_chooses_by_size_and_logs(small_stimuli, caplog):
    loaded = load_model("torchvision:alexnet@random:0")
    with caplog.at_level(logging.INFO, logger="neurozoo.features"):
        gram = extract_auto(loaded, small_stimuli, layers=["classifier.6"],
                            device="cpu", progress=False)
        primal = extract_auto(loaded, small_stimuli, layers=["features.12"],
                              max_gram_stimuli=5, n_components=100, device="cpu",
                              progress=False)
    assert isinstance(gram["classifier.6"], LayerSummary)
    assert isinstance(primal["features.12"], LayerProjection)
    assert primal["features.12"].z.shape == (12, 100)
    assert "Gram path" in caplog.text and "primal path" in caplog.text
