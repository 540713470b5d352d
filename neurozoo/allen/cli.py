"""``neurozoo data fetch|info|validate``.

Wire it into the main CLI with :func:`add_subparser`; run it alone with
``python -m neurozoo.allen.cli data ...``. Every handler returns an exit code:
0 success, 1 invalid data (``validate``), 2 a :class:`NeurozooError` (one line
on stderr, no traceback), or the fetch subprocess's own code.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from neurozoo.errors import NeurozooError

__all__ = ["add_subparser", "allen_python", "main"]

log = logging.getLogger(__name__)

ENV_VAR = "NEUROZOO_ALLEN_PYTHON"
SETUP_HINT = ("create it with `make allen-env` in the neurozoo source tree "
              f"(or set {ENV_VAR} to a Python that has allensdk==2.16.2 and "
              "neurozoo installed)")


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Register ``data`` with sub-commands ``fetch``, ``info``, ``validate``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``parser.add_subparsers()`` of the main CLI.

    Returns
    -------
    argparse.ArgumentParser
        The ``data`` parser. Each leaf sets ``func``: call ``args.func(args)``.
    """
    from neurozoo.allen.fetch import add_fetch_arguments

    data = subparsers.add_parser(
        "data", help="fetch, inspect and validate neural data sets",
        description="Fetch Allen Brain Observatory data, summarise or validate "
        "a NeuralResponses file.")
    sub = data.add_subparsers(dest="data_command", metavar="{fetch,info,validate}")
    sub.required = True

    p = sub.add_parser(
        "fetch", help="download/convert Allen natural-scenes data to OUT/",
        description="Write OUT/responses.nc and OUT/stimuli/ from the Allen Brain "
        "Observatory (runs in .venv-allen when allensdk is not importable here).")
    add_fetch_arguments(p)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("info", help="counts by area, depth, Cre line; reliability")
    p.add_argument("path", type=Path,
                   help="responses.nc, a folder holding it, a run folder, or a data "
                        "bundle (e.g. data/allen_npx_natural_scenes)")
    p.add_argument("--threshold", type=float, default=0.75,
                   help="split-half reliability threshold for the pass table")
    p.add_argument("--n-splits", type=int, default=100)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("validate", help="check files against the on-disk schema")
    p.add_argument("path", type=Path,
                   help="data folder, run folder or its data/, responses .nc file, "
                        "stimulus folder, or data bundle")
    p.add_argument("--stimuli", type=Path, default=None,
                   help="stimulus folder to match (default: stimuli/ beside)")
    p.add_argument("--no-images", action="store_true",
                   help="skip opening and checksumming every image")
    p.set_defaults(func=cmd_validate)
    return data


def _guard(fn):
    def wrapped(args):
        try:
            return fn(args)
        except NeurozooError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


# -- fetch -------------------------------------------------------------------

def allen_python() -> Path | None:
    """The Python of the Allen environment: ``$NEUROZOO_ALLEN_PYTHON``, else
    ``.venv-allen/bin/python`` in the source tree or the working directory."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env) if Path(env).exists() else None
    repo = Path(__file__).resolve().parents[2]
    for root in (repo, Path.cwd()):
        candidate = root / ".venv-allen" / "bin" / "python"
        if candidate.exists():
            return candidate
    return None


def _fetch_argv(args: argparse.Namespace) -> list[str]:
    """Turn parsed fetch arguments back into command-line words."""
    from neurozoo.allen.fetch import add_fetch_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_fetch_arguments(parser)
    words = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings:
            words.append(str(value))
        elif isinstance(action, argparse._StoreTrueAction):
            if value:
                words.append(action.option_strings[0])
        elif value is not None and value != action.default:
            words.append(action.option_strings[0])
            values = value if isinstance(value, (list, tuple)) else [value]
            words += [str(v) for v in values]
    return words


@_guard
def cmd_fetch(args: argparse.Namespace) -> int:
    """Fetch here if ``allensdk`` is importable, else in the Allen environment."""
    if importlib.util.find_spec("allensdk") is not None:
        from neurozoo.allen.fetch import run_fetch

        return run_fetch(args)
    python = allen_python()
    if python is None:
        raise NeurozooError(
            "`neurozoo data fetch` needs allensdk, which is not installed in this "
            f"environment, and no Allen environment was found: {SETUP_HINT}")
    cmd = [str(python), "-m", "neurozoo.allen.fetch", *_fetch_argv(args)]
    if logging.getLogger().isEnabledFor(logging.INFO):
        cmd.append("-v")
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(
        [src] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    log.info("running the fetch in the Allen environment: %s", " ".join(cmd))
    return subprocess.call(cmd, env=env)


# -- info --------------------------------------------------------------------

def _load_for_info(path: Path):
    """The responses at ``path`` (see :func:`neurozoo.data.schema.data_layout`)
    and the name to print for them."""
    from neurozoo.data.bundled import load_bundled
    from neurozoo.data.responses import load_responses
    from neurozoo.data.schema import data_layout

    kind, where = data_layout(path)
    if kind == "bundle":
        return load_bundled(where)[0], where
    if kind == "stimuli":
        raise NeurozooError(
            f"{where}: a stimulus set only; `data info` needs responses (responses.nc, "
            "a folder or run folder holding it, or a data bundle)")
    return load_responses(where), where


def _counts(values) -> str:
    names, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
    return ", ".join(f"{n or '-'}: {c}" for n, c in zip(names, counts))


@_guard
def cmd_info(args: argparse.Namespace) -> int:
    """Print counts by area, depth, layer and Cre line, and reliability."""
    from neurozoo.allen.common import format_table, reliability_table
    from neurozoo.data.responses import split_half_reliability

    da, path = _load_for_info(args.path)
    finite = np.isfinite(np.asarray(da.values)).any(axis=1).sum(axis=0)
    print(f"{path}: {da.sizes['trial']} trials x {da.sizes['stimulus']} stimuli x "
          f"{da.sizes['neuroid']} neuroids; units {da.attrs.get('units', '?')}")
    if "source" in da.attrs:
        print(f"source: {da.attrs['source']}")
    print(f"repeats per neuroid: min {finite.min()}, median "
          f"{int(np.median(finite))}, max {finite.max()}")
    for name in ("area", "depth", "layer", "cre_line", "specimen_id"):
        if name in da.coords:
            print(f"{name}: {_counts(da.coords[name].values)}")
    if "reliability" in da.coords:
        rel = np.asarray(da.coords["reliability"].values, dtype=np.float64)
        how = "stored"
    else:
        rel = split_half_reliability(da, n_splits=args.n_splits, seed=0)
        how = f"computed, {args.n_splits} splits"
    ok = rel[np.isfinite(rel)]
    if ok.size:
        q = np.quantile(ok, [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0])
        print(f"split-half reliability ({how}): " + ", ".join(
            f"{k} {v:.3f}" for k, v in zip(
                ["min", "p5", "p25", "median", "p75", "p95", "max"], q))
            + f"; NaN {rel.size - ok.size}")
    by = tuple(c for c in ("area", "layer") if c in da.coords)
    print(f"neuroids with reliability >= {args.threshold}:")
    print(format_table(reliability_table(da, rel, args.threshold, by=by)))
    return 0


# -- validate ------------------------------------------------------------------

@_guard
def cmd_validate(args: argparse.Namespace) -> int:
    """Print every problem found; exit 1 if there is any."""
    from neurozoo.data.schema import validate_path

    problems = validate_path(args.path, stimuli=args.stimuli,
                             check_images=not args.no_images)
    if not problems:
        print(f"{args.path}: valid")
        return 0
    for p in problems:
        print(p)
    print(f"{args.path}: {len(problems)} problem(s)", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    """``python -m neurozoo.allen.cli data ...`` without the main CLI."""
    parser = argparse.ArgumentParser(prog="neurozoo")
    parser.add_argument("-v", "--verbose", action="store_true")
    subparsers = parser.add_subparsers(dest="command")
    subparsers.required = True
    add_subparser(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
