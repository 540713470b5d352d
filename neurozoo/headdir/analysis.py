"""Tuning, unit classes, connectivity structure and heading error.

Activity is analysed as samples: ``rates`` ``(n_samples, n_units)`` with the
true heading and angular velocity of each sample (the post-cue steps of
held-out trials, flattened).

Unit classes
------------
:func:`classify_units` labels each unit, in this order:

1. ``silent``: mean absolute rate below ``analysis.silent_rate``;
2. ``other``: heading selectivity (mean resultant length of the
   non-negative part of its heading tuning curve, :func:`preferred_heading`)
   below ``analysis.min_selectivity``;
3. ``left_shifter`` / ``right_shifter``: heading tuned and turn index
   (:func:`turn_index`) at least ``+analysis.min_turn_index`` (more active
   during left, counter-clockwise, turns) or at most
   ``-analysis.min_turn_index`` (right, clockwise, turns);
4. ``compass``: heading tuned, turn index in between.

Connectivity
------------
``W[i, j]`` is the weight from unit ``j`` onto unit ``i``. The angular offset
of a connection is ``wrap(pref[i] - pref[j])``: positive offsets point from
the sender to a receiver whose preferred heading lies counter-clockwise
(to the left). :func:`offset_profiles` averages weights in offset bins for each
pair of classes; a left shifter that pushes the bump left peaks at a positive
offset. :func:`profile_phase` summarises a profile by the phase of its first
circular harmonic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurozoo.errors import NeurozooError
from neurozoo.headdir.config import AnalysisConfig
from neurozoo.headdir.task import wrap_angle

__all__ = [
    "CLASSES",
    "TUNED_CLASSES",
    "UnitClasses",
    "heading_bins",
    "tuning_heading",
    "tuning_velocity",
    "joint_tuning",
    "preferred_heading",
    "turn_index",
    "classify_units",
    "sort_by_preferred",
    "offset_profiles",
    "profile_phase",
    "error_over_time",
    "class_counts",
]

CLASSES = ("compass", "left_shifter", "right_shifter", "other", "silent")
TUNED_CLASSES = ("compass", "left_shifter", "right_shifter")


def heading_bins(n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal bins over ``[-pi, pi)``.

    Parameters
    ----------
    n_bins : int
        Number of bins.

    Returns
    -------
    edges : numpy.ndarray
        ``(n_bins + 1,)``.
    centers : numpy.ndarray
        ``(n_bins,)``.
    """
    edges = np.linspace(-np.pi, np.pi, n_bins + 1)
    return edges, 0.5 * (edges[:-1] + edges[1:])


def _heading_index(heading: np.ndarray, n_bins: int) -> np.ndarray:
    idx = np.floor((wrap_angle(heading) + np.pi) / (2 * np.pi) * n_bins).astype(int)
    return np.clip(idx, 0, n_bins - 1)


def _check_samples(rates: np.ndarray, *others: np.ndarray) -> np.ndarray:
    rates = np.asarray(rates, dtype=np.float64)
    if rates.ndim != 2:
        raise NeurozooError(
            f"rates: expected shape (n_samples, n_units), got {rates.shape}"
        )
    for o in others:
        if np.shape(o) != (rates.shape[0],):
            raise NeurozooError(
                f"samples: expected ({rates.shape[0]},) per-sample values, "
                f"got {np.shape(o)}"
            )
    return rates


def _binned_mean(rates: np.ndarray, idx: np.ndarray, n_bins: int):
    """Mean rate per bin; ``idx`` < 0 drops a sample. NaN for empty bins."""
    keep = idx >= 0
    counts = np.bincount(idx[keep], minlength=n_bins).astype(float)
    sums = np.zeros((n_bins, rates.shape[1]))
    np.add.at(sums, idx[keep], rates[keep])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts == 0] = np.nan
    return means.T, counts


def tuning_heading(
    rates: np.ndarray, heading: np.ndarray, n_bins: int = 36
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean rate of each unit in heading bins.

    Parameters
    ----------
    rates : numpy.ndarray
        ``(n_samples, n_units)``.
    heading : numpy.ndarray
        ``(n_samples,)`` radians.
    n_bins : int
        Bins over ``[-pi, pi)``.

    Returns
    -------
    curves : numpy.ndarray
        ``(n_units, n_bins)``; NaN in bins without samples.
    centers : numpy.ndarray
        ``(n_bins,)`` bin centres, radians.
    counts : numpy.ndarray
        ``(n_bins,)`` samples per bin.
    """
    rates = _check_samples(rates, heading)
    curves, counts = _binned_mean(rates, _heading_index(heading, n_bins), n_bins)
    return curves, heading_bins(n_bins)[1], counts


def _velocity_index(velocity: np.ndarray, edges: np.ndarray) -> np.ndarray:
    n = len(edges) - 1
    idx = np.searchsorted(edges, velocity, side="right") - 1
    idx[velocity == edges[-1]] = n - 1
    idx[(velocity < edges[0]) | (velocity > edges[-1])] = -1
    return idx


def tuning_velocity(
    rates: np.ndarray, velocity: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean rate of each unit in angular-velocity bins.

    Parameters
    ----------
    rates : numpy.ndarray
        ``(n_samples, n_units)``.
    velocity : numpy.ndarray
        ``(n_samples,)`` radians per step.
    edges : numpy.ndarray
        ``(n_bins + 1,)`` increasing bin edges; samples outside are dropped.

    Returns
    -------
    curves : numpy.ndarray
        ``(n_units, n_bins)``; NaN in empty bins.
    centers : numpy.ndarray
        ``(n_bins,)``.
    counts : numpy.ndarray
        ``(n_bins,)``.
    """
    rates = _check_samples(rates, velocity)
    edges = np.asarray(edges, dtype=float)
    curves, counts = _binned_mean(
        rates, _velocity_index(np.asarray(velocity, float), edges), len(edges) - 1
    )
    return curves, 0.5 * (edges[:-1] + edges[1:]), counts


def joint_tuning(
    rates: np.ndarray,
    heading: np.ndarray,
    velocity: np.ndarray,
    n_heading_bins: int,
    velocity_edges: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean rate of each unit in joint (heading, velocity) bins.

    Parameters
    ----------
    rates : numpy.ndarray
        ``(n_samples, n_units)``.
    heading : numpy.ndarray
        ``(n_samples,)`` radians.
    velocity : numpy.ndarray
        ``(n_samples,)`` radians per step.
    n_heading_bins : int
        Bins over ``[-pi, pi)``.
    velocity_edges : numpy.ndarray
        ``(n_velocity_bins + 1,)`` edges; samples outside are dropped.

    Returns
    -------
    maps : numpy.ndarray
        ``(n_units, n_heading_bins, n_velocity_bins)``; NaN in empty bins.
    counts : numpy.ndarray
        ``(n_heading_bins, n_velocity_bins)``.
    """
    rates = _check_samples(rates, heading, velocity)
    edges = np.asarray(velocity_edges, dtype=float)
    nv = len(edges) - 1
    hi = _heading_index(heading, n_heading_bins)
    vi = _velocity_index(np.asarray(velocity, float), edges)
    idx = np.where(vi >= 0, hi * nv + vi, -1)
    flat, counts = _binned_mean(rates, idx, n_heading_bins * nv)
    return (
        flat.reshape(rates.shape[1], n_heading_bins, nv),
        counts.reshape(n_heading_bins, nv),
    )


def preferred_heading(
    curves: np.ndarray, centers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Preferred heading and selectivity from heading tuning curves.

    The preferred heading is the direction of ``sum_b c_b exp(i theta_b)`` with
    ``c = max(curve, 0)`` over bins with samples; the selectivity is that
    vector's length divided by ``sum_b c_b`` (the mean resultant length: 0
    for a flat curve, 1 for a curve non-zero in a single bin).

    Parameters
    ----------
    curves : numpy.ndarray
        ``(n_units, n_bins)``, NaN for empty bins.
    centers : numpy.ndarray
        ``(n_bins,)`` bin centres, radians.

    Returns
    -------
    preferred : numpy.ndarray
        ``(n_units,)`` radians in ``[-pi, pi)``; NaN for all-zero curves.
    selectivity : numpy.ndarray
        ``(n_units,)`` in ``[0, 1]``; 0 for all-zero curves.
    """
    c = np.nan_to_num(np.clip(np.asarray(curves, float), 0, None), nan=0.0)
    z = c @ np.exp(1j * np.asarray(centers))
    total = c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sel = np.where(total > 0, np.abs(z) / total, 0.0)
    pref = np.where(total > 0, wrap_angle(np.angle(z)), np.nan)
    return pref, sel


def turn_index(
    rates: np.ndarray,
    heading: np.ndarray,
    velocity: np.ndarray,
    threshold: float,
    n_heading_bins: int = 36,
) -> np.ndarray:
    """How much more a unit fires during left than during right turns.

    Within each heading bin holding both left (``v > threshold``) and right
    (``v < -threshold``) samples, the mean rate during each is taken; those
    bin means are averaged over the bins into ``L`` and ``R``, so an uneven
    sampling of headings cannot bias the index. Index ``(L - R) / (L + R)``
    on rates clipped at zero; 0 where ``L + R`` is 0.

    Parameters
    ----------
    rates : numpy.ndarray
        ``(n_samples, n_units)``.
    heading : numpy.ndarray
        ``(n_samples,)`` radians.
    velocity : numpy.ndarray
        ``(n_samples,)`` radians per step (positive = left).
    threshold : float
        Velocity magnitude that counts as turning (>= 0).
    n_heading_bins : int
        Heading bins for the balancing.

    Returns
    -------
    numpy.ndarray
        ``(n_units,)`` in ``[-1, 1]``.
    """
    rates = np.clip(_check_samples(rates, heading, velocity), 0, None)
    velocity = np.asarray(velocity, float)
    hi = _heading_index(heading, n_heading_bins)
    left, nl = _binned_mean(
        rates, np.where(velocity > threshold, hi, -1), n_heading_bins
    )
    right, nr = _binned_mean(
        rates, np.where(velocity < -threshold, hi, -1), n_heading_bins
    )
    both = (nl > 0) & (nr > 0)
    if not both.any():
        raise NeurozooError(
            "velocity: no heading bin has both left and right turns above "
            f"threshold {threshold:g}; lower analysis.turn_threshold"
        )
    lm = left[:, both].mean(axis=1)
    rm = right[:, both].mean(axis=1)
    total = lm + rm
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (lm - rm) / total, 0.0)


@dataclass
class UnitClasses:
    """Per-unit classification and the measures behind it.

    Attributes
    ----------
    labels : numpy.ndarray
        ``(n_units,)`` strings from :data:`CLASSES`.
    preferred : numpy.ndarray
        ``(n_units,)`` preferred heading, radians (NaN if never active).
    selectivity : numpy.ndarray
        ``(n_units,)`` mean resultant length of the heading tuning.
    turn_index : numpy.ndarray
        ``(n_units,)`` left-versus-right turn index.
    mean_rate : numpy.ndarray
        ``(n_units,)`` mean absolute rate.
    heading_curves : numpy.ndarray
        ``(n_units, n_heading_bins)`` heading tuning curves.
    heading_centers : numpy.ndarray
        ``(n_heading_bins,)`` radians.
    """

    labels: np.ndarray
    preferred: np.ndarray
    selectivity: np.ndarray
    turn_index: np.ndarray
    mean_rate: np.ndarray
    heading_curves: np.ndarray
    heading_centers: np.ndarray

    def counts(self) -> dict[str, int]:
        """Units per class, every class present (possibly 0)."""
        return class_counts(self.labels)


def class_counts(labels: np.ndarray) -> dict[str, int]:
    """Units per class.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n_units,)`` class names.

    Returns
    -------
    dict
        ``{class: count}`` for every class of :data:`CLASSES`.
    """
    labels = np.asarray(labels)
    return {c: int(np.sum(labels == c)) for c in CLASSES}


def classify_units(
    rates: np.ndarray,
    heading: np.ndarray,
    velocity: np.ndarray,
    config: AnalysisConfig,
    velocity_std: float,
) -> UnitClasses:
    """Label units compass, left/right shifter, other or silent.

    See the module docstring for the criteria.

    Parameters
    ----------
    rates : numpy.ndarray
        ``(n_samples, n_units)``.
    heading : numpy.ndarray
        ``(n_samples,)`` radians.
    velocity : numpy.ndarray
        ``(n_samples,)`` radians per step.
    config : AnalysisConfig
        Bins and thresholds.
    velocity_std : float
        Velocity scale (the task's stationary standard deviation);
        ``config.turn_threshold`` is in these units.

    Returns
    -------
    UnitClasses
    """
    rates = _check_samples(rates, heading, velocity)
    curves, centers, _ = tuning_heading(rates, heading, config.heading_bins)
    pref, sel = preferred_heading(curves, centers)
    ti = turn_index(
        rates,
        heading,
        velocity,
        config.turn_threshold * velocity_std,
        config.heading_bins,
    )
    mean_rate = np.abs(rates).mean(axis=0)
    labels = np.full(rates.shape[1], "compass", dtype=object)
    tuned = sel >= config.min_selectivity
    labels[tuned & (ti >= config.min_turn_index)] = "left_shifter"
    labels[tuned & (ti <= -config.min_turn_index)] = "right_shifter"
    labels[~tuned] = "other"
    labels[mean_rate < config.silent_rate] = "silent"
    return UnitClasses(labels.astype(str), pref, sel, ti, mean_rate, curves, centers)


def sort_by_preferred(
    weights: np.ndarray,
    preferred: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...] = TUNED_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """Recurrent weights of the chosen classes, grouped by class and sorted by
    preferred heading within each group.

    Parameters
    ----------
    weights : numpy.ndarray
        ``(n_units, n_units)``; ``weights[i, j]`` from ``j`` onto ``i``.
    preferred : numpy.ndarray
        ``(n_units,)`` radians.
    labels : numpy.ndarray
        ``(n_units,)`` class names.
    classes : tuple of str
        Groups in order; pass a single class for one sorted block.

    Returns
    -------
    order : numpy.ndarray
        ``(n_kept,)`` unit indices.
    sorted_weights : numpy.ndarray
        ``(n_kept, n_kept)`` = ``weights[order][:, order]``.
    """
    labels = np.asarray(labels)
    order = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        order.extend(idx[np.argsort(preferred[idx], kind="stable")])
    order = np.asarray(order, dtype=int)
    return order, np.asarray(weights)[np.ix_(order, order)]


def offset_profiles(
    weights: np.ndarray,
    preferred: np.ndarray,
    labels: np.ndarray,
    n_bins: int = 24,
    classes: tuple[str, ...] = TUNED_CLASSES,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Mean weight against angular offset, per (sender, receiver) class pair.

    Parameters
    ----------
    weights : numpy.ndarray
        ``(n_units, n_units)``; ``weights[i, j]`` from ``j`` onto ``i``.
    preferred : numpy.ndarray
        ``(n_units,)`` radians.
    labels : numpy.ndarray
        ``(n_units,)`` class names.
    n_bins : int
        Offset bins over ``[-pi, pi)``.
    classes : tuple of str
        Classes to pair up.

    Returns
    -------
    profiles : dict
        ``"pre->post"`` to ``(n_bins,)`` mean weight (NaN in empty bins), for
        every pair of ``classes`` with members, plus ``"pre->tuned"`` onto
        all units of ``classes``. Self-connections are left out.
    centers : numpy.ndarray
        ``(n_bins,)`` offset bin centres, radians.
    """
    w = np.asarray(weights, float)
    labels = np.asarray(labels)
    _, centers = heading_bins(n_bins)
    out: dict[str, np.ndarray] = {}
    tuned = np.isin(labels, classes)
    for pre in classes:
        pre_idx = np.flatnonzero(labels == pre)
        if pre_idx.size == 0:
            continue
        targets = [(post, np.flatnonzero(labels == post)) for post in classes]
        targets.append(("tuned", np.flatnonzero(tuned)))
        for post, post_idx in targets:
            if post_idx.size == 0:
                continue
            sub = w[np.ix_(post_idx, pre_idx)]
            off = wrap_angle(preferred[post_idx][:, None] - preferred[pre_idx][None, :])
            valid = post_idx[:, None] != pre_idx[None, :]
            idx = _heading_index(off[valid], n_bins)
            sums = np.bincount(idx, weights=sub[valid], minlength=n_bins)
            counts = np.bincount(idx, minlength=n_bins)
            with np.errstate(invalid="ignore", divide="ignore"):
                prof = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            out[f"{pre}->{post}"] = prof
    return out, centers


def profile_phase(profile: np.ndarray, centers: np.ndarray) -> float:
    """Phase (radians) of the first circular harmonic of an offset profile.

    For a profile ``a + b cos(offset - d)`` with ``b > 0`` this is ``d``: the
    offset receiving the strongest excitation relative to the mean.

    Parameters
    ----------
    profile : numpy.ndarray
        ``(n_bins,)``; NaN bins are skipped.
    centers : numpy.ndarray
        ``(n_bins,)`` radians.

    Returns
    -------
    float
        In ``[-pi, pi)``; NaN when the profile has no valid bins.
    """
    ok = np.isfinite(profile)
    if not ok.any():
        return float("nan")
    p = profile[ok] - profile[ok].mean()
    return float(wrap_angle(np.angle(np.sum(p * np.exp(1j * centers[ok])))))


def error_over_time(errors_deg: np.ndarray) -> dict[str, np.ndarray]:
    """Summary of heading error at each time step across trials.

    Parameters
    ----------
    errors_deg : numpy.ndarray
        ``(n_trials, n_steps)`` absolute error, degrees.

    Returns
    -------
    dict
        ``mean``, ``median``, ``q90`` each ``(n_steps,)``.
    """
    e = np.asarray(errors_deg, float)
    return {
        "mean": e.mean(axis=0),
        "median": np.median(e, axis=0),
        "q90": np.quantile(e, 0.9, axis=0),
    }
