"""The mapping methods in the run: PLS, CKA, RSA variants, the primal path and
their configuration, against the mapping functions and brute force."""

import json
import logging
import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from neurozoo.cli import main
from neurozoo.config import RunConfig, load_config
from neurozoo.data import split_half_reliability
from neurozoo.errors import NeurozooError
from neurozoo.features import LayerProjection, LayerSummary, extract_summaries
from neurozoo.mapping import (
    compare_rdms,
    cross_validated_pls,
    kfold_indices,
    linear_cka,
    rdm_from_gram,
)
from neurozoo.models import load_model
from neurozoo.scoring import (
    ScoringConfig,
    bootstrap_median,
    cka_bootstrap,
    complete_repeats,
    neural_rdm,
    pearson_columns,
    rdm_split_half_ceiling,
    score_model,
)

MODEL = "torchvision:alexnet@random:0"
LAYERS = ["features.5", "classifier.2"]
N_BOOT = 50


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize("scoring,field,needles", [
    ({"methods": ["ridge", "svm"]}, "scoring.methods", ["svm", "ridge, pls, rsa, cka"]),
    ({"methods": "ridge"}, "scoring.methods", ["ridge, pls, rsa, cka"]),
    ({"methods": []}, "scoring.methods", ["ridge, pls, rsa, cka"]),
    ({"methods": ["pls", "pls"]}, "scoring.methods", ["twice"]),
    ({"dtype": "float16"}, "scoring.dtype", ["float64, float32"]),
    ({"dtype": 64}, "scoring.dtype", ["str"]),
    ({"pls_components": 0}, "scoring.pls_components", [">= 1"]),
    ({"pls_components": 2.5}, "scoring.pls_components", ["int"]),
    ({"rsa_distance": "cosine"}, "scoring.rsa_distance", ["correlation, euclidean"]),
    ({"rsa_comparison": "tau_b"}, "scoring.rsa_comparison",
     ["spearman, pearson, kendall_a"]),
    ({"device": "gpu"}, "scoring.device", ["cpu, cuda"]),
])
def test_bad_scoring_fields_are_named(tmp_path, scoring, field, needles):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"scoring": scoring}))
    with pytest.raises(NeurozooError) as err:
        load_config(path)
    assert f"'{field}'" in str(err.value)
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize("field,value", [("max_gram_stimuli", 0),
                                         ("projection_components", 0),
                                         ("projection_seed", "a"),
                                         ("projection_seed", -1),
                                         ("device", "tpu"),
                                         ("areas", [])])
def test_bad_primal_fields_are_named(field, value):
    with pytest.raises(NeurozooError, match=f"'{field}'"):
        RunConfig(**{field: value})


@pytest.mark.parametrize("values,field", [
    ({"scoring": {"seed": -1}}, "scoring.seed"),
    ({"scoring": {"alpha_high": float("inf")}}, "scoring.alpha_high"),
    ({"layers": {"alexnet_random": []}}, "layers.alexnet_random"),
    ({"layers": {"alexnet_random": "features.0"}}, "layers.alexnet_random"),
])
def test_more_bad_fields_are_named(values, field):
    with pytest.raises(NeurozooError, match=f"'{field}'"):
        RunConfig(**values)


def test_methods_from_yaml_are_a_hashable_tuple_and_serialise(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("scoring:\n  methods: [ridge, pls]\n  rsa_comparison: kendall_a\n")
    config = load_config(path)
    assert config.scoring.methods == ("ridge", "pls")
    hash(config.scoring)
    text = json.dumps(config.to_dict())
    assert json.loads(text)["scoring"]["methods"] == ["ridge", "pls"]
    assert RunConfig(**json.loads(text)).scoring == config.scoring
    assert ScoringConfig().methods == ("ridge", "rsa")


def test_missing_gpu_fails_before_work(monkeypatch):
    import torch

    from neurozoo.pipeline import preflight

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = RunConfig(models=[MODEL], scoring={"device": "cuda"})
    with pytest.raises(NeurozooError, match="no GPU"):
        preflight(config)


# ---------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real(bundled):
    """118 bundled images, 40 neuroids of each of two areas, two AlexNet layers."""
    responses, stimuli = bundled
    areas = np.asarray(responses.coords["area"].values)
    pick = np.concatenate([np.flatnonzero(areas == a)[:40] for a in ("VISp", "VISl")])
    sub = responses.isel(neuroid=pick)
    rel = split_half_reliability(sub, 20, 0)
    summaries = extract_summaries(load_model(MODEL), stimuli, layers=LAYERS,
                                  device="cpu", progress=False)
    values = complete_repeats(np.asarray(sub.values, dtype=np.float64))
    y = np.nanmean(values, axis=0)
    return sub, rel, summaries, values, y


@pytest.fixture(scope="module")
def scored_all(real):
    sub, rel, summaries, _, _ = real
    config = ScoringConfig(n_bootstrap=N_BOOT, methods=["ridge", "pls", "rsa", "cka"])
    return score_model(summaries, sub, rel, config, MODEL)


def _rows(table, metrics):
    return table[table.metric.isin(metrics)].reset_index(drop=True)


def test_default_methods_give_the_same_ridge_and_rsa_rows(real, scored_all):
    sub, rel, summaries, _, _ = real
    default, ds_default = score_model(summaries, sub, rel,
                                      ScoringConfig(n_bootstrap=N_BOOT), MODEL)
    assert set(default.metric) == {"ridge_r", "ridge_r_corrected", "ridge_fev", "rsa",
                                   "rsa_corrected", "rsa_ceiling"}
    ridge_only, ds_ridge = score_model(summaries, sub, rel,
                                       ScoringConfig(n_bootstrap=N_BOOT, methods=["ridge"]),
                                       MODEL)
    ridge = ["ridge_r", "ridge_r_corrected", "ridge_fev"]
    rsa = ["rsa", "rsa_corrected", "rsa_ceiling"]
    pd.testing.assert_frame_equal(_rows(default, ridge), ridge_only, check_exact=True)
    table_all, ds_all = scored_all
    pd.testing.assert_frame_equal(_rows(table_all, ridge), ridge_only, check_exact=True)
    pd.testing.assert_frame_equal(_rows(table_all, rsa), _rows(default, rsa),
                                  check_exact=True)
    for name in ("ridge_r", "ridge_r_folds", "ridge_alpha", "ridge_inner_r",
                 "ridge_r_heldout"):
        xr.testing.assert_identical(ds_default[name], ds_ridge[name])
        xr.testing.assert_identical(ds_default[name], ds_all[name])
    assert "pls_r" not in ds_default and "pls_r" in ds_all


def test_pls_rows_match_cross_validated_pls(real, scored_all):
    sub, rel, summaries, _, y = real
    table, ds = scored_all
    folds = kfold_indices(y.shape[0], 5, 0)
    areas = np.asarray(sub.coords["area"].values)
    reliable = rel >= 0.5
    sqrt_rel = np.sqrt(np.where(rel > 0, rel, np.nan))
    for area in ("VISp", "VISl"):
        cols = np.flatnonzero(areas == area)
        sel = reliable[cols]
        assert sel.any()
        for li, layer in enumerate(LAYERS):
            res = cross_validated_pls(summaries[layer].gram, y[:, cols], folds,
                                      n_components=25)
            # pls_r is the mean of per-fold r, not res.r (pooled predictions)
            r = np.mean([pearson_columns(res.predictions[test], y[test][:, cols])
                         for test in folds], axis=0)
            np.testing.assert_allclose(ds["pls_r"].values[li, cols], r, rtol=0,
                                       atol=1e-12)
            for metric, v in (("pls_r", r), ("pls_r_corrected", r / sqrt_rel[cols])):
                row = table[(table.metric == metric) & (table.layer == layer)
                            & (table.area == area) & (table.selection == "layer")]
                want = bootstrap_median(v[sel], N_BOOT, 0)
                np.testing.assert_allclose(row[["value", "ci_low", "ci_high"]].values[0],
                                           want, rtol=0, atol=1e-12)
        for metric in ("pls_r", "pls_r_corrected"):
            rows = table[(table.metric == metric) & (table.area == area)]
            best = rows[rows.selection == "in_sample_max"]
            assert len(best) == 1
            assert best.value.item() == rows[rows.selection == "layer"].value.max()
    assert set(table[table.metric.str.startswith("pls")].selection) == {
        "layer", "in_sample_max"}
    assert (ds["pls_n_components"].values == 25).all()


def test_cka_rows_match_linear_cka_and_a_bootstrap_loop(real, scored_all):
    sub, rel, summaries, _, y = real
    table, _ = scored_all
    areas = np.asarray(sub.coords["area"].values)
    for area in ("VISp", "VISl"):
        sel = (areas == area) & (rel >= 0.5)
        ys = y[:, sel]
        vals = []
        for layer in LAYERS:
            gram = summaries[layer].gram
            row = table[(table.metric == "cka") & (table.layer == layer)
                        & (table.area == area) & (table.selection == "layer")]
            value = linear_cka(gram, ys @ ys.T)
            assert row.value.item() == pytest.approx(value, abs=1e-12)
            vals.append(value)
            idx = np.random.default_rng([0, 2]).integers(0, ys.shape[1],
                                                         size=(N_BOOT, ys.shape[1]))
            boot = [linear_cka(gram, ys[:, i] @ ys[:, i].T) for i in idx]
            lo, hi = np.quantile(boot, [0.025, 0.975]) - (np.mean(boot) - value)
            assert lo < value < hi
            assert row.ci_low.item() == pytest.approx(lo, abs=1e-9)
            assert row.ci_high.item() == pytest.approx(hi, abs=1e-9)
        best = table[(table.metric == "cka") & (table.area == area)
                     & (table.selection == "in_sample_max")]
        assert best.value.item() == pytest.approx(max(vals), abs=1e-12)


def _hsic(k, g):
    """HSIC of two Gram matrices, ``tr(K H G H) / (n - 1)^2``."""
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ g @ h) / (n - 1) ** 2


def test_linear_cka_matches_hsic_brute_force():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(15, 7)) + 3.0
    y = x[:, :4] @ rng.normal(size=(4, 5)) + rng.normal(size=(15, 5)) + 1.0
    k, g = x @ x.T, y @ y.T
    want = _hsic(k, g) / np.sqrt(_hsic(k, k) * _hsic(g, g))
    assert linear_cka(k, g) == pytest.approx(want, abs=1e-12)
    # and in feature space (Kornblith et al., eq. 5)
    xc, yc = x - x.mean(0), y - y.mean(0)
    feat = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc)
                                             * np.linalg.norm(yc.T @ yc))
    assert linear_cka(k, g) == pytest.approx(feat, abs=1e-12)
    # the closed-form bootstrap against explicit resampled features
    value, lo, hi, boot = cka_bootstrap(k, y, 30, seed=7)
    idx = np.random.default_rng([7, 2]).integers(0, 5, size=(30, 5))
    loop = [_hsic(k, y[:, i] @ y[:, i].T)
            / np.sqrt(_hsic(k, k) * _hsic(y[:, i] @ y[:, i].T, y[:, i] @ y[:, i].T))
            for i in idx]
    np.testing.assert_allclose(boot, loop, rtol=0, atol=1e-12)
    assert value == pytest.approx(want, abs=1e-12)
    bias = np.mean(loop) - want
    assert (lo, hi) == pytest.approx(tuple(np.quantile(loop, [0.025, 0.975]) - bias),
                                     abs=1e-12)


def test_rsa_euclidean_kendall_rows_and_ceiling(real):
    sub, rel, summaries, values, y = real
    config = ScoringConfig(n_bootstrap=N_BOOT, methods=["rsa"], rsa_distance="euclidean",
                           rsa_comparison="kendall_a")
    table, ds = score_model(summaries, sub, rel, config, MODEL)
    assert set(table.metric) == {"rsa", "rsa_corrected", "rsa_ceiling"}
    assert "ridge_r" not in ds and "ridge_r_heldout" not in ds
    areas = np.asarray(sub.coords["area"].values)
    for area in ("VISp", "VISl"):
        sel = (areas == area) & (rel >= 0.5)
        ceiling = table[(table.metric == "rsa_ceiling") & (table.area == area)]
        want = rdm_split_half_ceiling(values[:, :, sel], seed=0, comparison="kendall_a",
                                      distance="euclidean")
        assert ceiling.value.item() == pytest.approx(want, abs=1e-12)
        default = rdm_split_half_ceiling(values[:, :, sel], seed=0)
        assert abs(want - default) > 1e-3  # the comparison and distance are used
        area_rdm = neural_rdm(y[:, sel], "euclidean")
        for layer in LAYERS:
            s = summaries[layer]
            row = table[(table.metric == "rsa") & (table.layer == layer)
                        & (table.area == area) & (table.selection == "layer")]
            layer_rdm = rdm_from_gram(s.gram, s.rowsum, s.n_features, "euclidean")
            value = compare_rdms(area_rdm, layer_rdm, "kendall_a")
            assert row.value.item() == pytest.approx(value, abs=1e-12)
            assert row.ci_low.item() < row.value.item() < row.ci_high.item()
        assert set(table[table.area == area].selection) == {
            "layer", "in_sample_max", "best_heldout", "area"}
        for metric in ("rsa", "rsa_corrected"):  # the best layer's row, interval too
            rows = table[(table.metric == metric) & (table.area == area)]
            per_layer = rows[rows.selection == "layer"]
            best = per_layer.loc[per_layer.value.idxmax()]
            top = rows[rows.selection == "in_sample_max"].iloc[0]
            assert (top.layer, top.value, top.ci_low, top.ci_high) == (
                best.layer, best.value, best.ci_low, best.ci_high)


def test_rsa_best_heldout_uses_training_stimuli_only(real, scored_all):
    """Brute force: per fold, the area RDM of the training stimuli (z-scored
    with their own statistics) picks the layer; the test stimuli, z-scored
    with the training statistics, score it."""
    from scipy.stats import spearmanr

    sub, rel, summaries, _, y = real
    table, _ = scored_all
    areas = np.asarray(sub.coords["area"].values)
    n = y.shape[0]
    layer_rdms = [rdm_from_gram(summaries[x].gram, summaries[x].rowsum,
                                summaries[x].n_features) for x in LAYERS]
    iu = np.triu_indices
    for area in ("VISp", "VISl"):
        sel = (areas == area) & (rel >= 0.5)
        held, chosen = [], []
        for test in kfold_indices(n, 5, 0):
            train = np.setdiff1d(np.arange(n), test)
            ytr = y[train][:, sel]
            mu, sd = ytr.mean(axis=0), ytr.std(axis=0)
            rdm_tr = 1 - np.corrcoef((ytr - mu) / sd)
            k = len(train)
            scores = [spearmanr(rdm_tr[iu(k, 1)], r[np.ix_(train, train)][iu(k, 1)])[0]
                      for r in layer_rdms]
            li = int(np.argmax(scores))
            chosen.append(li)
            rdm_te = 1 - np.corrcoef((y[test][:, sel] - mu) / sd)
            m = len(test)
            held.append(spearmanr(rdm_te[iu(m, 1)],
                                  layer_rdms[li][np.ix_(test, test)][iu(m, 1)])[0])
        row = table[(table.metric == "rsa") & (table.area == area)
                    & (table.selection == "best_heldout")]
        assert row.value.item() == pytest.approx(np.mean(held), abs=1e-12)
        assert row.layer.item() == LAYERS[max(set(chosen), key=chosen.count)]


# ---------------------------------------------------------------- the CLI
def test_cli_run_with_pls_and_cka(small_dataset, tmp_path, cache_env, capsys, caplog):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"data: {small_dataset / 'responses.nc'}\n"
        f"models: ['{MODEL}']\n"
        f"layers: {{'{MODEL}': [features.5, classifier.2]}}\n"
        "reliability_splits: 5\n"
        "scoring:\n  n_bootstrap: 20\n  n_folds: 3\n  methods: [ridge, pls, cka]\n")
    out = tmp_path / "res"
    with caplog.at_level(logging.WARNING, logger="neurozoo"):
        assert main(["-q", "run", "--config", str(cfg), "--out", str(out)]) == 0
    # 24 stimuli in 3 folds: 16 training stimuli allow 15 components
    assert "using 15" in caplog.text
    table = pd.read_csv(out / "scores.csv")
    assert {"ridge_r", "ridge_r_corrected", "pls_r", "pls_r_corrected", "cka"} <= set(
        table.metric)
    assert not table.metric.str.startswith("rsa").any()
    for metric in ("pls_r", "pls_r_corrected", "cka"):
        rows = table[table.metric == metric]
        assert set(rows.selection) == {"layer", "in_sample_max"}
        assert set(rows.area) == {"VISp", "VISl"} and rows.value.notna().all()
    with xr.open_dataset(next((out / "scores").glob("*.nc")), engine="h5netcdf") as ds:
        assert ds["pls_r"].shape == (2, 60)
        assert (ds["pls_n_components"].values == 15).all()
        assert ds.attrs["feature_path"] == "gram"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["config"]["scoring"]["methods"] == ["ridge", "pls", "cka"]
    assert prov["models"][MODEL]["feature_path"] == "gram"
    for fig in ("scores_by_area.png", "pls_vs_depth.png", "cka_vs_depth.png"):
        assert (out / "figures" / fig).is_file()
    assert "Noise-corrected ridge r" in capsys.readouterr().out

    # CKA alone: no ridge rows or columns, figures of CKA
    cfg.write_text(cfg.read_text().replace("[ridge, pls, cka]", "[cka]"))
    out2 = tmp_path / "res2"
    assert main(["-q", "run", "--config", str(cfg), "--out", str(out2)]) == 0
    table = pd.read_csv(out2 / "scores.csv")
    assert set(table.metric) == {"cka"}
    per = pd.read_csv(out2 / "neuroid_scores.csv")
    assert "ridge_r_heldout" not in per and len(per) == 60
    assert (out2 / "figures" / "scores_by_area.png").is_file()
    assert "No held-out best-layer scores" in capsys.readouterr().out


# ---------------------------------------------------------------- primal path
def test_primal_path_in_the_run_matches_the_gram_path(tmp_path, cache_env, caplog):
    from neurozoo.data import load_responses
    from neurozoo.io import read_json
    from neurozoo.pipeline import model_slug, run, stage_extract

    layers = ["features.12", "classifier.6"]  # 9,216 features projected; 1,000 kept
    config = RunConfig(models=[MODEL], areas=["VISam"], layers={MODEL: layers},
                       reliability_splits=5, max_gram_stimuli=50,
                       projection_components=2000, batch_size=64,
                       scoring={"n_bootstrap": 20})
    out = tmp_path / "res"
    with caplog.at_level(logging.INFO, logger="neurozoo"):
        table = run(config, out, progress=False)
    assert "118 stimuli > 50: primal path" in caplog.text
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
               and "projected layer" in r.getMessage()]
    assert len(skipped) == 1 and "rsa" in skipped[0]
    assert all(layer in skipped[0] for layer in layers)
    assert set(table.metric) == {"ridge_r", "ridge_r_corrected", "ridge_fev"}

    slug = model_slug(MODEL)
    index = read_json(out / "features" / f"{slug}.json")
    assert index["path"] == "primal"
    assert index["projection"] == {"k": 2000, "seed": 0}
    assert [e["kind"] for e in index["layers"]] == ["projection", "projection"]
    projections = {e["layer"]: LayerProjection.load(e["file"]) for e in index["layers"]}
    assert projections["features.12"].z.shape == (118, 2000)
    assert projections["classifier.6"].z.shape == (118, 1000)
    assert projections["classifier.6"].seed == -1
    prov = read_json(out / "provenance.json")
    assert prov["models"][MODEL]["feature_path"] == "primal"
    stamp = read_json(out / "scores" / f"{slug}.json")["provenance"]
    assert stamp["feature_path"] == "primal"
    assert stamp["methods_skipped"] == {"rsa": layers}

    # the Gram path on Gram = Z Z^T of the same projections: the same ridge r
    summaries = {}
    for name, p in projections.items():
        gram = p.z @ p.z.T
        summaries[name] = LayerSummary(name, (gram + gram.T) / 2, p.z.sum(1),
                                       p.z.shape[1], p.shape, p.index, p.relative_depth)
    responses = load_responses(out / "data" / "responses.nc")
    rel = pd.read_csv(out / "data" / "neuroids.csv").reliability.to_numpy()
    _, gram_ds = score_model(summaries, responses, rel, config.scoring, MODEL)
    with xr.open_dataset(out / "scores" / f"{slug}.nc", engine="h5netcdf") as ds:
        assert ds.attrs["feature_path"] == "primal"
        np.testing.assert_allclose(ds["ridge_r"].values, gram_ds["ridge_r"].values,
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(ds["ridge_r_heldout"].values,
                                   gram_ds["ridge_r_heldout"].values, rtol=0, atol=1e-6)

    # the projections are cached: a second extraction rereads them
    files = [e["file"] for e in index["layers"]]
    mtimes = [os.stat(f).st_mtime_ns for f in files]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="neurozoo"):
        again = stage_extract(config, out / "data", MODEL, tmp_path / "again.json",
                              progress=False)
    assert "streamed random projection" not in caplog.text
    assert [e["file"] for e in again["layers"]] == files
    assert [os.stat(f).st_mtime_ns for f in files] == mtimes


def test_primal_path_without_ridge_is_refused(tmp_path, cache_env):
    config = RunConfig(models=[MODEL], areas=["VISam"], max_gram_stimuli=50,
                       scoring={"methods": ["rsa", "cka"]})
    from neurozoo.pipeline import run

    with pytest.raises(NeurozooError, match="scoring.methods"):
        run(config, tmp_path / "res", progress=False)
    assert not (tmp_path / "res").exists()


def test_mapping_dtype_and_device_reach_ridge_and_pls(real, scored_all):
    from neurozoo.mapping.backend import FLOAT32_R_TOL

    sub, rel, summaries, _, _ = real
    config = ScoringConfig(n_bootstrap=N_BOOT, methods=["ridge", "pls"], device="auto",
                           dtype="float32")
    _, ds32 = score_model(summaries, sub, rel, config, MODEL)
    _, ds64 = scored_all
    for name in ("ridge_r", "pls_r"):
        diff = np.abs(ds32[name].values - ds64[name].values)
        assert 0 < diff.max() < FLOAT32_R_TOL  # float32 was used, within tolerance


def test_default_zoo_yaml_lists_every_field_with_its_default():
    import dataclasses
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "pipelines" / "default_zoo.yaml"
    assert load_config(path) == RunConfig()
    raw = yaml.safe_load(path.read_text())
    assert set(raw) == {f.name for f in dataclasses.fields(RunConfig)}
    assert set(raw["scoring"]) == {f.name for f in dataclasses.fields(ScoringConfig)}


def test_n_scored_counts_the_finite_values_behind_a_median(real, scored_all, caplog):
    """A reliable neuroid silent on one test fold has no r there: its r averages
    the other folds. One with no r on any fold (constant responses; its
    reliability is taken from the real data) is left out of the medians,
    n_scored says so and the log warns once per area."""
    sub, rel, summaries, _, _ = real
    config = ScoringConfig(n_bootstrap=N_BOOT, methods=["ridge", "pls"])
    areas = np.asarray(sub.coords["area"].values).astype(str)
    reliable = rel >= config.reliability_threshold
    j, k = np.flatnonzero(reliable & (areas == "VISp"))[:2]
    test = kfold_indices(sub.sizes["stimulus"], config.n_folds, config.seed)[0]
    values = np.array(sub.values, dtype=np.float64)
    values[:, test, j] = np.where(np.isfinite(values[:, test, j]), 1.0, np.nan)
    values[:, :, k] = np.where(np.isfinite(values[:, :, k]), 1.0, np.nan)
    flat = sub.copy(data=values)
    with caplog.at_level(logging.WARNING, logger="neurozoo"):
        table, ds = score_model(summaries, flat, rel, config, MODEL)
    folds = ds["ridge_r_folds"].values
    assert np.isnan(folds[0, :, j]).all() and np.isfinite(folds[1:, :, j]).all()
    np.testing.assert_allclose(ds["ridge_r"].values[:, j], folds[1:, :, j].mean(axis=0),
                               rtol=1e-12)
    assert np.isfinite(ds["pls_r"].values[:, j]).all()
    assert np.isnan(ds["ridge_r"].values[:, k]).all()
    warned = [r.getMessage() for r in caplog.records if "n_scored" in r.getMessage()]
    assert len(warned) == 1 and "VISp" in warned[0]  # one line per area
    assert "features.5: up to 1, classifier.2: up to 1" in warned[0]
    visp = table[(table.area == "VISp") & table.metric.isin(
        ["ridge_r", "ridge_r_corrected", "ridge_fev", "pls_r", "pls_r_corrected"])]
    assert (visp.n_scored == visp.n_reliable - 1).all()
    sel = reliable & (areas == "VISp")
    for li, layer in enumerate(LAYERS):
        row = visp[(visp.layer == layer) & (visp.metric == "ridge_r")
                   & (visp.selection == "layer")].iloc[0]
        r = ds["ridge_r"].values[li, sel]
        assert row.value == pytest.approx(np.median(r[np.isfinite(r)]), abs=0)
    # untouched data: every reliable neuroid is behind every median
    table_all, _ = scored_all
    per_neuroid = table_all[~table_all.metric.isin(["rsa", "rsa_corrected",
                                                    "rsa_ceiling", "cka"])]
    assert (per_neuroid.n_scored == per_neuroid.n_reliable).all()
