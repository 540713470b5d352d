"""The fetch stage: Allen data -> ``OUT/responses.nc`` + ``OUT/stimuli/``.

Runs where ``allensdk`` is importable (the ``.venv-allen`` environment)::

    python -m neurozoo.allen.fetch ophys --areas VISp VISl \\
        --cre-lines Cux2-CreERT2 --cache-dir ~/allen/ophys --out out/ophys

``neurozoo data fetch`` (core environment) re-runs this module in
``.venv-allen`` when ``allensdk`` is not importable where it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from neurozoo.allen import VISUAL_AREAS
from neurozoo.allen.common import format_table, reliability_table, write_output
from neurozoo.errors import NeurozooError

__all__ = ["add_fetch_arguments", "default_cache_dir", "finish", "run_fetch", "main"]

log = logging.getLogger(__name__)


def default_cache_dir(source: str) -> Path:
    """``$NEUROZOO_ALLEN_CACHE/<source>``, else ``~/.cache/neurozoo/allen/<source>``."""
    root = os.environ.get("NEUROZOO_ALLEN_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "neurozoo" / "allen"
    return base / source


def _window(values):
    return (float(values[0]), float(values[1]))


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the fetch options (``source`` and filters) on ``parser``."""
    parser.add_argument("source", choices=["ophys", "ecephys"],
                        help="ophys: 2-photon calcium imaging; ecephys: Neuropixels")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder (responses.nc, stimuli/)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="Allen cache folder or existing manifest.json "
                        "(default $NEUROZOO_ALLEN_CACHE/<source> or "
                        "~/.cache/neurozoo/allen/<source>)")
    parser.add_argument("--offline", action="store_true",
                        help="never download; fail at once if files are missing")
    parser.add_argument("--areas", nargs="+", default=None,
                        help="Allen area codes (default all: "
                        f"{' '.join(VISUAL_AREAS)})")
    parser.add_argument("--window", nargs=2, type=float, default=None,
                        metavar=("START", "END"),
                        help="response window after onset, seconds (default "
                        "0 0.5 for ophys, 0 0.25 for ecephys)")
    parser.add_argument("--min-reliability", type=float, default=None,
                        help="keep neuroids with split-half reliability >= this "
                        "(e.g. 0.75)")
    parser.add_argument("--n-splits", type=int, default=100,
                        help="random splits for split-half reliability")
    g = parser.add_argument_group("ophys (2-photon) options")
    g.add_argument("--depths", nargs="+", type=int, default=None,
                   help="imaging depths in um, e.g. 175 275")
    g.add_argument("--cre-lines", nargs="+", default=None)
    g.add_argument("--reporter-lines", nargs="+", default=None)
    g.add_argument("--container-ids", nargs="+", type=int, default=None)
    g.add_argument("--include-failed", action="store_true")
    g.add_argument("--max-experiments", type=int, default=None)
    g.add_argument("--signal", choices=["dff", "events"], default="dff")
    g.add_argument("--baseline", nargs=2, type=float, default=None,
                   metavar=("START", "END"),
                   help="baseline window subtracted, seconds, e.g. -1 0 "
                   "(default: none)")
    g = parser.add_argument_group("ecephys (Neuropixels) options")
    g.add_argument("--session-ids", nargs="+", type=int, default=None)
    g.add_argument("--max-sessions", type=int, default=None)
    g.add_argument("--amplitude-cutoff-max", type=float, default=0.1)
    g.add_argument("--presence-ratio-min", type=float, default=0.9)
    g.add_argument("--isi-violations-max", type=float, default=0.5)
    g.add_argument("--snr-min", type=float, default=None)
    g.add_argument("--measure", choices=["rate", "count"], default="rate")


def finish(da, templates, provenance, out, min_reliability=None, n_splits=100):
    """Add reliability, filter, report per area and layer, and write ``out``.

    Parameters
    ----------
    da : NeuralResponses, dims (trial, stimulus, neuroid)
    templates : sequence of ndarray, each shape (height, width)
    provenance : dict
    out : path
    min_reliability : float, optional
        Keep neuroids whose split-half reliability is at least this.
    n_splits : int

    Returns
    -------
    da : NeuralResponses
        As written (with the ``reliability`` coord).
    rows : list of dict
        The per-area-and-layer table of :func:`reliability_table`.
    """
    from neurozoo.data.responses import split_half_reliability

    rel = split_half_reliability(da, n_splits=n_splits, seed=0)
    da = da.assign_coords(reliability=("neuroid", rel))
    threshold = 0.75 if min_reliability is None else min_reliability
    rows = reliability_table(da, rel, threshold, by=("area", "layer"))
    log.info("split-half reliability >= %g per area and layer:\n%s", threshold,
             format_table(rows))
    provenance = dict(provenance)
    provenance["reliability"] = {"method": "split-half, Spearman-Brown",
                                 "n_splits": n_splits, "seed": 0,
                                 "min_reliability": min_reliability,
                                 "n_before_filter": int(da.sizes["neuroid"])}
    if min_reliability is not None:
        keep = rel >= min_reliability
        if not keep.any():
            raise NeurozooError(
                f"no neuroid reaches split-half reliability {min_reliability} "
                f"(max {np.nanmax(rel) if np.isfinite(rel).any() else 'NaN'})")
        da = da.isel(neuroid=np.flatnonzero(keep))
    provenance["reliability"]["n_after_filter"] = int(da.sizes["neuroid"])
    write_output(out, da, templates, da.coords["stimulus_id"].values, provenance)
    return da, rows


def run_fetch(args: argparse.Namespace) -> int:
    """Run a fetch from parsed arguments (needs ``allensdk``). Returns 0."""
    cache_dir = args.cache_dir or default_cache_dir(args.source)
    offline = args.offline or os.environ.get("NEUROZOO_OFFLINE", "") not in ("", "0")
    if args.source == "ophys":
        from neurozoo.allen.ophys import OphysConfig, fetch_ophys

        cfg = OphysConfig(
            areas=args.areas, depths=args.depths, cre_lines=args.cre_lines,
            reporter_lines=args.reporter_lines, container_ids=args.container_ids,
            include_failed=args.include_failed,
            max_experiments=args.max_experiments, signal=args.signal,
            window_s=_window(args.window) if args.window else (0.0, 0.5),
            baseline_s=_window(args.baseline) if args.baseline else None,
            min_reliability=args.min_reliability, n_splits=args.n_splits)
        da, templates, prov = fetch_ophys(cache_dir, cfg, offline=offline)
    else:
        from neurozoo.allen.ecephys import EcephysConfig, fetch_ecephys

        kwargs = {"areas": args.areas} if args.areas else {}
        cfg = EcephysConfig(
            **kwargs, session_ids=args.session_ids, max_sessions=args.max_sessions,
            amplitude_cutoff_max=args.amplitude_cutoff_max,
            presence_ratio_min=args.presence_ratio_min,
            isi_violations_max=args.isi_violations_max, snr_min=args.snr_min,
            window_s=_window(args.window) if args.window else (0.0, 0.25),
            measure=args.measure, min_reliability=args.min_reliability,
            n_splits=args.n_splits)
        da, templates, prov = fetch_ecephys(cache_dir, cfg, offline=offline)
    prov["cache_dir"] = str(cache_dir)
    _, rows = finish(da, templates, prov, args.out, args.min_reliability,
                     args.n_splits)
    print(f"wrote {args.out}")
    print(format_table(rows))
    return 0


def main(argv=None) -> int:
    """``python -m neurozoo.allen.fetch``: the fetch stage on its own."""
    parser = argparse.ArgumentParser(
        prog="python -m neurozoo.allen.fetch",
        description="Fetch Allen Brain Observatory natural-scenes responses.")
    add_fetch_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_fetch(args)
    except NeurozooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
