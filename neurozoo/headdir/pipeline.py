"""The head-direction stages as entrypoints: train, analyze, figures.

All three read and write one results folder:

=====================  ==========================================  ============
file                   content                                     written by
=====================  ==========================================  ============
``config.json``        configuration and provenance                train
``checkpoint.pt``      model, optimiser, loss log, provenance      train
``loss.csv``           loss log                                    train
``analysis.npz``       tuning curves, joint maps, classes,         analyze
                       sorted weights, offset profiles, errors
``metrics.json``       errors, class counts, profile phases,       analyze
                       per-unit measures, provenance
``*.png``              figures                                     figures
=====================  ==========================================  ============
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from neurozoo.errors import NeurozooError
from neurozoo.headdir import analysis as an
from neurozoo.headdir.config import HeadDirConfig
from neurozoo.headdir.model import HeadDirRNN
from neurozoo.headdir.task import Trials
from neurozoo.headdir.train import (
    heading_error_deg,
    heldout_trials,
    load_trained,
    provenance,
    run_trials,
    train,
)
from neurozoo.io import atomic_path, read_json, write_json

__all__ = [
    "ANALYSIS_FILE",
    "METRICS_FILE",
    "samples",
    "analyze_model",
    "run_train",
    "run_analyze",
    "run_figures",
    "load_analysis",
]

logger = logging.getLogger(__name__)

ANALYSIS_FILE = "analysis.npz"
METRICS_FILE = "metrics.json"


def samples(
    trials: Trials, rates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten the post-cue steps of trials into samples.

    Parameters
    ----------
    trials : Trials
        The trials that were run.
    rates : numpy.ndarray
        ``(n_trials, n_steps, n_units)``.

    Returns
    -------
    rates : numpy.ndarray
        ``(n_samples, n_units)``.
    heading : numpy.ndarray
        ``(n_samples,)``.
    velocity : numpy.ndarray
        ``(n_samples,)``.
    """
    c = trials.cue_steps
    return (
        rates[:, c:].reshape(-1, rates.shape[-1]),
        trials.heading[:, c:].ravel(),
        trials.velocity[:, c:].ravel(),
    )


def analyze_model(model: HeadDirRNN, config: HeadDirConfig) -> tuple[dict, dict]:
    """Evaluate and dissect a network on held-out trials.

    Parameters
    ----------
    model : HeadDirRNN
        Trained network.
    config : HeadDirConfig
        Its run configuration (task statistics, analysis settings, seed).

    Returns
    -------
    arrays : dict
        Named numpy arrays (see ``analysis.npz`` in the module docstring).
    metrics : dict
        JSON-ready summary: heading errors, class counts, profile phases and
        per-unit measures.
    """
    ac = config.analysis
    seed = config.seed
    trials = heldout_trials(config)
    c = trials.cue_steps
    out_noisy, _ = run_trials(model, trials, noise=True, seed=seed, keep_rates=False)
    out_clean, rates_clean = run_trials(model, trials, noise=False, seed=seed)
    rates = rates_clean
    if ac.noise:
        _, rates = run_trials(model, trials, noise=True, seed=seed)
    err_noisy = heading_error_deg(out_noisy, trials.heading)[:, c:]
    err_clean = heading_error_deg(out_clean, trials.heading)[:, c:]

    long_steps = config.task.n_steps * ac.long_factor
    long = heldout_trials(config, n_steps=long_steps)
    long_noisy, _ = run_trials(model, long, noise=True, seed=seed, keep_rates=False)
    long_clean, _ = run_trials(model, long, noise=False, seed=seed, keep_rates=False)
    long_err_noisy = heading_error_deg(long_noisy, long.heading)
    long_err_clean = heading_error_deg(long_clean, long.heading)

    r, h, v = samples(trials, rates)
    vstd = config.task.velocity_std
    classes = an.classify_units(r, h, v, ac, vstd)
    v_edges = np.linspace(
        -ac.velocity_range * vstd, ac.velocity_range * vstd, ac.velocity_bins + 1
    )
    vcurves, vcenters, _ = an.tuning_velocity(r, v, v_edges)
    joint, joint_counts = an.joint_tuning(r, h, v, ac.heading_bins, v_edges)
    w = model.effective_weights().detach().cpu().numpy()
    order, w_sorted = an.sort_by_preferred(w, classes.preferred, classes.labels)
    profiles, offsets = an.offset_profiles(
        w, classes.preferred, classes.labels, ac.offset_bins
    )
    phases = {
        k: float(np.degrees(an.profile_phase(p, offsets))) for k, p in profiles.items()
    }
    long_curve = an.error_over_time(long_err_noisy)
    long_curve_clean = an.error_over_time(long_err_clean)

    arrays = {
        "labels": classes.labels.astype("U16"),
        "preferred": classes.preferred,
        "selectivity": classes.selectivity,
        "turn_index": classes.turn_index,
        "mean_rate": classes.mean_rate,
        "heading_curves": classes.heading_curves,
        "heading_centers": classes.heading_centers,
        "velocity_curves": vcurves,
        "velocity_centers": vcenters,
        "joint_maps": joint,
        "joint_counts": joint_counts,
        "weights": w,
        "sorted_order": order,
        "sorted_weights": w_sorted,
        "offset_centers": offsets,
        "profile_names": np.array(list(profiles), dtype="U40"),
        "profiles": np.array(list(profiles.values())).reshape(len(profiles), -1),
        "error_time_mean": long_curve["mean"],
        "error_time_median": long_curve["median"],
        "error_time_q90": long_curve["q90"],
        "error_time_mean_noiseless": long_curve_clean["mean"],
        "train_steps": np.array(config.task.n_steps),
        "cue_steps": np.array(c),
    }
    lc = long.cue_steps
    window = slice(max(lc, long_steps - config.task.n_steps // 5), long_steps)
    metrics = {
        "heading_error_deg": {
            "heldout_mean": float(err_noisy.mean()),
            "heldout_median": float(np.median(err_noisy)),
            "heldout_mean_noiseless": float(err_clean.mean()),
            "n_trials": trials.n_trials,
            "n_steps": trials.n_steps,
            "note": "absolute error of atan2(sin, cos) readout, post-cue steps; "
            "'heldout_mean' with the trained noise on",
        },
        "long_trials": {
            "n_steps": long_steps,
            "factor": ac.long_factor,
            "mean": float(long_err_noisy[:, lc:].mean()),
            "mean_noiseless": float(long_err_clean[:, lc:].mean()),
            "final_window_mean": float(long_err_noisy[:, window].mean()),
            "final_window_steps": [window.start, window.stop],
        },
        "unit_counts": classes.counts(),
        "profile_phase_deg": phases,
        "units": {
            "label": classes.labels.tolist(),
            "preferred_deg": np.round(np.degrees(classes.preferred), 2).tolist(),
            "selectivity": np.round(classes.selectivity, 4).tolist(),
            "turn_index": np.round(classes.turn_index, 4).tolist(),
            "mean_rate": np.round(classes.mean_rate, 5).tolist(),
        },
        "criteria": {
            "silent": f"mean |rate| < {ac.silent_rate}",
            "heading_tuned": f"selectivity >= {ac.min_selectivity}",
            "shifter": f"|turn index| >= {ac.min_turn_index}, turns are "
            f"|v| > {ac.turn_threshold} x velocity std ({vstd:.4g} rad/step)",
        },
    }
    return arrays, metrics


def run_train(
    config: HeadDirConfig,
    out_dir: str | Path,
    device: str | None = "cpu",
    resume: bool = True,
    progress: bool = True,
):
    """Train (or resume) a run into ``out_dir``; see
    :func:`neurozoo.headdir.train.train`."""
    return train(config, out_dir, device=device, resume=resume, progress=progress)


def run_analyze(out_dir: str | Path, device: str | None = "cpu") -> dict:
    """Analyse the trained network of a results folder.

    Writes ``analysis.npz`` and ``metrics.json`` (atomically).

    Parameters
    ----------
    out_dir : str or Path
        Folder written by :func:`run_train`.
    device : str or None
        Where to run the model.

    Returns
    -------
    dict
        The metrics written.
    """
    out = Path(out_dir)
    model, config, state = load_trained(out, device)
    if not state.get("done", False):
        logger.warning(
            "%s: training stopped at update %d of %d; analysing that checkpoint",
            out,
            state["step"],
            config.train.n_updates,
        )
    arrays, metrics = analyze_model(model, config)
    log = state.get("log") or []
    metrics = {
        **provenance(config, state.get("device")),
        "training": {
            "updates_done": state["step"],
            "n_updates": config.train.n_updates,
            "finished": bool(state.get("done", False)),
            "wall_time_s": round(float(state.get("wall_time_s", 0.0)), 2),
            "final_loss": log[-1]["loss"] if log else None,
            "final_train_error_deg": log[-1]["error_deg"] if log else None,
        },
        **metrics,
    }
    with atomic_path(out / ANALYSIS_FILE) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    write_json(out / METRICS_FILE, metrics)
    logger.info(
        "%s: held-out error %.2f deg, classes %s",
        out,
        metrics["heading_error_deg"]["heldout_mean"],
        metrics["unit_counts"],
    )
    return metrics


def load_analysis(out_dir: str | Path) -> tuple[dict, dict]:
    """Read ``analysis.npz`` and ``metrics.json`` of a results folder.

    Parameters
    ----------
    out_dir : str or Path
        Results folder.

    Returns
    -------
    arrays : dict
        Named arrays.
    metrics : dict
        The metrics.
    """
    out = Path(out_dir)
    if not (out / ANALYSIS_FILE).is_file() or not (out / METRICS_FILE).is_file():
        raise NeurozooError(f"out: no {ANALYSIS_FILE} in {out}; run analyze first")
    with np.load(out / ANALYSIS_FILE) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, read_json(out / METRICS_FILE)


def run_figures(out_dir: str | Path) -> list[Path]:
    """Draw the PNG figures of an analysed results folder.

    Parameters
    ----------
    out_dir : str or Path
        Folder holding ``analysis.npz`` (and ``loss.csv``).

    Returns
    -------
    list of Path
        The figures written.
    """
    from neurozoo.headdir.figures import draw_all

    arrays, metrics = load_analysis(out_dir)
    return draw_all(Path(out_dir), arrays, metrics)
