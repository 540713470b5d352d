"""Scores: per neuroid, per area, per layer, and the best layer per area.

Definitions (also in the README)
--------------------------------
- Reliability ``rho`` of a neuroid: split-half, Spearman-Brown corrected
  (:func:`neurozoo.data.split_half_reliability`). A neuroid is *reliable*
  when ``rho >= reliability_threshold``; area scores use reliable neuroids.
- ``ridge_r``: Pearson r between the out-of-sample predictions and the
  trial-averaged response, computed on each outer fold's test stimuli and
  averaged over the folds (k-fold outer cross-validation over stimuli; penalty
  per neuroid by exact leave-one-out on the training folds). Per-fold r
  avoids the negative bias of one r over pooled fold predictions, whose
  per-fold intercepts differ. Trial means use complete repeats only, the same
  repeats the reliability uses.
- ``ridge_r_corrected``: ``r / sqrt(rho)``, the correlation relative to the
  noise ceiling. ``ridge_fev``: ``r |r| / rho``, the fraction of explainable
  variance explained (signed, so anti-correlated predictions stay negative).
  Neither is clipped: values above 1 show a noisy ceiling, not an error.
- Area score: median over the area's reliable neuroids, with a bootstrap
  interval over neuroids (percentile, ``n_bootstrap`` resamples, seeded).
- ``rsa``: Spearman correlation between the upper triangles of the area RDM
  (1 - Pearson r between stimulus patterns of the area's reliable neuroids,
  each neuroid z-scored across stimuli, from trial means) and the layer RDM
  (the same distance on the layer's raw features). ``rsa_ceiling``: the
  split-half reliability of the area RDM (half RDMs compared the same way,
  Spearman-Brown corrected, averaged over 20 splits). ``rsa_corrected``:
  ``rsa / sqrt(rsa_ceiling)``. Bootstrap interval over the area's neuroids.
- Best layer, held out (nested): in each outer fold the layer is chosen by
  the median leave-one-out r of the area's reliable neuroids on the training
  stimuli only (for RSA: the RSA on training stimuli); its r on the test
  stimuli (its RSA among the test stimuli) makes the held-out score. The layer chosen most
  often is reported. ``in_sample_max`` beside it is the best layer's score
  chosen on the very data that scores it, an optimistic value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from neurozoo.data.responses import _trial_groups
from neurozoo.errors import NeurozooError
from neurozoo.mapping.ridge import KernelRidgeCV, kfold_indices
from neurozoo.mapping.rsa import compare_rdms, rdm_from_gram, rdm_from_patterns, upper

__all__ = [
    "ScoringConfig",
    "complete_repeats",
    "neural_rdm",
    "pearson_columns",
    "rdm_split_half_ceiling",
    "score_model",
    "bootstrap_median",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringConfig:
    """Settings of the scoring stage.

    Attributes
    ----------
    n_folds : int
        Outer cross-validation folds over stimuli.
    n_alphas, alpha_low, alpha_high : ridge penalty grid, relative to the mean
        eigenvalue of the training Gram matrix.
    reliability_threshold : float
        Minimum split-half reliability for a neuroid to enter area scores.
    n_bootstrap : int
        Bootstrap resamples for intervals (neuroids).
    rsa_comparison : str
        ``"spearman"`` or ``"pearson"``.
    seed : int
        Seeds folds, bootstrap and split-half splits.
    """

    n_folds: int = 5
    n_alphas: int = 30
    alpha_low: float = 1e-4
    alpha_high: float = 1e5
    reliability_threshold: float = 0.5
    n_bootstrap: int = 1000
    rsa_comparison: str = "spearman"
    seed: int = 0


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns. (n, t), (n, t) -> (t,)."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def bootstrap_median(values: np.ndarray, n_bootstrap: int, seed: int,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Median and percentile bootstrap interval of ``values`` (1-d)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_bootstrap, v.size))
    meds = np.median(v[idx], axis=1)
    lo, hi = np.quantile(meds, [(1 - level) / 2, (1 + level) / 2])
    return float(np.median(v)), float(lo), float(hi)


def complete_repeats(values: np.ndarray) -> np.ndarray:
    """Set each neuroid's incomplete repeats to NaN.

    A repeat (trial index) is complete for a neuroid when it is finite for
    every stimulus. Reliability splits complete repeats only, so the trial
    means that are scored use the same repeats.

    Parameters
    ----------
    values : ndarray, shape (n_trials, n_stimuli, n_neuroids)
    """
    complete = np.isfinite(values).all(axis=1, keepdims=True)
    dropped = int((np.isfinite(values) & ~complete).sum())
    if dropped:
        log.warning("%d finite values in incomplete repeats are not used", dropped)
    return np.where(complete, values, np.nan)


def neural_rdm(patterns: np.ndarray) -> np.ndarray:
    """RDM of neural patterns, each neuroid z-scored across stimuli first.

    Without z-scoring, the stimulus patterns share every neuroid's mean rate
    and correlation distance mostly tracks the overall response size.

    Parameters
    ----------
    patterns : ndarray, shape (n_stimuli, n_neuroids)
    """
    sd = patterns.std(axis=0)
    z = (patterns - patterns.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return rdm_from_patterns(z)


def rdm_split_half_ceiling(values: np.ndarray, n_splits: int = 20, seed: int = 0,
                           comparison: str = "spearman") -> float:
    """Split-half reliability of an area's RDM, Spearman-Brown corrected.

    Parameters
    ----------
    values : ndarray, shape (n_trials, n_stimuli, n_neuroids)
        NaN marks missing repeats. Each neuroid's complete repeats are split
        in halves as in :func:`neurozoo.data.split_half_reliability`; the RDM
        of each half (:func:`neural_rdm`) is compared with ``comparison``.
    """
    groups = _trial_groups(values)
    rngs = {t: np.random.default_rng([seed, len(t)]) for t in groups}
    acc = []
    for _ in range(n_splits):
        half_a = np.empty(values.shape[1:])
        half_b = np.empty(values.shape[1:])
        for trials, cols in groups.items():
            tr = np.asarray(trials)
            perm = tr[rngs[trials].permutation(len(tr))]
            k = len(tr) // 2
            half_a[:, cols] = values[perm[:k]][:, :, cols].mean(axis=0)
            half_b[:, cols] = values[perm[k:]][:, :, cols].mean(axis=0)
        r = compare_rdms(neural_rdm(half_a), neural_rdm(half_b), comparison)
        acc.append(2 * r / (1 + r))
    return float(np.nanmean(acc))


_AREA_CACHE: dict[tuple, tuple] = {}


def _area_rsa_reference(values: np.ndarray, y: np.ndarray, seed: int, n_boot: int,
                        comparison: str = "spearman"):
    """An area's RDM, its split-half ceiling and bootstrap RDMs.

    These depend on the neural data only, so they are computed once per
    process for every model scored against the same area.

    Parameters
    ----------
    values : ndarray, shape (n_trials, n_stimuli, n_neuroids)
    y : ndarray, shape (n_stimuli, n_neuroids)
        Trial means of ``values``.

    Returns
    -------
    rdm : ndarray, shape (n_stimuli, n_stimuli)
    ceiling : float
    boot : ndarray, shape (n_boot, n_pairs), float32
        Upper triangles (ranked for Spearman) of the RDMs of neuroids
        resampled with replacement.
    """
    import hashlib

    from scipy.stats import rankdata

    key = (hashlib.sha1(np.ascontiguousarray(values).view(np.uint8)).hexdigest(),
           seed, n_boot, comparison)
    if key not in _AREA_CACHE:
        rng = np.random.default_rng(seed)
        cols = np.arange(y.shape[1])
        prep = rankdata if comparison == "spearman" else (lambda v: v)
        boot = np.stack([
            prep(upper(neural_rdm(y[:, rng.choice(cols, cols.size)]))).astype(np.float32)
            for _ in range(n_boot)
        ])
        while len(_AREA_CACHE) >= 8:  # bounded: about 30 MB per area
            _AREA_CACHE.pop(next(iter(_AREA_CACHE)))
        _AREA_CACHE[key] = (neural_rdm(y),
                            rdm_split_half_ceiling(values, seed=seed, comparison=comparison),
                            boot)
    return _AREA_CACHE[key]


def _rank_pearson_rows(ranked: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Pearson between each row of ``ranked`` (B, m) and ``ref`` (m,)."""
    x = ranked - ranked.mean(axis=1, keepdims=True)
    y = ref - ref.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x @ y) / np.sqrt((x * x).sum(1) * (y @ y))


def score_model(summaries: dict, responses: xr.DataArray, reliability: np.ndarray,
                config: ScoringConfig, model_id: str) -> tuple[pd.DataFrame, xr.Dataset]:
    """Score every layer of one model against every area.

    Parameters
    ----------
    summaries : dict of layer -> LayerSummary
    responses : NeuralResponses, dims (trial, stimulus, neuroid)
    reliability : ndarray, shape (n_neuroids,)
    config : ScoringConfig
    model_id : str

    Returns
    -------
    table : DataFrame
        Tidy rows: model_id, layer, layer_index, relative_depth, area, metric,
        selection, value, ci_low, ci_high, n_neuroids, n_reliable.
    per_neuroid : xarray.Dataset
        ``ridge_r`` (layer, neuroid), ``ridge_alpha`` (fold, layer, neuroid),
        ``ridge_r_heldout`` (neuroid) and ``reliability`` (neuroid).
    """
    from scipy.stats import rankdata

    values = complete_repeats(np.asarray(responses.values, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        y = np.nanmean(values, axis=0)  # (n_stimuli, n_neuroids)
    n, t = y.shape
    if np.isnan(y).any():
        raise NeurozooError(
            f"{model_id}: some neuroids have no complete repeat; validate the data")
    areas = np.asarray(responses.coords["area"].values).astype(str)
    area_names = sorted(set(areas))
    reliable = np.isfinite(reliability) & (reliability >= config.reliability_threshold)
    folds = kfold_indices(n, config.n_folds, config.seed)
    layers = list(summaries)
    n_layers = len(layers)

    r_all = np.empty((n_layers, t))
    r_folds = np.empty((config.n_folds, n_layers, t))
    alpha_all = np.empty((config.n_folds, n_layers, t))
    inner_r = np.empty((config.n_folds, n_layers, t))
    layer_rdms = []
    for li, name in enumerate(layers):
        s = summaries[name]
        pred = np.empty((n, t))
        for f, test in enumerate(folds):
            train = np.setdiff1d(np.arange(n), test)
            m = KernelRidgeCV(n_alphas=config.n_alphas, alpha_low=config.alpha_low,
                              alpha_high=config.alpha_high)
            m.fit(s.gram[np.ix_(train, train)], y[train])
            pred[test] = m.predict(s.gram[np.ix_(test, train)])
            alpha_all[f, li] = m.alpha_
            inner_r[f, li] = pearson_columns(m.loo_predictions_, y[train])
            r_folds[f, li] = pearson_columns(pred[test], y[test])
        r_all[li] = np.mean(r_folds[:, li], axis=0)
        layer_rdms.append(rdm_from_gram(s.gram, s.rowsum, s.n_features))

    rows = []
    sqrt_rel = np.sqrt(np.where(reliability > 0, reliability, np.nan))

    def metrics(r: np.ndarray) -> dict[str, np.ndarray]:
        return {"ridge_r": r, "ridge_r_corrected": r / sqrt_rel,
                "ridge_fev": r * np.abs(r) / reliability}

    def add(layer, li, area, metric, selection, stats, n_neuroids, n_rel):
        rows.append({
            "model_id": model_id, "layer": layer,
            "layer_index": summaries[layer].index if layer else -1,
            "relative_depth": summaries[layer].relative_depth if layer else np.nan,
            "area": area, "metric": metric, "selection": selection,
            "value": stats[0], "ci_low": stats[1], "ci_high": stats[2],
            "n_neuroids": n_neuroids, "n_reliable": n_rel,
        })

    seed = config.seed
    r_heldout = np.full(t, np.nan)
    for area in area_names:
        in_area = areas == area
        sel = in_area & reliable
        n_area, n_rel = int(in_area.sum()), int(sel.sum())
        if n_rel == 0:
            log.warning("%s: no reliable neuroids in %s; area skipped", model_id, area)
            continue
        # ---- ridge, every layer
        per_layer: dict[str, list] = {}
        for li, name in enumerate(layers):
            for metric, v in metrics(r_all[li]).items():
                st = bootstrap_median(v[sel], config.n_bootstrap, seed)
                add(name, li, area, metric, "layer", st, n_area, n_rel)
                per_layer.setdefault(metric, []).append(st)
        for metric, stats_list in per_layer.items():
            best_in = int(np.nanargmax([st[0] for st in stats_list]))
            add(layers[best_in], best_in, area, metric, "in_sample_max",
                stats_list[best_in], n_area, n_rel)
        # ---- ridge, nested best layer
        chosen = []
        for f in range(len(folds)):
            chosen.append(int(np.nanargmax(np.nanmedian(inner_r[f][:, sel], axis=1))))
        r_heldout[sel] = np.mean([r_folds[f, li][sel] for f, li in enumerate(chosen)],
                                 axis=0)
        mode = max(set(chosen), key=chosen.count)
        for metric, v in metrics(np.where(sel, r_heldout, np.nan)).items():
            add(layers[mode], mode, area, metric, "best_heldout",
                bootstrap_median(v[sel], config.n_bootstrap, seed), n_area, n_rel)

        # ---- RSA: area RDM from reliable neuroids; bootstrap over neuroids
        area_rdm, ceiling, boot = _area_rsa_reference(
            values[:, :, sel], y[:, sel], seed, config.n_bootstrap,
            config.rsa_comparison)
        rsa_vals = []
        for li, name in enumerate(layers):
            ref = layer_rdms[li]
            if not np.isfinite(upper(ref)).all():
                rsa_vals.append(np.nan)
                continue
            value = compare_rdms(area_rdm, ref, config.rsa_comparison)
            rsa_vals.append(value)
            ref_u = upper(ref)
            bs = _rank_pearson_rows(
                boot, rankdata(ref_u) if config.rsa_comparison == "spearman" else ref_u)
            lo, hi = np.nanquantile(bs, [0.025, 0.975])
            add(name, li, area, "rsa", "layer", (value, lo, hi), n_area, n_rel)
            c = np.sqrt(ceiling) if ceiling > 0 else np.nan
            add(name, li, area, "rsa_corrected", "layer",
                (value / c, lo / c, hi / c), n_area, n_rel)
        add("", -1, area, "rsa_ceiling", "area", (ceiling, np.nan, np.nan),
            n_area, n_rel)
        if np.isfinite(rsa_vals).any():
            bi = int(np.nanargmax(rsa_vals))
            add(layers[bi], bi, area, "rsa", "in_sample_max",
                (rsa_vals[bi], np.nan, np.nan), n_area, n_rel)
            # nested: choose on training stimuli, evaluate on test stimuli
            held, chosen = [], []
            for test in folds:
                train = np.setdiff1d(np.arange(n), test)
                tr_scores = [
                    compare_rdms(area_rdm[np.ix_(train, train)],
                                 layer_rdms[li][np.ix_(train, train)],
                                 config.rsa_comparison)
                    if np.isfinite(rsa_vals[li]) else np.nan
                    for li in range(n_layers)
                ]
                li = int(np.nanargmax(tr_scores))
                chosen.append(li)
                held.append(compare_rdms(area_rdm[np.ix_(test, test)],
                                         layer_rdms[li][np.ix_(test, test)],
                                         config.rsa_comparison))
            mode = max(set(chosen), key=chosen.count)
            # mean over folds of the RSA on each fold's test stimuli only (about
            # n / n_folds stimuli): not comparable to the all-stimuli rows, and
            # without an interval (NaN).
            add(layers[mode], mode, area, "rsa", "best_heldout",
                (float(np.nanmean(held)), np.nan, np.nan), n_area, n_rel)

    table = pd.DataFrame(rows)
    per_neuroid = xr.Dataset(
        {
            "ridge_r": (("layer", "neuroid"), r_all),
            "ridge_r_folds": (("fold", "layer", "neuroid"), r_folds),
            "ridge_alpha": (("fold", "layer", "neuroid"), alpha_all),
            "ridge_inner_r": (("fold", "layer", "neuroid"), inner_r),
            "ridge_r_heldout": (("neuroid",), r_heldout),
            "reliability": (("neuroid",), reliability),
            "reliable": (("neuroid",), reliable),
        },
        coords={
            "layer": np.asarray(layers, dtype=str),
            "neuroid_id": ("neuroid", np.asarray(responses.coords["neuroid_id"].values,
                                                 dtype=str)),
            "area": ("neuroid", areas),
            "specimen_id": ("neuroid", np.asarray(responses.coords["specimen_id"].values)),
            "relative_depth": ("layer", [summaries[x].relative_depth for x in layers]),
        },
        attrs={"model_id": model_id},
    )
    return table, per_neuroid
