"""Ridge and RSA against scikit-learn, scipy and brute force."""

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import Ridge, RidgeCV

from neurozoo.errors import NeurozooError
from neurozoo.mapping import (
    KernelRidgeCV,
    compare_rdms,
    kfold_indices,
    rdm_from_gram,
    rdm_from_patterns,
)
from neurozoo.mapping.rsa import upper
from neurozoo.scoring import pearson_columns


def _check_against_sklearn(x, y, folds, alphas=None):
    gram = x @ x.T
    n = x.shape[0]
    for test in folds:
        train = np.setdiff1d(np.arange(n), test)
        ours = KernelRidgeCV(alphas=alphas).fit(gram[np.ix_(train, train)], y[train])
        ref = RidgeCV(alphas=ours.alphas_, alpha_per_target=True).fit(x[train], y[train])
        np.testing.assert_array_equal(ours.alpha_, ref.alpha_)
        pred = ours.predict(gram[np.ix_(test, train)])
        np.testing.assert_allclose(pred, ref.predict(x[test]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("n,p,t", [(30, 400, 3000), (80, 12, 40), (50, 50, 7)])
def test_ridge_matches_sklearn_random(n, p, t):
    """Many neuroids / few stimuli, stimuli > features, and square."""
    rng = np.random.default_rng(n + p)
    x = rng.normal(size=(n, p)) * rng.uniform(0.1, 5, size=p) + 2.0
    w = rng.normal(size=(p, t)) * (rng.uniform(size=(p, 1)) < 0.2)
    y = x @ w + 5 * rng.normal(size=(n, t)) + 3.0
    _check_against_sklearn(x, y, kfold_indices(n, 5, seed=1))


def test_ridge_matches_sklearn_on_real_data(bundled):
    """Real neuroids, real (pixel) features of the bundled images."""
    responses, stimuli = bundled
    x = np.stack([
        np.asarray(stimuli.load_image(i).resize((24, 18)), dtype=np.float64).ravel()
        for i in range(len(stimuli))
    ])
    y = np.nanmean(np.asarray(responses.values[:, :, :300], dtype=np.float64), axis=0)
    _check_against_sklearn(x, y, kfold_indices(len(stimuli), 5, seed=0))


def test_ridge_refit_matches_plain_ridge():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 100)), rng.normal(size=(40, 5))
    ours = KernelRidgeCV(alphas=[3.0]).fit(x[:30] @ x[:30].T, y[:30])
    ref = Ridge(alpha=3.0).fit(x[:30], y[:30])
    np.testing.assert_allclose(ours.predict(x[30:] @ x[:30].T), ref.predict(x[30:]),
                               atol=1e-8)


def test_loo_predictions_match_brute_force():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(25, 60)), rng.normal(size=(25, 4))
    model = KernelRidgeCV(alphas=[0.5, 5.0, 50.0]).fit(x @ x.T, y)
    for j in range(4):
        alpha = model.alpha_[j]
        loo = []
        for i in range(25):
            keep = np.arange(25) != i
            loo.append(Ridge(alpha=alpha).fit(x[keep], y[keep, j]).predict(x[i:i + 1])[0])
        np.testing.assert_allclose(model.loo_predictions_[:, j], loo, atol=1e-8)


def test_ridge_rejects_bad_input():
    with pytest.raises(NeurozooError):
        KernelRidgeCV().fit(np.eye(4), np.ones((5, 2)))
    with pytest.raises(NeurozooError):
        KernelRidgeCV().fit(np.eye(4), np.full((4, 2), np.nan))
    with pytest.raises(NeurozooError):
        KernelRidgeCV(alphas=[0.0]).fit(np.eye(4), np.ones((4, 1)))


def test_alpha_grid_scales_with_features():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 50)), rng.normal(size=(30, 3))
    a = KernelRidgeCV().fit(x @ x.T, y)
    b = KernelRidgeCV().fit((1000 * x) @ (1000 * x).T, y)
    np.testing.assert_allclose(b.alphas_, a.alphas_ * 1e6)
    np.testing.assert_array_equal(a.alpha_index_, b.alpha_index_)


def test_rdm_from_gram_matches_explicit_correlation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(15, 200)) + rng.normal(size=(15, 1))
    rdm = rdm_from_gram(x @ x.T, x.sum(1), x.shape[1])
    np.testing.assert_allclose(rdm, 1 - np.corrcoef(x), atol=1e-12)
    np.testing.assert_allclose(rdm_from_patterns(x), 1 - np.corrcoef(x), atol=1e-12)


def test_rdm_comparison_matches_scipy():
    rng = np.random.default_rng(4)
    a = rdm_from_patterns(rng.normal(size=(20, 30)))
    b = rdm_from_patterns(rng.normal(size=(20, 30)))
    b = np.round(b, 1)  # ties
    i, j = np.triu_indices(20, 1)
    assert compare_rdms(a, b, "spearman") == pytest.approx(
        stats.spearmanr(a[i, j], b[i, j]).statistic, abs=1e-12)
    assert compare_rdms(a, b, "pearson") == pytest.approx(
        stats.pearsonr(a[i, j], b[i, j]).statistic, abs=1e-12)
    assert len(upper(a)) == 190
    with pytest.raises(NeurozooError, match="valid: spearman, pearson"):
        compare_rdms(a, b, "cosine")


def test_pearson_columns_matches_scipy():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    want = [stats.pearsonr(a[:, k], b[:, k]).statistic for k in range(4)]
    np.testing.assert_allclose(pearson_columns(a, b), want, atol=1e-12)


def test_kfold_partitions():
    folds = kfold_indices(23, 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(23))
    assert {len(f) for f in folds} <= {4, 5}
    with pytest.raises(NeurozooError):
        kfold_indices(3, 5, 0)


def test_fold_mean_averages_the_defined_folds():
    from neurozoo.mapping import fold_mean

    r = np.array([[0.1, np.nan, np.nan, 0.5],
                  [0.3, 0.2, np.nan, np.nan],
                  [0.5, 0.4, np.nan, -0.5]])
    expected = [np.mean([v for v in r[:, j] if np.isfinite(v)]) if np.isfinite(r[:, j]).any()
                else np.nan for j in range(r.shape[1])]
    np.testing.assert_allclose(fold_mean(r), expected, rtol=1e-15)
    np.testing.assert_array_equal(fold_mean(r[:, :1]), [0.3])
