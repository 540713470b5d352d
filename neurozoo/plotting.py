"""Figures of a scores table (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from neurozoo.errors import NeurozooError  # noqa: E402
from neurozoo.io import atomic_path  # noqa: E402

__all__ = [
    "plot_scores_by_area",
    "plot_score_vs_depth",
    "plot_score_vs_density",
    "sparse_checkpoints",
    "plot_all",
    "best_layer_selection",
    "select_rows",
]

log = logging.getLogger(__name__)
AREA_ORDER = ["VISp", "VISl", "VISal", "VISrl", "VISam", "VISpm"]


def _areas(table: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(table["area"]))
    return [a for a in AREA_ORDER if a in present] + sorted(
        a for a in present if a not in AREA_ORDER)


def best_layer_selection(table: pd.DataFrame, metric: str) -> str:
    """``"best_heldout"`` when ``metric`` has held-out best-layer rows, else
    ``"in_sample_max"`` (PLS and CKA have no held-out choice)."""
    held_out = ((table.metric == metric) & (table.selection == "best_heldout")).any()
    return "best_heldout" if held_out else "in_sample_max"


def select_rows(table: pd.DataFrame, metric: str, selection: str) -> pd.DataFrame:
    """The rows of ``metric`` and ``selection``; raises when there are none.

    The message names the metric and lists the metrics (or, for a metric that
    is present, the selections) that the table has.
    """
    if not (table.metric == metric).any():
        present = ", ".join(dict.fromkeys(table["metric"].astype(str))) or "none"
        raise NeurozooError(
            f"no rows for metric '{metric}'; the scores table has: {present}")
    sub = table[(table.metric == metric) & (table.selection == selection)]
    if sub.empty:
        have = ", ".join(dict.fromkeys(table.selection[table.metric == metric]))
        raise NeurozooError(
            f"metric '{metric}' has no '{selection}' rows; it has: {have}")
    return sub


def _save(fig, path: Path) -> Path:
    import neurozoo

    meta = {"Software": f"neurozoo {neurozoo.__version__}",
            "Source": "scores.csv of the run; see provenance.json beside it"}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight", metadata=meta)
    plt.close(fig)
    return path


def plot_scores_by_area(table: pd.DataFrame, path: Path,
                        metric: str = "ridge_r_corrected",
                        selection: str | None = None) -> Path:
    """Bars: each model's best-layer score per area, 95% intervals.

    ``selection`` is ``"best_heldout"`` (chosen on held-out folds) or
    ``"in_sample_max"`` (chosen on the scored data, optimistic; the title
    says so). None: :func:`best_layer_selection`, i.e. held-out where the
    metric has it, else (PLS, CKA) the in-sample maximum. Raises
    :class:`NeurozooError` when the table has no such rows.
    """
    if selection is None:
        selection = best_layer_selection(table, metric)
    sub = select_rows(table, metric, selection)
    areas = _areas(sub)
    models = list(dict.fromkeys(sub["model_id"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(areas)), 4.2))
    width = 0.8 / max(len(models), 1)
    cmap = plt.get_cmap("tab10")
    for k, model in enumerate(models):
        rows = sub[sub.model_id == model].set_index("area").reindex(areas)
        x = np.arange(len(areas)) + (k - (len(models) - 1) / 2) * width
        # a percentile interval need not contain the value (RSA's can sit below it)
        err = np.clip(np.vstack([rows.value - rows.ci_low, rows.ci_high - rows.value]),
                      0, None)
        trained = bool(rows["trained"].dropna().iloc[0]) if "trained" in rows else True
        ax.bar(x, rows.value, width, yerr=err, capsize=2, label=model,
               color=cmap(k % 10), hatch=None if trained else "//",
               edgecolor="white" if trained else "black", linewidth=0.3)
    ax.set_xticks(np.arange(len(areas)), areas)
    ax.set_ylabel(f"{metric} (median over reliable neuroids)")
    ax.set_title("Best layer per model and area (chosen on held-out folds)"
                 if selection == "best_heldout" else
                 "Best layer per model and area (chosen on the scored data: optimistic)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=7, frameon=False, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(fig, path)


def plot_score_vs_depth(table: pd.DataFrame, path: Path,
                        metric: str = "ridge_r_corrected") -> Path:
    """Lines: score against relative layer depth, one panel per area.

    Raises :class:`NeurozooError` when the table has no per-layer rows of
    ``metric``.
    """
    sub = select_rows(table, metric, "layer")
    areas = _areas(sub)
    models = list(dict.fromkeys(sub["model_id"]))
    ncol = min(3, len(areas))
    nrow = int(np.ceil(len(areas) / ncol))
    # constrained layout keeps the title, panel titles, labels and the legend
    # below apart, whatever the number of panels
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow + 0.8),
                             squeeze=False, sharex=True, sharey=True,
                             layout="constrained")
    cmap = plt.get_cmap("tab10")
    for a, area in enumerate(areas):
        ax = axes[a // ncol][a % ncol]
        for k, model in enumerate(models):
            rows = sub[(sub.model_id == model) & (sub.area == area)].sort_values(
                "relative_depth")
            trained = bool(rows["trained"].iloc[0]) if "trained" in rows else True
            ax.plot(rows.relative_depth, rows.value, color=cmap(k % 10),
                    ls="-" if trained else "--", lw=1.2, label=model)
            ax.fill_between(rows.relative_depth, rows.ci_low, rows.ci_high,
                            color=cmap(k % 10), alpha=0.12, lw=0)
        ax.set_title(area)
        ax.axhline(0, color="grey", lw=0.5)
    for a in range(len(areas), nrow * ncol):
        axes[a // ncol][a % ncol].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("relative layer depth")
    for row in axes:
        row[0].set_ylabel(metric)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, frameon=False, loc="outside lower center",
               ncol=min(3, len(models)))
    fig.suptitle("Score against depth (solid: trained, dashed: untrained)")
    return _save(fig, path)


def sparse_checkpoints(table: pd.DataFrame) -> pd.DataFrame:
    """The models of a scores table that are ``neurozoo sparsify`` checkpoints.

    Reads the ``metrics.json`` beside each ``@file:`` checkpoint. Returns one
    row per such model: ``model_id``, ``run`` (the sparsify configuration
    hash), ``method``, ``label`` (method and rewinding or criterion),
    ``checkpoint``, ``weight_density``, ``mask_density`` and
    ``test_accuracy``. Models that are not such checkpoints are left out.
    """
    import json

    rows = []
    for model_id in dict.fromkeys(table["model_id"]):
        if "@file:" not in model_id:
            continue
        path = Path(model_id.split("@file:", 1)[1].split("+")[0]).with_name(
            "metrics.json")
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            log.info("%s: no sparsify metrics.json beside its checkpoint", model_id)
            continue
        if "config_hash" not in m or "weight_density" not in m:
            continue
        config = m["config"]
        label = {"imp": f"IMP, {config.get('rewind')} rewinding",
                 "oneshot": f"one-shot {config.get('criterion')}",
                 "rigl": "RigL", "earlybird": "early-bird"}.get(config["method"],
                                                              config["method"])
        rows.append({"model_id": model_id, "run": m["config_hash"],
                     "method": config["method"], "label": label,
                     "checkpoint": m["checkpoint"],
                     "weight_density": m["weight_density"],
                     "mask_density": m["mask_density"],
                     "test_accuracy": m["test_accuracy"]})
    return pd.DataFrame(rows, columns=["model_id", "run", "method", "label", "checkpoint",
                                       "weight_density", "mask_density",
                                       "test_accuracy"])


def plot_score_vs_density(table: pd.DataFrame, path: Path,
                          metric: str = "ridge_r_corrected") -> Path:
    """Lines: best-layer score (held out) against weight density, one line per
    area and sparsify run, and the checkpoints' test accuracy beside it.

    The density axis is logarithmic and runs from dense (left) to sparse.
    Only trained checkpoints are drawn (IMP rounds and ``trained``), not the
    untrained ``pruned`` and ``ticket`` states. An early-bird network prunes
    channels, not weights, so it sits at weight density 1. Raises
    :class:`NeurozooError` when no model of the table is a trained sparsify
    checkpoint.
    """
    ck = sparse_checkpoints(table)
    ck = ck[ck.checkpoint.str.startswith("round_") | (ck.checkpoint == "trained")]
    if ck.empty:
        raise NeurozooError("no model of the table is a neurozoo sparsify checkpoint "
                            "(SOURCE:ARCH@file:.../model.pt with metrics.json beside it)")
    selection = best_layer_selection(table, metric)
    sub = select_rows(table, metric, selection).merge(ck, on="model_id")
    areas = _areas(sub)
    runs = list(dict.fromkeys(ck["run"]))
    fig, (ax, acc) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained",
                                  gridspec_kw={"width_ratios": [2, 1]})
    cmap = plt.get_cmap("tab10")
    styles = ["-", "--", ":", "-."]
    for j, run in enumerate(runs):
        for a, area in enumerate(areas):
            rows = sub[(sub.run == run) & (sub.area == area)].sort_values(
                "weight_density", ascending=False)
            label = rows["label"].iloc[0] if len(rows) else ""
            ax.errorbar(rows.weight_density, rows.value,
                        yerr=np.clip(np.vstack([rows.value - rows.ci_low,
                                                rows.ci_high - rows.value]), 0, None),
                        color=cmap(a % 10), ls=styles[j % 4], marker="o", ms=3,
                        capsize=2, lw=1,
                        label=f"{area} ({label})" if len(runs) > 1 else area)
        rows = ck[ck.run == run].sort_values("weight_density", ascending=False)
        acc.plot(rows.weight_density, rows.test_accuracy, ls=styles[j % 4],
                 marker="o", color="black", label=rows["label"].iloc[0])
    ticks = sorted(set(np.round(ck["weight_density"], 4)), reverse=True)
    for axis in (ax, acc):
        axis.set_xscale("log")
        axis.set_xticks(ticks, [f"{t:.2g}" for t in ticks])
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        axis.invert_xaxis()
        axis.set_xlabel("fraction of weights kept")
    ax.set_ylabel(f"{metric} (median over reliable neuroids)")
    ax.set_title("Best layer (" + ("held out" if selection == "best_heldout"
                                   else "in-sample max, optimistic") + ") against density")
    ax.legend(fontsize=7, frameon=False, ncol=2)
    acc.set_ylabel("test accuracy (sparsify data)")
    acc.set_title("Task accuracy")
    acc.legend(fontsize=7, frameon=False)
    return _save(fig, path)


def plot_all(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Every standard figure; returns the written paths.

    ``scores_by_area.png`` and ``score_vs_depth.png`` show the first metric
    present of ``ridge_r_corrected``, ``rsa``, ``pls_r_corrected`` and
    ``cka``; RSA (when not first) gets ``rsa_by_area.png`` and
    ``rsa_vs_depth.png``, PLS and CKA ``pls_vs_depth.png`` and
    ``cka_vs_depth.png``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    present = [m for m in ("ridge_r_corrected", "rsa", "pls_r_corrected", "cka")
               if (table.metric == m).any()]
    if not present:
        log.warning("no metric to plot in the table")
        return []
    first = present[0]
    paths = [
        plot_scores_by_area(table, out_dir / "scores_by_area.png", first),
        plot_score_vs_depth(table, out_dir / "score_vs_depth.png", first),
    ]
    if "rsa" in present[1:]:
        paths.append(plot_scores_by_area(table, out_dir / "rsa_by_area.png", "rsa"))
        paths.append(plot_score_vs_depth(table, out_dir / "rsa_vs_depth.png", "rsa"))
    for metric, name in (("pls_r_corrected", "pls"), ("cka", "cka")):
        if metric in present[1:]:
            paths.append(plot_score_vs_depth(table, out_dir / f"{name}_vs_depth.png",
                                             metric))
    log.info("wrote %d figures to %s", len(paths), out_dir)
    return paths
