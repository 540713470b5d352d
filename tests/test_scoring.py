"""Scoring pieces against brute force; reruns after changes and interruptions."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neurozoo.cli import main
from neurozoo.scoring import (
    bootstrap_median,
    complete_repeats,
    neural_rdm,
    rdm_split_half_ceiling,
)

MODEL = "torchvision:alexnet@random:0"


def test_bootstrap_median_matches_loop():
    v = np.random.default_rng(0).normal(size=37)
    med, lo, hi = bootstrap_median(v, 200, seed=4)
    rng = np.random.default_rng(4)
    idx = rng.integers(0, v.size, size=(200, v.size))
    meds = [np.median([v[i] for i in row]) for row in idx]
    assert med == np.median(v)
    assert (lo, hi) == tuple(np.quantile(meds, [0.025, 0.975]))


@pytest.mark.parametrize("comparison", ["spearman", "pearson"])
def test_rdm_ceiling_matches_loop(comparison):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(6, 12, 9)) + rng.normal(size=(1, 12, 9))
    values[4:, :, :3] = np.nan  # three neuroids with 4 repeats
    got = rdm_split_half_ceiling(values, n_splits=5, seed=2, comparison=comparison)
    rngs = {}
    acc = []
    for _ in range(5):
        a = np.empty((12, 9))
        b = np.empty((12, 9))
        for j in range(9):
            t = 4 if j < 3 else 6
            rng_t = rngs.setdefault(t, np.random.default_rng([2, t]))
            if j in (0, 3):  # one permutation per group and split
                perm = rng_t.permutation(t)
                rngs[("perm", t)] = perm
            perm = rngs[("perm", t)]
            a[:, j] = values[perm[: t // 2], :, j].mean(0)
            b[:, j] = values[perm[t // 2:], :, j].mean(0)
        za = (a - a.mean(0)) / a.std(0)
        zb = (b - b.mean(0)) / b.std(0)
        i, k = np.triu_indices(12, 1)
        ra, rb = (1 - np.corrcoef(za))[i, k], (1 - np.corrcoef(zb))[i, k]
        f = stats.spearmanr if comparison == "spearman" else stats.pearsonr
        r = f(ra, rb).statistic
        acc.append(2 * r / (1 + r))
    assert got == pytest.approx(np.mean(acc), abs=1e-10)


def test_neural_rdm_is_zscored():
    y = np.random.default_rng(3).normal(size=(10, 5))
    scaled = y * np.array([1, 10, 100, 0.1, 3]) + 50
    np.testing.assert_allclose(neural_rdm(scaled), neural_rdm(y), atol=1e-10)


def test_complete_repeats_drops_partial_trials():
    v = np.ones((3, 4, 2))
    v[1, 2, 0] = np.nan
    out = complete_repeats(v)
    assert np.isnan(out[1, :, 0]).all() and np.isfinite(out[:, :, 1]).all()


def _cfg(path, data_dir, **scoring):
    cfg = {"data": str(data_dir / "responses.nc"), "models": [MODEL],
           "layers": {MODEL: ["features.5", "classifier.2"]},
           "reliability_splits": 5, "scoring": {"n_bootstrap": 20, "n_folds": 3,
                                                **scoring}}
    path.write_text(json.dumps(cfg))
    return path


def test_changed_config_invalidates_and_interruption_does_not_leak(
        small_dataset, tmp_path, cache_env, capsys, monkeypatch):
    out = tmp_path / "res"
    a = _cfg(tmp_path / "a.json", small_dataset)
    assert main(["-q", "run", "--config", str(a), "--out", str(out)]) == 0
    first = pd.read_csv(out / "scores.csv")
    # a different threshold changes prepared flags and scores
    b = _cfg(tmp_path / "b.json", small_dataset, reliability_threshold=0.9)
    assert main(["-q", "run", "--config", str(b), "--out", str(out)]) == 0
    second = pd.read_csv(out / "scores.csv")
    assert not first.n_reliable.equals(second.n_reliable)
    flags = pd.read_csv(out / "data" / "neuroids.csv").reliable
    assert (flags == (pd.read_csv(out / "data" / "neuroids.csv").reliability >= 0.9)).all()
    # run A again, but interrupted while scoring: the stamps of B must not survive
    import neurozoo.pipeline as pipeline

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "score_model", boom)
    assert main(["-q", "run", "--config", str(a), "--out", str(out)]) == 130
    monkeypatch.undo()
    monkeypatch.setenv("NEUROZOO_CACHE", str(cache_env))
    assert main(["-q", "run", "--config", str(a), "--out", str(out)]) == 0
    again = pd.read_csv(out / "scores.csv")
    pd.testing.assert_frame_equal(again, first)


def test_no_reliable_neuroid_is_a_clean_error(small_dataset, tmp_path, cache_env, capsys):
    cfg = _cfg(tmp_path / "c.json", small_dataset, reliability_threshold=1.0)
    out = tmp_path / "res"
    assert main(["-q", "run", "--config", str(cfg), "--out", str(out)]) == 2
    assert "reliability threshold" in capsys.readouterr().err
    assert not (out / "data" / "responses.nc").exists()


def test_stage_inputs_missing_is_a_clean_error(tmp_path, capsys):
    code = main(["-q", "stage", "plot", "--table", str(tmp_path / "no.csv"),
                 "--out", str(tmp_path / "f")])
    assert code == 2 and "run the aggregate stage first" in capsys.readouterr().err
