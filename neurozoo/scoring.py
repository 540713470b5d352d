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
- ``pls_r`` (``methods`` includes ``"pls"``): like ``ridge_r``, with PLS
  regression (``pls_components`` latent components, no scaling; see
  :mod:`neurozoo.mapping.pls`) on the same outer folds: Pearson r on each
  fold's test stimuli, averaged over folds. PLS fits all targets jointly, so
  it is fit per area, on all of the area's neuroids (reliable or not): an
  area's score does not depend on the other areas in the run. At most
  ``n_train - 1`` components exist (the rank of the centred training Gram
  matrix); a larger ``pls_components`` is clipped to that, with a warning.
  ``pls_r_corrected``: ``r / sqrt(rho)``. There is no held-out best layer
  for PLS (it has no cheap inner criterion), only ``in_sample_max``.
- ``rsa``: the comparison (``rsa_comparison``: Spearman by default, Pearson
  or Kendall's tau-a) of the upper triangles of the area RDM and the layer
  RDM. The area RDM is the ``rsa_distance`` (``1 - Pearson r`` by default,
  or Euclidean) between stimulus patterns of the area's reliable neuroids,
  each neuroid z-scored across stimuli, from trial means; the layer RDM is
  the same distance on the layer's raw features. ``rsa_ceiling``: the
  split-half reliability of the area RDM (half RDMs built and compared the
  same way, Spearman-Brown corrected, averaged over 20 splits; for tau-a the
  Spearman-Brown step is a heuristic). ``rsa_corrected``:
  ``rsa / sqrt(rsa_ceiling)``. Bootstrap interval over the area's neuroids.
- ``cka`` (``methods`` includes ``"cka"``): linear CKA between the layer's
  Gram matrix ``K = X X^T`` and ``L = Y Y^T`` of the trial means ``Y`` of
  the area's reliable neuroids (raw, not z-scored), both centred over
  stimuli: ``<HKH, HLH>_F / (||HKH||_F ||HLH||_F)``. Bootstrap interval
  over neuroids (resampled columns of ``Y``, computed in closed form): the
  percentile interval shifted by the bootstrap's bias, since duplicated
  neuroids lower CKA (see :func:`cka_bootstrap`). No held-out best layer,
  only ``in_sample_max``.
- Best layer, held out (nested): in each outer fold the layer is chosen by
  the median leave-one-out r of the area's reliable neuroids on the training
  stimuli only (for RSA: the RSA on training stimuli); its r on the test
  stimuli (its RSA among the test stimuli) makes the held-out score. The layer chosen most
  often is reported. ``in_sample_max`` beside it is the best layer's score
  chosen on the very data that scores it, an optimistic value.

Layers given as random projections (:class:`~neurozoo.features.LayerProjection`,
the primal path for stimulus sets above ``max_gram_stimuli``) are scored by
ridge only (:class:`~neurozoo.mapping.primal.PrimalRidgeCV`, the same
estimator, folds and penalty grid); PLS, RSA and CKA need the exact Gram
matrix and skip them, with a warning naming the layers.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from neurozoo.data.responses import _trial_groups
from neurozoo.errors import NeurozooError
from neurozoo.mapping.ridge import KernelRidgeCV, fold_mean, kfold_indices
from neurozoo.mapping.rsa import (
    compare_rdms,
    kendall_tau_a,
    linear_cka,
    neural_rdm,
    rdm_from_gram,
    upper,
)

#: Bumped when the meaning of scores changes, so that cached scores of an
#: older version are recomputed (2: RSA held-out layer chosen on per-fold
#: training RDMs; folds of at least 3 stimuli; 3: the n_scored column; 4: r
#: averages the folds where it is defined, see neurozoo.mapping.ridge.fold_mean).
SCORING_VERSION = 4

__all__ = [
    "SCORING_VERSION",
    "ScoringConfig",
    "check_methods",
    "cka_bootstrap",
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
        ``"spearman"``, ``"pearson"`` or ``"kendall_a"``.
    seed : int
        Seeds folds, bootstrap and split-half splits.
    methods : tuple of str
        Mapping methods to run, a subset of
        :data:`neurozoo.mapping.engine.METHODS` (``ridge``, ``pls``, ``rsa``,
        ``cka``). A list (from YAML or JSON) is stored as a tuple, so the
        config stays hashable and serialises as a JSON list either way.
    pls_components : int
        PLS latent components (Brain-Score's 25); clipped, with a warning, to
        ``n_train - 1`` when the training folds are smaller.
    rsa_distance : str
        ``"correlation"`` (1 - Pearson r) or ``"euclidean"``: the RDM distance
        for layers, areas and the RDM ceiling alike.
    device : str
        Torch device of the mapping (ridge and PLS): ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``, ``"auto"`` (see :func:`neurozoo.features.resolve_device`).
    dtype : str
        ``"float64"`` or ``"float32"``: precision of the products with the
        targets (see :mod:`neurozoo.mapping.backend` for tolerances).
    """

    n_folds: int = 5
    n_alphas: int = 30
    alpha_low: float = 1e-4
    alpha_high: float = 1e5
    reliability_threshold: float = 0.5
    n_bootstrap: int = 1000
    rsa_comparison: str = "spearman"
    seed: int = 0
    methods: tuple[str, ...] = ("ridge", "rsa")
    pls_components: int = 25
    rsa_distance: str = "correlation"
    device: str = "cpu"
    dtype: str = "float64"

    def __post_init__(self):
        if isinstance(self.methods, list):
            object.__setattr__(self, "methods", tuple(self.methods))


def check_methods(methods) -> tuple[str, ...]:
    """Validate a list of mapping method names; returns them as a tuple.

    Raises
    ------
    NeurozooError
        Not a list or tuple of strings, empty, a duplicate or an unknown
        name; the message lists the valid names.
    """
    from neurozoo.mapping.engine import METHODS

    valid = ", ".join(METHODS)
    if isinstance(methods, str) or not isinstance(methods, (list, tuple)) or not all(
            isinstance(m, str) for m in methods):
        raise NeurozooError(f"config field 'scoring.methods': expected a list of method "
                            f"names (valid: {valid}), got {methods!r}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise NeurozooError(f"config field 'scoring.methods': unknown method(s) "
                            f"{unknown} (valid: {valid})")
    if not methods:
        raise NeurozooError(f"config field 'scoring.methods': expected at least one of "
                            f"{valid}")
    twice = sorted({m for m in methods if list(methods).count(m) > 1})
    if twice:
        raise NeurozooError(f"config field 'scoring.methods': {twice} listed twice")
    return tuple(methods)


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


def rdm_split_half_ceiling(values: np.ndarray, n_splits: int = 20, seed: int = 0,
                           comparison: str = "spearman",
                           distance: str = "correlation") -> float:
    """Split-half reliability of an area's RDM, Spearman-Brown corrected.

    Parameters
    ----------
    values : ndarray, shape (n_trials, n_stimuli, n_neuroids)
        NaN marks missing repeats. Each neuroid's complete repeats are split
        in halves as in :func:`neurozoo.data.split_half_reliability`; the RDM
        of each half (:func:`neural_rdm` with ``distance``) is compared with
        ``comparison``.
    n_splits : int
    seed : int
    comparison : {"spearman", "pearson", "kendall_a"}
    distance : {"correlation", "euclidean"}

    Returns
    -------
    float
        The mean over splits of ``2 r / (1 + r)``.
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
        r = compare_rdms(neural_rdm(half_a, distance), neural_rdm(half_b, distance),
                         comparison)
        acc.append(2 * r / (1 + r))
    return float(np.nanmean(acc))


_AREA_CACHE: dict[tuple, tuple] = {}


def _area_rsa_reference(values: np.ndarray, y: np.ndarray, seed: int, n_boot: int,
                        comparison: str = "spearman", distance: str = "correlation"):
    """An area's RDM, its split-half ceiling and bootstrap RDMs.

    These depend on the neural data only, so they are computed once per
    process for every model scored against the same area.

    Parameters
    ----------
    values : ndarray, shape (n_trials, n_stimuli, n_neuroids)
    y : ndarray, shape (n_stimuli, n_neuroids)
        Trial means of ``values``.
    seed, n_boot : int
    comparison, distance : str
        As in :func:`rdm_split_half_ceiling`.

    Returns
    -------
    rdm : ndarray, shape (n_stimuli, n_stimuli)
    ceiling : float
    boot : ndarray, shape (n_boot, n_pairs), float32
        Upper triangles (ranked for Spearman and Kendall's tau-a, which
        depend on ranks only) of the RDMs of neuroids resampled with
        replacement.
    """
    import hashlib

    from scipy.stats import rankdata

    key = (hashlib.sha1(np.ascontiguousarray(values).view(np.uint8)).hexdigest(),
           seed, n_boot, comparison, distance)
    if key not in _AREA_CACHE:
        rng = np.random.default_rng(seed)
        cols = np.arange(y.shape[1])
        prep = rankdata if comparison in ("spearman", "kendall_a") else (lambda v: v)
        boot = np.stack([
            prep(upper(neural_rdm(y[:, rng.choice(cols, cols.size)], distance))
                 ).astype(np.float32)
            for _ in range(n_boot)
        ])
        while len(_AREA_CACHE) >= 8:  # bounded: about 30 MB per area
            _AREA_CACHE.pop(next(iter(_AREA_CACHE)))
        _AREA_CACHE[key] = (neural_rdm(y, distance),
                            rdm_split_half_ceiling(values, seed=seed,
                                                   comparison=comparison,
                                                   distance=distance),
                            boot)
    return _AREA_CACHE[key]


_CKA_CACHE: dict[tuple, tuple] = {}


def _cka_reference(y: np.ndarray, seed: int, n_boot: int):
    """The neural side of :func:`cka_bootstrap`, cached per area.

    Returns
    -------
    yc : ndarray, shape (n_stimuli, n_neuroids)
        ``y`` centred over stimuli.
    counts : ndarray, shape (n_boot, n_neuroids)
        How often each neuroid is drawn in each resample.
    norm : ndarray, shape (n_boot,)
        ``||Yc diag(c) Yc^T||_F`` of each resample.
    """
    import hashlib

    key = (hashlib.sha1(np.ascontiguousarray(y).view(np.uint8)).hexdigest(), y.shape,
           seed, n_boot)
    if key not in _CKA_CACHE:
        yc = y - y.mean(axis=0)
        t = y.shape[1]
        idx = np.random.default_rng([seed, 2]).integers(0, t, size=(n_boot, t))
        counts = np.stack([np.bincount(row, minlength=t) for row in idx]).astype(
            np.float64)
        # ||Yc diag(c) Yc^T||_F^2 = c^T M c with M = (Yc^T Yc)**2 (elementwise),
        # built in column blocks so that memory stays O(n_boot t + 1024 t).
        norm2 = np.zeros(n_boot)
        for lo in range(0, t, 1024):
            block = (yc.T @ yc[:, lo:lo + 1024]) ** 2  # (t, b)
            norm2 += ((counts @ block) * counts[:, lo:lo + 1024]).sum(axis=1)
        while len(_CKA_CACHE) >= 8:
            _CKA_CACHE.pop(next(iter(_CKA_CACHE)))
        _CKA_CACHE[key] = (yc, counts, np.sqrt(np.clip(norm2, 0, None)))
    return _CKA_CACHE[key]


def cka_bootstrap(gram: np.ndarray, y: np.ndarray, n_bootstrap: int, seed: int,
                  level: float = 0.95) -> tuple[float, float, float, np.ndarray]:
    """Linear CKA of a layer and neural responses, with a bootstrap interval.

    Resample ``b`` draws the neuroid columns
    ``numpy.random.default_rng([seed, 2]).integers(0, t, size=(n_bootstrap, t))[b]``
    of ``y``. With ``c_b`` the draw counts and ``Yc`` the centred ``y``, its
    CKA needs no n x n matrix per resample:
    ``<Kc, Yc diag(c) Yc^T> = sum_j c_j (yc_j^T Kc yc_j)`` and
    ``||Yc diag(c) Yc^T||_F^2 = c^T ((Yc^T Yc) ** 2) c``.

    Parameters
    ----------
    gram : ndarray, shape (n_stimuli, n_stimuli)
        ``X X^T`` of the layer (uncentred).
    y : ndarray, shape (n_stimuli, n_neuroids)
        Trial means.
    n_bootstrap, seed : int
    level : float

    Returns
    -------
    value : float
        ``linear_cka(gram, y @ y.T)``.
    ci_low, ci_high : float
        Percentile interval of the resampled values, shifted by the bootstrap
        estimate of the bias, ``mean(boot) - value``. Resampling with
        replacement duplicates neuroids, and a representation weighted towards
        fewer neuroids has a lower CKA (on the bundled data, AlexNet layers: the
        resamples average 0.006 to 0.016 below the value), so the plain percentile interval
        can lie below the value.
    boot : ndarray, shape (n_bootstrap,)
        The resampled values, unshifted.
    """
    from neurozoo.mapping.ridge import center_gram

    yc, counts, norm = _cka_reference(y, seed, n_bootstrap)
    value = linear_cka(gram, y @ y.T)
    kc = center_gram(np.asarray(gram, dtype=np.float64))
    per_neuroid = ((kc @ yc) * yc).sum(axis=0)  # (t,)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = (counts @ per_neuroid) / (np.sqrt((kc * kc).sum()) * norm)
    if not np.isfinite(boot).any():
        return value, np.nan, np.nan, boot
    # Duplicated neuroids weigh some columns more, which lowers CKA: shift the
    # percentile interval by the bootstrap's bias (mean resample - value).
    bias = float(np.nanmean(boot)) - value
    lo, hi = np.nanquantile(boot, [(1 - level) / 2, (1 + level) / 2]) - bias
    return value, float(lo), float(hi), boot


def _rank_pearson_rows(ranked: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Pearson between each row of ``ranked`` (B, m) and ``ref`` (m,)."""
    x = ranked - ranked.mean(axis=1, keepdims=True)
    y = ref - ref.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x @ y) / np.sqrt((x * x).sum(1) * (y @ y))


def _is_gram(summary) -> bool:
    """A Gram summary (exact) rather than a random projection."""
    return hasattr(summary, "gram")


def _ridge_layer(summary, y: np.ndarray, folds: list[np.ndarray],
                 config: ScoringConfig):
    """Outer-fold ridge of one layer: per-fold test r, penalties, inner LOO r.

    A Gram summary goes through :class:`KernelRidgeCV`, a projection through
    :class:`~neurozoo.mapping.primal.PrimalRidgeCV` (the same estimator).

    Returns
    -------
    r_folds, alpha, inner_r : ndarray, shape (n_folds, n_neuroids)
    """
    from neurozoo.mapping.primal import PrimalRidgeCV

    n, t = y.shape
    opts = dict(n_alphas=config.n_alphas, alpha_low=config.alpha_low,
                alpha_high=config.alpha_high, device=config.device, dtype=config.dtype)
    r_folds = np.empty((len(folds), t))
    alpha = np.empty((len(folds), t))
    inner = np.empty((len(folds), t))
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test)
        if _is_gram(summary):
            m = KernelRidgeCV(**opts)
            m.fit(summary.gram[np.ix_(train, train)], y[train])
            pred = m.predict(summary.gram[np.ix_(test, train)])
        else:
            m = PrimalRidgeCV(**opts).fit(summary.z[train], y[train])
            pred = m.predict(summary.z[test])
        alpha[f] = m.alpha_
        inner[f] = pearson_columns(m.loo_predictions_, y[train])
        r_folds[f] = pearson_columns(pred, y[test])
    return r_folds, alpha, inner


def _pls_layer(gram: np.ndarray, y: np.ndarray, folds: list[np.ndarray],
               n_components: int, config: ScoringConfig):
    """Outer-fold PLS of one layer and one area's neuroids.

    Returns
    -------
    r_folds : ndarray, shape (n_folds, n_neuroids)
        Pearson r on each fold's test stimuli.
    fitted : list of int
        Components fitted per fold (fewer than asked when the rank runs out).
    """
    from neurozoo.mapping.pls import KernelPLS

    n = y.shape[0]
    r_folds = np.empty((len(folds), y.shape[1]))
    fitted = []
    for f, test in enumerate(folds):
        train = np.setdiff1d(np.arange(n), test)
        m = KernelPLS(n_components=n_components, device=config.device,
                      dtype=config.dtype).fit(gram[np.ix_(train, train)], y[train])
        r_folds[f] = pearson_columns(m.predict(gram[np.ix_(test, train)]), y[test])
        fitted.append(m.n_components_)
    return r_folds, fitted


def score_model(summaries: dict, responses: xr.DataArray, reliability: np.ndarray,
                config: ScoringConfig, model_id: str) -> tuple[pd.DataFrame, xr.Dataset]:
    """Score every layer of one model against every area.

    Parameters
    ----------
    summaries : dict of layer -> LayerSummary or LayerProjection
        Gram summaries (every method) or random projections (the primal path:
        ridge only; the other methods skip these layers with a warning).
    responses : NeuralResponses, dims (trial, stimulus, neuroid)
    reliability : ndarray, shape (n_neuroids,)
    config : ScoringConfig
        ``config.methods`` chooses the methods; see the module docstring.
    model_id : str

    Returns
    -------
    table : DataFrame
        Tidy rows: model_id, layer, layer_index, relative_depth, area, metric,
        selection, value, ci_low, ci_high, n_neuroids, n_reliable, n_scored
        (the values behind a median over neuroids: the reliable neuroids with a
        finite score; for area-level metrics, RSA and CKA, n_reliable).
    per_neuroid : xarray.Dataset
        ``reliability`` and ``reliable`` (neuroid); with ridge, ``ridge_r``
        (layer, neuroid), ``ridge_r_folds``, ``ridge_alpha`` and
        ``ridge_inner_r`` (fold, layer, neuroid) and ``ridge_r_heldout``
        (neuroid); with PLS, ``pls_r`` (layer, neuroid), ``pls_r_folds``
        (fold, layer, neuroid) and ``pls_n_components`` (area_name, fold,
        layer; the components fitted, 0 where nothing was fitted).
        Variables of a method not run are absent; NaN marks layers and
        neuroids a method did not score (projected layers, areas without
        reliable neuroids). Attributes name the methods, the feature path
        (``gram``, ``primal`` or ``mixed``) and the layers skipped.
    """
    from scipy.stats import rankdata

    methods = check_methods(config.methods)
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
    is_gram = [_is_gram(summaries[name]) for name in layers]
    projected = [name for name, g in zip(layers, is_gram) if not g]
    gram_only = [m for m in ("pls", "rsa", "cka") if m in methods]
    if projected and gram_only:
        log.warning("%s: %s need Gram summaries: skipped for the %d projected layer(s) "
                    "(primal path): %s", model_id, ", ".join(gram_only), len(projected),
                    ", ".join(projected))
    path = "primal" if len(projected) == n_layers else (
        "mixed" if projected else "gram")
    log.info("%s: scoring %d layers (%s path) with %s", model_id, n_layers, path,
             ", ".join(m for m in methods if path != "primal" or m == "ridge"))

    do_ridge = "ridge" in methods
    if do_ridge:
        r_all = np.empty((n_layers, t))
        r_folds = np.empty((config.n_folds, n_layers, t))
        alpha_all = np.empty((config.n_folds, n_layers, t))
        inner_r = np.empty((config.n_folds, n_layers, t))
        for li, name in enumerate(layers):
            r_folds[:, li], alpha_all[:, li], inner_r[:, li] = _ridge_layer(
                summaries[name], y, folds, config)
            r_all[li] = fold_mean(r_folds[:, li])
        partial = np.isnan(r_folds).any(axis=(0, 1)) & np.isfinite(r_all).all(axis=0)
        if partial.any():
            log.info("%s: %d neuroids have no r on some test fold (constant responses "
                     "or predictions there, e.g. a sparse unit silent on those stimuli); "
                     "their ridge r averages the other folds (NaN in ridge_r_folds)",
                     model_id, int(partial.sum()))
    do_rsa = "rsa" in methods and any(is_gram)
    if do_rsa:
        layer_rdms = [
            rdm_from_gram(summaries[x].gram, summaries[x].rowsum, summaries[x].n_features,
                          config.rsa_distance) if g else None
            for x, g in zip(layers, is_gram)
        ]
        for name, ref in zip(layers, layer_rdms):
            if ref is not None and not np.isfinite(upper(ref)).all():
                log.warning("%s, layer %s: its RDM is undefined for some stimuli (a "
                            "constant pattern has no correlation distance); the layer "
                            "gets no RSA rows", model_id, name)
    do_pls = "pls" in methods and any(is_gram)
    if do_pls:
        pls_r_folds = np.full((config.n_folds, n_layers, t), np.nan)
        n_train = n - max(len(test) for test in folds)
        n_comp = min(config.pls_components, n_train - 1)
        if n_comp < config.pls_components:
            log.warning("%s: scoring.pls_components=%d, but %d training stimuli allow at "
                        "most %d components: using %d", model_id, config.pls_components,
                        n_train, n_train - 1, n_comp)
        pls_fitted = np.zeros((len(area_names), config.n_folds, n_layers), dtype=int)
    do_cka = "cka" in methods and any(is_gram)

    rows = []
    sqrt_rel = np.sqrt(np.where(reliability > 0, reliability, np.nan))

    def metrics(r: np.ndarray) -> dict[str, np.ndarray]:
        return {"ridge_r": r, "ridge_r_corrected": r / sqrt_rel,
                "ridge_fev": r * np.abs(r) / reliability}

    def add(layer, li, area, metric, selection, stats, n_neuroids, n_rel):
        """One row; ``stats`` is (value, ci_low, ci_high) or, for medians over
        neuroids, (value, ci_low, ci_high, number of finite values behind it)."""
        rows.append({
            "model_id": model_id, "layer": layer,
            "layer_index": summaries[layer].index if layer else -1,
            "relative_depth": summaries[layer].relative_depth if layer else np.nan,
            "area": area, "metric": metric, "selection": selection,
            "value": stats[0], "ci_low": stats[1], "ci_high": stats[2],
            "n_neuroids": n_neuroids, "n_reliable": n_rel,
            "n_scored": stats[3] if len(stats) > 3 else n_rel,
        })

    missing: dict[str, dict[str, int]] = {}  # area -> {layer: most neuroids left out}

    def median_of(v, layer, metric, area):
        """Bootstrap median over the reliable neuroids of ``area`` (``sel``)
        with the number of finite values it used (what it leaves out is
        counted in ``missing`` and logged once per area)."""
        v = v[sel]
        n_finite = int(np.isfinite(v).sum())
        if n_finite < v.size:
            per_layer = missing.setdefault(area, {})
            key = layer or "held-out best layer"
            per_layer[key] = max(per_layer.get(key, 0), v.size - n_finite)
        return (*bootstrap_median(v, config.n_bootstrap, seed), n_finite)

    def add_in_sample_max(area, metric, stats_by_layer, n_area, n_rel):
        """The best layer's row (by value), for layers that have one."""
        scored = [(li, st) for li, st in stats_by_layer if np.isfinite(st[0])]
        if scored:
            li, st = max(scored, key=lambda item: item[1][0])  # first on ties
            add(layers[li], li, area, metric, "in_sample_max", st, n_area, n_rel)

    seed = config.seed
    r_heldout = np.full(t, np.nan)
    for ai, area in enumerate(area_names):
        in_area = areas == area
        sel = in_area & reliable
        n_area, n_rel = int(in_area.sum()), int(sel.sum())
        if n_rel == 0:
            log.warning("%s: no reliable neuroids in %s; area skipped", model_id, area)
            continue
        if do_ridge:
            # ---- ridge, every layer
            per_layer: dict[str, list] = {}
            for li, name in enumerate(layers):
                for metric, v in metrics(r_all[li]).items():
                    st = median_of(v, name, metric, area)
                    add(name, li, area, metric, "layer", st, n_area, n_rel)
                    per_layer.setdefault(metric, []).append(st)
            for metric, stats_list in per_layer.items():
                add_in_sample_max(area, metric, list(enumerate(stats_list)), n_area,
                                  n_rel)
            # ---- ridge, nested best layer (none when a fold has no finite
            # inner score, e.g. every layer predicts a constant)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN medians
                inner_med = [np.nanmedian(inner_r[f][:, sel], axis=1)
                             for f in range(len(folds))]
            if all(np.isfinite(m).any() for m in inner_med):
                chosen = [int(np.nanargmax(m)) for m in inner_med]
                r_heldout[sel] = fold_mean(np.stack([r_folds[f, li][sel]
                                                     for f, li in enumerate(chosen)]))
                mode = max(set(chosen), key=chosen.count)
                for metric, v in metrics(np.where(sel, r_heldout, np.nan)).items():
                    add(layers[mode], mode, area, metric, "best_heldout",
                        median_of(v, "", metric, area), n_area, n_rel)
            else:
                log.warning("%s, %s: no layer has a finite leave-one-out score in "
                            "some fold; no held-out best layer", model_id, area)

        if do_pls:
            # ---- PLS: fit on all of the area's neuroids (targets are joint)
            cols = np.flatnonzero(in_area)
            pls_stats: dict[str, list] = {}
            for li, name in enumerate(layers):
                if not is_gram[li]:
                    continue
                rf, fitted = _pls_layer(summaries[name].gram, y[:, cols], folds, n_comp,
                                        config)
                pls_r_folds[:, li, cols] = rf
                pls_fitted[ai, :, li] = fitted
                r = fold_mean(pls_r_folds[:, li])
                for metric, v in (("pls_r", r), ("pls_r_corrected", r / sqrt_rel)):
                    st = median_of(v, name, metric, area)
                    add(name, li, area, metric, "layer", st, n_area, n_rel)
                    pls_stats.setdefault(metric, []).append((li, st))
            for metric, stats_list in pls_stats.items():
                add_in_sample_max(area, metric, stats_list, n_area, n_rel)

        if do_rsa:
            # ---- RSA: area RDM from reliable neuroids; bootstrap over neuroids
            comparison = config.rsa_comparison
            area_rdm, ceiling, boot = _area_rsa_reference(
                values[:, :, sel], y[:, sel], seed, config.n_bootstrap, comparison,
                config.rsa_distance)
            rsa_vals = []
            rsa_stats: dict[str, list] = {}
            for li, name in enumerate(layers):
                ref = layer_rdms[li]
                if ref is None or not np.isfinite(upper(ref)).all():
                    rsa_vals.append(np.nan)
                    continue
                value = compare_rdms(area_rdm, ref, comparison)
                rsa_vals.append(value)
                ref_u = upper(ref)
                if comparison == "kendall_a":  # rank-based: ranked boot RDMs are fine
                    bs = np.array([kendall_tau_a(b, ref_u) for b in boot])
                else:
                    bs = _rank_pearson_rows(
                        boot, rankdata(ref_u) if comparison == "spearman" else ref_u)
                lo, hi = np.nanquantile(bs, [0.025, 0.975])
                c = np.sqrt(ceiling) if ceiling > 0 else np.nan
                for metric, st in (("rsa", (value, lo, hi)),
                                   ("rsa_corrected", (value / c, lo / c, hi / c))):
                    add(name, li, area, metric, "layer", st, n_area, n_rel)
                    rsa_stats.setdefault(metric, []).append((li, st))
            add("", -1, area, "rsa_ceiling", "area", (ceiling, np.nan, np.nan),
                n_area, n_rel)
            for metric, stats_list in rsa_stats.items():
                add_in_sample_max(area, metric, stats_list, n_area, n_rel)
            if np.isfinite(rsa_vals).any():
                # nested: choose on training stimuli, evaluate on test stimuli.
                # The area RDMs are rebuilt per fold: the training RDM from the
                # training stimuli alone, the test RDM z-scored with the training
                # statistics (the all-stimuli RDM z-scores with test responses).
                held, chosen = [], []
                y_sel = y[:, sel]
                for test in folds:
                    train = np.setdiff1d(np.arange(n), test)
                    rdm_train = neural_rdm(y_sel[train], config.rsa_distance)
                    tr_scores = [
                        compare_rdms(rdm_train, layer_rdms[li][np.ix_(train, train)],
                                     comparison)
                        if np.isfinite(rsa_vals[li]) else np.nan
                        for li in range(n_layers)
                    ]
                    if not np.isfinite(tr_scores).any():
                        continue
                    li = int(np.nanargmax(tr_scores))
                    chosen.append(li)
                    rdm_test = neural_rdm(y_sel[test], config.rsa_distance,
                                          reference=y_sel[train])
                    held.append(compare_rdms(rdm_test, layer_rdms[li][np.ix_(test, test)],
                                             comparison))
                if chosen:
                    mode = max(set(chosen), key=chosen.count)
                    # mean over folds of the RSA on each fold's test stimuli only (about
                    # n / n_folds stimuli): not comparable to the all-stimuli rows, and
                    # without an interval (NaN).
                    add(layers[mode], mode, area, "rsa", "best_heldout",
                        (float(np.nanmean(held)), np.nan, np.nan), n_area, n_rel)

        if do_cka:
            # ---- linear CKA with the trial means of the reliable neuroids
            cka_stats = []
            for li, name in enumerate(layers):
                if not is_gram[li]:
                    continue
                value, lo, hi, _ = cka_bootstrap(summaries[name].gram, y[:, sel],
                                                 config.n_bootstrap, seed)
                add(name, li, area, "cka", "layer", (value, lo, hi), n_area, n_rel)
                cka_stats.append((li, (value, lo, hi)))
            add_in_sample_max(area, "cka", cka_stats, n_area, n_rel)

    for area, per_layer in missing.items():
        log.warning("%s, %s: some reliable neuroids have no finite score (r is "
                    "undefined where predictions or responses are constant on every "
                    "fold), so medians leave them out (column n_scored): %s",
                    model_id, area,
                    ", ".join(f"{layer}: up to {k}" for layer, k in per_layer.items()))
    table = pd.DataFrame(rows)
    data = {}
    if do_ridge:
        data.update({
            "ridge_r": (("layer", "neuroid"), r_all),
            "ridge_r_folds": (("fold", "layer", "neuroid"), r_folds),
            "ridge_alpha": (("fold", "layer", "neuroid"), alpha_all),
            "ridge_inner_r": (("fold", "layer", "neuroid"), inner_r),
            "ridge_r_heldout": (("neuroid",), r_heldout),
        })
    data.update({
        "reliability": (("neuroid",), reliability),
        "reliable": (("neuroid",), reliable),
    })
    if do_pls:
        data.update({
            "pls_r": (("layer", "neuroid"), fold_mean(pls_r_folds)),
            "pls_r_folds": (("fold", "layer", "neuroid"), pls_r_folds),
            "pls_n_components": (("area_name", "fold", "layer"), pls_fitted),
        })
    coords = {
        "layer": np.asarray(layers, dtype=str),
        "neuroid_id": ("neuroid", np.asarray(responses.coords["neuroid_id"].values,
                                             dtype=str)),
        "area": ("neuroid", areas),
        "specimen_id": ("neuroid", np.asarray(responses.coords["specimen_id"].values)),
        "relative_depth": ("layer", [summaries[x].relative_depth for x in layers]),
    }
    if do_pls:
        coords["area_name"] = np.asarray(area_names, dtype=str)
    per_neuroid = xr.Dataset(
        data, coords=coords,
        attrs={"model_id": model_id, "methods": ",".join(methods),
               "feature_path": path, "projected_layers": ",".join(projected),
               "gram_only_methods_skipped": ",".join(gram_only) if projected else "",
               **({"pls_components": int(n_comp)} if do_pls else {})},
    )
    return table, per_neuroid
