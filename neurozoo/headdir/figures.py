"""PNG figures of an analysed head-direction run.

:func:`draw_all` writes into the results folder:

- ``tuning_curves.png``: heading tuning of example units of each class;
- ``velocity_tuning.png``: angular-velocity tuning of the same units;
- ``joint_maps.png``: heading-by-velocity rate maps of example units;
- ``connectivity_sorted.png``: recurrent weights grouped by class and sorted
  by preferred heading;
- ``offset_profiles.png``: mean weight against angular offset per sending
  class;
- ``heading_error.png``: heading error over time on long trials;
- ``loss.png``: the training loss (when ``loss.csv`` exists).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from neurozoo.headdir.analysis import TUNED_CLASSES
from neurozoo.io import atomic_path

__all__ = ["draw_all", "CLASS_COLORS"]

CLASS_COLORS = {
    "compass": "tab:blue",
    "left_shifter": "tab:green",
    "right_shifter": "tab:red",
    "other": "tab:gray",
    "silent": "black",
}
_SHOWN = ("compass", "left_shifter", "right_shifter", "other")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def _examples(arrays: dict, per_class: int = 4) -> list[tuple[str, list[int]]]:
    labels = arrays["labels"]
    out = []
    for c in _SHOWN:
        idx = np.flatnonzero(labels == c)
        if idx.size:
            # the most selective (or, for "other", the most active) units
            key = arrays["mean_rate"] if c == "other" else arrays["selectivity"]
            out.append((c, list(idx[np.argsort(-key[idx])][:per_class])))
    return out


def _tuning(arrays: dict, path: Path, kind: str) -> Path:
    plt = _plt()
    ex = _examples(arrays)
    ncols = max((len(u) for _, u in ex), default=1)
    fig, axes = plt.subplots(
        max(len(ex), 1),
        ncols,
        figsize=(2.4 * ncols, 1.9 * max(len(ex), 1)),
        squeeze=False,
    )
    for ax in axes.ravel():
        ax.set_visible(False)
    if kind == "heading":
        x = np.degrees(arrays["heading_centers"])
        curves, xlabel = arrays["heading_curves"], "heading (deg)"
    else:
        x = arrays["velocity_centers"]
        curves, xlabel = arrays["velocity_curves"], "angular velocity (rad/step)"
    for row, (c, units) in enumerate(ex):
        for col, u in enumerate(units):
            ax = axes[row, col]
            ax.set_visible(True)
            ax.plot(x, curves[u], color=CLASS_COLORS[c])
            ax.set_title(f"{c} #{u}", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == len(ex) - 1:
                ax.set_xlabel(xlabel, fontsize=7)
            if col == 0:
                ax.set_ylabel("rate", fontsize=7)
    fig.suptitle(f"{kind} tuning of example units", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _joint(arrays: dict, path: Path) -> Path:
    plt = _plt()
    ex = _examples(arrays, per_class=3)
    ncols = max((len(u) for _, u in ex), default=1)
    fig, axes = plt.subplots(
        max(len(ex), 1),
        ncols,
        figsize=(2.6 * ncols, 2.2 * max(len(ex), 1)),
        squeeze=False,
    )
    for ax in axes.ravel():
        ax.set_visible(False)
    v = arrays["velocity_centers"]
    dv = v[1] - v[0] if len(v) > 1 else 1.0
    extent = (v[0] - dv / 2, v[-1] + dv / 2, -180, 180)
    for row, (c, units) in enumerate(ex):
        for col, u in enumerate(units):
            ax = axes[row, col]
            ax.set_visible(True)
            im = ax.imshow(
                arrays["joint_maps"][u],
                origin="lower",
                aspect="auto",
                extent=extent,
                cmap="viridis",
            )
            fig.colorbar(im, ax=ax, fraction=0.05)
            ax.set_title(f"{c} #{u}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("velocity (rad/step)", fontsize=7)
            ax.set_ylabel("heading (deg)", fontsize=7)
    fig.suptitle("rate by heading and angular velocity", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _connectivity(arrays: dict, path: Path) -> Path:
    plt = _plt()
    w = arrays["sorted_weights"]
    order = arrays["sorted_order"]
    labels = arrays["labels"][order] if order.size else np.array([])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if w.size:
        lim = float(np.nanmax(np.abs(w))) or 1.0
        im = ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
        fig.colorbar(im, ax=ax, label="weight (post <- pre)")
        pos = 0
        for c in TUNED_CLASSES:
            n = int(np.sum(labels == c))
            if n:
                ax.axhline(pos - 0.5, color="k", lw=0.5)
                ax.axvline(pos - 0.5, color="k", lw=0.5)
                ax.text(
                    pos + n / 2,
                    -1.5,
                    c.replace("_", " "),
                    ha="center",
                    fontsize=7,
                    color=CLASS_COLORS[c],
                )
            pos += n
    else:
        ax.text(0.5, 0.5, "no heading-tuned units", ha="center", transform=ax.transAxes)
    ax.set_xlabel("presynaptic unit (by class, preferred heading)")
    ax.set_ylabel("postsynaptic unit")
    return _save(fig, path)


def _profiles(arrays: dict, metrics: dict, path: Path) -> Path:
    plt = _plt()
    names = list(arrays["profile_names"])
    x = np.degrees(arrays["offset_centers"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, post in zip(axes, ("tuned", "compass")):
        for c in TUNED_CLASSES:
            key = f"{c}->{post}"
            if key in names:
                prof = arrays["profiles"][names.index(key)]
                phase = metrics.get("profile_phase_deg", {}).get(key, float("nan"))
                ax.plot(
                    x,
                    prof,
                    color=CLASS_COLORS[c],
                    label=f"from {c.replace('_', ' ')} ({phase:+.0f} deg)",
                )
        ax.axhline(0, color="k", lw=0.5)
        ax.axvline(0, color="k", lw=0.5, ls=":")
        ax.set_xlabel("offset: pref(post) - pref(pre) (deg)")
        ax.set_ylabel("mean weight")
        ax.set_title(f"onto {post} units", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _error(arrays: dict, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    t = np.arange(len(arrays["error_time_mean"]))
    ax.plot(t, arrays["error_time_mean"], label="mean (noise on)")
    ax.plot(t, arrays["error_time_median"], label="median (noise on)", lw=0.8)
    ax.plot(t, arrays["error_time_mean_noiseless"], label="mean (noise off)", lw=0.8)
    ax.axvline(
        int(arrays["train_steps"]),
        color="k",
        ls="--",
        lw=0.8,
        label="training trial length",
    )
    ax.set_xlabel("time step")
    ax.set_ylabel("|heading error| (deg)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _loss(out: Path, path: Path) -> Path | None:
    log = out / "loss.csv"
    if not log.is_file():
        return None
    with open(log) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    plt = _plt()
    step = [int(r["step"]) for r in rows]
    fig, ax1 = plt.subplots(figsize=(6, 3.4))
    ax1.semilogy(step, [float(r["loss"]) for r in rows], label="loss")
    ax1.set_xlabel("update")
    ax1.set_ylabel("loss")
    ax2 = ax1.twinx()
    ax2.plot(step, [float(r["error_deg"]) for r in rows], color="tab:orange", lw=0.8)
    ax2.set_ylabel("training error (deg)", color="tab:orange")
    return _save(fig, path)


def draw_all(out: Path, arrays: dict, metrics: dict) -> list[Path]:
    """Draw every figure of an analysed run.

    Parameters
    ----------
    out : Path
        Results folder (figures are written there).
    arrays : dict
        Contents of ``analysis.npz``.
    metrics : dict
        Contents of ``metrics.json``.

    Returns
    -------
    list of Path
        Figures written.
    """
    paths = [
        _tuning(arrays, out / "tuning_curves.png", "heading"),
        _tuning(arrays, out / "velocity_tuning.png", "velocity"),
        _joint(arrays, out / "joint_maps.png"),
        _connectivity(arrays, out / "connectivity_sorted.png"),
        _profiles(arrays, metrics, out / "offset_profiles.png"),
        _error(arrays, out / "heading_error.png"),
    ]
    loss = _loss(out, out / "loss.png")
    if loss is not None:
        paths.append(loss)
    return paths
