"""Split-half reliability against a brute-force loop, and the data model."""

import numpy as np
import pytest

from neurozoo.data import make_responses, split_half_reliability, validate_responses
from neurozoo.errors import NeurozooError


def brute_force_reliability(values, n_splits, seed):
    """Neuroid by neuroid, split by split, with explicit loops."""
    n_trials, n_stim, n_neur = values.shape
    out = np.full(n_neur, np.nan)
    for j in range(n_neur):
        trials = [t for t in range(n_trials) if np.isfinite(values[t, :, j]).all()]
        t = len(trials)
        rng = np.random.default_rng([seed, t])
        corrected = []
        for _ in range(n_splits):
            perm = [trials[k] for k in rng.permutation(t)]
            a = [np.mean([values[tr, s, j] for tr in perm[: t // 2]])
                 for s in range(n_stim)]
            b = [np.mean([values[tr, s, j] for tr in perm[t // 2:]])
                 for s in range(n_stim)]
            r = np.corrcoef(a, b)[0, 1]
            corrected.append(2 * r / (1 + r))
        out[j] = np.mean(corrected)
    return out


def test_reliability_matches_brute_force_on_real_data(bundled):
    responses, _ = bundled
    # a recording with 47 trials (NaN-padded) and one with 50
    rec = np.asarray(responses.coords["recording"].values)
    pick = np.concatenate([np.flatnonzero(rec == "RL_718643567")[:4],
                           np.flatnonzero(rec == "V1_776061251")[:4]])
    sub = responses.isel(neuroid=pick, stimulus=slice(0, 40))
    values = np.asarray(sub.values, dtype=np.float64)
    assert np.isnan(values[47:, :, :4]).all() and np.isfinite(values[:47]).all()
    got = split_half_reliability(sub, n_splits=7, seed=3)
    want = brute_force_reliability(values, n_splits=7, seed=3)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_reliability_tracks_known_noise_level():
    rng = np.random.default_rng(0)
    n_trials, n_stim, n_neur = 40, 200, 50
    signal = rng.normal(size=(1, n_stim, n_neur))
    sigma = 3.0
    values = signal + sigma * rng.normal(size=(n_trials, n_stim, n_neur))
    da = make_responses(values, [str(i) for i in range(n_stim)],
                        [str(j) for j in range(n_neur)], ["VISp"] * n_neur,
                        [0] * n_neur)
    rel = split_half_reliability(da, n_splits=50, seed=0)
    expected = 1.0 / (1.0 + sigma**2 / n_trials)  # reliability of the full mean
    assert abs(np.median(rel) - expected) < 0.03


def test_validation_reports_all_nan_neuroid_and_bad_dims():
    values = np.ones((3, 4, 2))
    values[:, :, 1] = np.nan
    da = make_responses(values, list("abcd"), ["x", "y"], ["VISp"] * 2, [1, 1])
    problems = validate_responses(da, "f.nc")
    assert any("no finite response" in p and "y" in p for p in problems)
    problems = validate_responses(da.transpose("stimulus", "trial", "neuroid"), "f.nc")
    assert any("dims" in p for p in problems)
    with pytest.raises(NeurozooError):
        make_responses(values, list("abcd"), ["x", "y"], ["VISp"] * 2, [1, 1]).pipe(
            lambda d: __import__("neurozoo.data", fromlist=["x"]).check_responses(d))


def test_validation_requires_a_complete_repeat():
    values = np.ones((3, 4, 2))
    for t in range(3):
        values[t, t, 0] = np.nan  # every repeat of neuroid 'x' misses one stimulus
    da = make_responses(values, list("abcd"), ["x", "y"], ["VISp"] * 2, [1, 1])
    problems = validate_responses(da, "f.nc")
    assert len(problems) == 1 and "no complete repeat" in problems[0] and "x" in problems[0]
