"""PLS, RSA/CKA variants, the torch backend and the dispatch entry, against
scikit-learn, scipy and brute-force references."""

import itertools
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.spatial.distance import pdist, squareform
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import RidgeCV

from neurozoo.errors import NeurozooError
from neurozoo.features import LayerSummary, gram_rowsum_from_features
from neurozoo.mapping import (
    METHODS,
    KernelPLS,
    KernelRidgeCV,
    compare_rdms,
    cross_validated_pls,
    cross_validated_ridge,
    kendall_tau_a,
    kfold_indices,
    linear_cka,
    rdm_from_gram,
    rdm_from_patterns,
    score_layer,
)
from neurozoo.mapping.backend import FLOAT32_R_TOL
from neurozoo.mapping.rsa import upper
from neurozoo.scoring import pearson_columns


def _data(n, p, t, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * rng.uniform(0.2, 3, size=p) + 1.0
    w = rng.normal(size=(p, t)) * (rng.uniform(size=(p, 1)) < 0.3)
    y = x @ w + 4 * rng.normal(size=(n, t)) + 2.0
    return x, y


def _pixels(stimuli, size=(24, 18)):
    return np.stack([
        np.asarray(stimuli.load_image(i).resize(size), dtype=np.float64).ravel()
        for i in range(len(stimuli))
    ])


def _sklearn_pls(x, y, folds, n_components):
    pred = np.empty_like(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for test in folds:
            train = np.setdiff1d(np.arange(len(y)), test)
            m = PLSRegression(n_components, scale=False, tol=1e-20, max_iter=20000)
            pred[test] = m.fit(x[train], y[train]).predict(x[test])
    return pred


# ---------------------------------------------------------------- ridge
@pytest.mark.parametrize("n,p,t", [(30, 400, 1000), (70, 15, 30)])
def test_cross_validated_ridge_matches_sklearn_loop(n, p, t):
    x, y = _data(n, p, t, seed=n)
    folds = kfold_indices(n, 5, seed=3)
    gram = x @ x.T
    res = cross_validated_ridge(gram, y, folds)
    pred = np.empty_like(y)
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test)
        grid = KernelRidgeCV().fit(gram[np.ix_(train, train)], y[train]).alphas_
        ref = RidgeCV(alphas=grid, alpha_per_target=True).fit(x[train], y[train])
        pred[test] = ref.predict(x[test])
        np.testing.assert_array_equal(res.alpha[f], ref.alpha_)
    np.testing.assert_allclose(res.predictions, pred, rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.r_pooled, pearson_columns(pred, y), rtol=0, atol=1e-6)
    per_fold = [[np.corrcoef(pred[test, j], y[test, j])[0, 1] for j in range(t)]
                for test in folds]
    np.testing.assert_allclose(res.r_folds, per_fold, rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.r, np.mean(per_fold, axis=0), rtol=0, atol=1e-6)
    assert res.inner_r.shape == (5, t)


def test_ridge_float32_close_to_float64():
    x, y = _data(60, 300, 500, seed=7)
    folds = kfold_indices(60, 5, seed=0)
    r64 = cross_validated_ridge(x @ x.T, y, folds, dtype="float64").r
    r32 = cross_validated_ridge(x @ x.T, y, folds, dtype="float32").r
    assert np.abs(r64 - r32).max() <= FLOAT32_R_TOL
    assert not np.array_equal(r64, r32)  # the float32 path really ran


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_ridge_gpu_matches_cpu():
    x, y = _data(50, 200, 300, seed=8)
    folds = kfold_indices(50, 5, seed=0)
    cpu = cross_validated_ridge(x @ x.T, y, folds).predictions
    gpu = cross_validated_ridge(x @ x.T, y, folds, device="cuda").predictions
    np.testing.assert_allclose(gpu, cpu, atol=1e-8)


def test_ridge_rejects_bad_gram_and_options():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 2))
    bad = rng.normal(size=(5, 5))
    with pytest.raises(NeurozooError, match="not symmetric"):
        KernelRidgeCV().fit(bad, y)
    inf = np.eye(5)
    inf[1, 1] = np.inf
    with pytest.raises(NeurozooError, match="non-finite"):
        KernelRidgeCV().fit(inf, y)
    with pytest.raises(NeurozooError, match="valid: float64, float32"):
        KernelRidgeCV(dtype="float16").fit(np.eye(5), y)


# ---------------------------------------------------------------- PLS
@pytest.mark.parametrize("n,p,t,c", [(40, 300, 500, 5), (60, 20, 30, 8),
                                     (30, 50, 1, 3), (25, 400, 3000, 10)])
def test_pls_matches_sklearn_random(n, p, t, c):
    """Few stimuli many features/neuroids, stimuli > features, one target."""
    x, y = _data(n + 8, p, t, seed=p)
    ref = PLSRegression(c, scale=False, tol=1e-20, max_iter=20000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(x[:n], y[:n])
    ours = KernelPLS(c).fit(x[:n] @ x[:n].T, y[:n])
    np.testing.assert_allclose(ours.predict(x[n:] @ x[:n].T), ref.predict(x[n:]),
                               rtol=0, atol=1e-6)
    assert ours.n_components_ == c


def test_pls_matches_sklearn_on_real_data(bundled):
    responses, stimuli = bundled
    x = _pixels(stimuli)
    y = np.nanmean(np.asarray(responses.values[:, :, :300], dtype=np.float64), axis=0)
    folds = kfold_indices(len(stimuli), 5, seed=0)
    ours = cross_validated_pls(x @ x.T, y, folds, n_components=10)
    np.testing.assert_allclose(ours.predictions, _sklearn_pls(x, y, folds, 10),
                               rtol=0, atol=1e-6)


def test_pls_differs_from_ridge_and_needs_components():
    x, y = _data(30, 40, 5, seed=1)
    with pytest.raises(NeurozooError):
        KernelPLS(0).fit(x @ x.T, y)
    one = KernelPLS(1).fit(x @ x.T, y)
    many = KernelPLS(6).fit(x @ x.T, y)
    assert np.abs(one.predict(x @ x.T) - many.predict(x @ x.T)).max() > 1e-3


# ---------------------------------------------------------------- RSA / CKA
def _tau_a_brute(x, y):
    s = 0.0
    for i, j in itertools.combinations(range(len(x)), 2):
        s += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return s / (len(x) * (len(x) - 1) / 2)


@pytest.mark.parametrize("ties", [False, True])
def test_kendall_tau_a_matches_brute_force(ties):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=60), rng.normal(size=60)
    x = x + 0.5 * y
    if ties:
        x, y = np.round(x), np.round(y * 2)
    assert kendall_tau_a(x, y) == pytest.approx(_tau_a_brute(x, y), abs=1e-12)
    if ties:  # tau-a differs from scipy's tau-b when there are ties
        assert abs(kendall_tau_a(x, y) - stats.kendalltau(x, y).statistic) > 1e-3


def test_compare_rdms_kendall_a_and_euclidean_rdms():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(14, 50)) + rng.normal(size=(14, 1))
    y = x[:, :20] + rng.normal(size=(14, 20))
    ref = squareform(pdist(x))
    np.testing.assert_allclose(rdm_from_gram(x @ x.T, x.sum(1), 50, "euclidean"), ref,
                               atol=1e-9)
    np.testing.assert_allclose(rdm_from_patterns(x, "euclidean"), ref, atol=1e-9)
    a, b = rdm_from_patterns(x), rdm_from_patterns(y)
    assert compare_rdms(a, b, "kendall_a") == pytest.approx(
        _tau_a_brute(upper(a), upper(b)), abs=1e-12)
    with pytest.raises(NeurozooError, match="valid: correlation, euclidean"):
        rdm_from_patterns(x, "cosine")


def test_linear_cka_matches_feature_formula():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(25, 80)) + 3
    y = x[:, :30] @ rng.normal(size=(30, 40)) + rng.normal(size=(25, 40))
    xc, yc = x - x.mean(0), y - y.mean(0)
    want = (np.linalg.norm(yc.T @ xc) ** 2
            / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))
    assert linear_cka(x @ x.T, y @ y.T) == pytest.approx(want, abs=1e-12)
    q, _ = np.linalg.qr(rng.normal(size=(80, 80)))
    xr = 5 * x @ q  # invariant to rotation and isotropic scaling
    assert linear_cka(xr @ xr.T, y @ y.T) == pytest.approx(want, abs=1e-10)
    assert score_layer("cka", x @ x.T, y) == pytest.approx(want, abs=1e-12)


# ---------------------------------------------------------------- dispatch
def test_score_layer_dispatch(bundled):
    responses, stimuli = bundled
    x = _pixels(stimuli, (12, 9))
    y = np.nanmean(np.asarray(responses.values[:, :, :50], dtype=np.float64), axis=0)
    s = LayerSummary("pix", x @ x.T, x.sum(1), x.shape[1], (108,), 0, 0.0)
    folds = kfold_indices(len(y), 5, seed=0)
    ridge = score_layer("ridge", s, y, folds)
    np.testing.assert_array_equal(ridge.r, cross_validated_ridge(s.gram, y, folds).r)
    pls = score_layer("pls", s, y, folds, n_components=5)
    np.testing.assert_array_equal(
        pls.predictions, cross_validated_pls(s.gram, y, folds, n_components=5)
        .predictions)
    # the area RDM z-scores each neuroid across stimuli, as the run does
    assert (y.std(axis=0) > 0).all()
    z = (y - y.mean(axis=0)) / y.std(axis=0)
    for dist, comp in itertools.product(("correlation", "euclidean"),
                                        ("spearman", "pearson", "kendall_a")):
        got = score_layer("rsa", s, y, distance=dist, comparison=comp)
        want = compare_rdms(rdm_from_patterns(z, dist), rdm_from_patterns(x, dist),
                            comp)
        assert got == pytest.approx(want, abs=1e-9)
    xa, za = upper(rdm_from_patterns(x)), upper(1 - np.corrcoef(z))
    assert score_layer("rsa", s, y) == pytest.approx(
        stats.spearmanr(xa, za).statistic, abs=1e-9)
    assert abs(score_layer("rsa", s, y) - stats.spearmanr(
        xa, upper(rdm_from_patterns(y))).statistic) > 1e-3  # raw y would differ


def test_score_layer_rejects_unknown_and_bad_input():
    y = np.ones((4, 2))
    with pytest.raises(NeurozooError, match="valid: ridge, pls, rsa, cka"):
        score_layer("lasso", np.eye(4), y)
    assert METHODS == ("ridge", "pls", "rsa", "cka")
    asym = np.eye(4)
    asym[0, 1] = 1.0
    for method in METHODS:
        with pytest.raises(NeurozooError, match="not symmetric"):
            score_layer(method, asym, y, kfold_indices(6, 2, 0))
        with pytest.raises(NeurozooError, match="non-finite"):
            score_layer(method, np.full((4, 4), np.nan), y, kfold_indices(6, 2, 0))
    with pytest.raises(NeurozooError, match="folds"):
        score_layer("ridge", np.eye(4), y)
    with pytest.raises(NeurozooError, match="comparisons"):
        score_layer("rsa", {"gram": np.eye(4), "rowsum": np.ones(4), "n_features": 4},
                    y, comparison="cosine")


@pytest.mark.parametrize("folds,needle", [
    ([np.arange(0, 5), np.arange(5, 7)], "fold 1: 2 test stimuli"),
    ([np.arange(0, 4), np.arange(3, 7)], "1 in several"),
    ([np.arange(0, 3), np.arange(3, 6)], "1 stimuli in none"),
    ([np.arange(0, 7)], "at least 2 folds"),
    ([np.arange(0, 4), np.arange(4, 8)], "outside"),
    ([np.arange(0, 4) + 0.5, np.arange(4, 7)], "integer"),
])
def test_bad_folds_are_rejected(folds, needle):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 3))
    y = rng.normal(size=(7, 2))
    for method in ("ridge", "pls"):
        with pytest.raises(NeurozooError, match=needle):
            score_layer(method, x @ x.T, y, folds)


def test_kfold_needs_three_test_stimuli_per_fold():
    folds = kfold_indices(9, 3, 0)
    assert sorted(np.concatenate(folds)) == list(range(9))
    assert [len(f) for f in folds] == [3, 3, 3]
    for n, k in ((9, 4), (5, 2), (118, 40)):
        with pytest.raises(NeurozooError, match="at least 3 stimuli"):
            kfold_indices(n, k, 0)


def test_gram_rowsum_from_features_matches_numpy():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(13, 1000)).astype(np.float32)
    gram, rowsum = gram_rowsum_from_features(torch.from_numpy(x),
                                             chunk_bytes=13 * 8 * 70)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(gram.numpy(), x64 @ x64.T, rtol=1e-12)
    np.testing.assert_allclose(rowsum.numpy(), x64.sum(1), rtol=1e-12)
