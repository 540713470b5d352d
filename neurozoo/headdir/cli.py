"""Command line of the head-direction module.

Wired into the top-level CLI with :func:`add_subparser`::

    neurozoo headdir train --quick --out runs/hd-quick
    neurozoo headdir train --config my.yaml --out runs/hd --set model.n_units=64
    neurozoo headdir analyze --out runs/hd-quick
    neurozoo headdir figures --out runs/hd-quick

and usable on its own as ``python -m neurozoo.headdir.cli train ...``.
User errors (:class:`~neurozoo.errors.NeurozooError`) print one line on
stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from neurozoo.errors import NeurozooError

__all__ = ["add_subparser", "build_parser", "main", "config_from_args", "parse_set"]


def parse_set(items: Sequence[str]) -> dict:
    """``--set KEY=VALUE`` items as a dict, each value read as YAML."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NeurozooError(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def config_from_args(args: argparse.Namespace):
    """The configuration named by ``--config``/``--quick``/``--paper``,
    ``--seed`` and ``--set``.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``train`` arguments.

    Returns
    -------
    HeadDirConfig
    """
    from neurozoo.headdir.config import load_config, preset

    if args.config:
        cfg = load_config(args.config)
    elif args.paper:
        cfg = preset("paper")
    else:
        cfg = preset("quick")
    overrides = parse_set(args.set or [])
    if args.seed is not None:
        overrides["seed"] = args.seed
    return cfg.replace(overrides) if overrides else cfg


def _set_threads(n: int | None) -> None:
    if n is not None:
        import torch

        if n < 1:
            raise NeurozooError(f"--threads: must be >= 1, got {n}")
        torch.set_num_threads(n)


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # validated before anything heavy happens
    _set_threads(args.threads)
    from neurozoo.headdir.pipeline import run_train

    result = run_train(
        cfg,
        args.out,
        device=args.device,
        resume=not args.no_resume,
        progress=not args.no_progress,
    )
    last = result.log[-1] if result.log else {}
    logging.getLogger(__name__).info(
        "done: %s (config %s), %.1f s, last loss %s",
        args.out,
        cfg.hash(),
        result.wall_time_s,
        last.get("loss"),
    )
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    from neurozoo.headdir.pipeline import run_analyze

    m = run_analyze(args.out, device=args.device)
    err = m["heading_error_deg"]
    print(
        f"held-out error {err['heldout_mean']:.2f} deg "
        f"(noise off {err['heldout_mean_noiseless']:.2f}); "
        f"{m['long_trials']['n_steps']}-step trials "
        f"{m['long_trials']['mean']:.2f} deg; units {m['unit_counts']}"
    )
    return 0


def _cmd_figures(args: argparse.Namespace) -> int:
    from neurozoo.headdir.pipeline import run_figures

    for path in run_figures(args.out):
        print(path)
    return 0


def _add_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="headdir_command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train (or resume) a head-direction RNN")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--config", metavar="FILE", help="YAML or JSON configuration")
    src.add_argument(
        "--quick", action="store_true", help="the quick CPU preset (default)"
    )
    src.add_argument(
        "--paper", action="store_true", help="the paper-scale preset (GPU advised)"
    )
    t.add_argument("--out", required=True, metavar="DIR", help="results folder")
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a field, e.g. model.n_units=64 (repeatable)",
    )
    t.add_argument("--seed", type=int, help="override the seed")
    t.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument(
        "--no-resume",
        action="store_true",
        help="fail instead of resuming an existing checkpoint",
    )
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.set_defaults(headdir_func=_cmd_train)

    a = sub.add_parser("analyze", help="evaluate and classify units of a trained run")
    a.add_argument("--out", required=True, metavar="DIR", help="results folder")
    a.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    a.add_argument("--threads", type=int, help="torch CPU threads")
    a.set_defaults(headdir_func=_cmd_analyze)

    f = sub.add_parser("figures", help="draw the PNG figures of an analysed run")
    f.add_argument("--out", required=True, metavar="DIR", help="results folder")
    f.set_defaults(headdir_func=_cmd_figures)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed ``headdir`` command; user errors become exit status 2.

    Parameters
    ----------
    args : argparse.Namespace
        Arguments parsed by a parser set up with :func:`add_subparser` or
        :func:`build_parser`.

    Returns
    -------
    int
        Exit status.
    """
    try:
        return args.headdir_func(args)
    except NeurozooError as exc:
        print(f"neurozoo headdir: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "neurozoo headdir: interrupted; rerun the same command to resume "
            "from the last checkpoint",
            file=sys.stderr,
        )
        return 130


def add_subparser(subparsers) -> argparse.ArgumentParser:
    """Register ``headdir train|analyze|figures`` on an argparse subparsers
    object.

    The handler is stored as ``func`` (a callable ``args -> int``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From ``parser.add_subparsers()`` of the top-level CLI.

    Returns
    -------
    argparse.ArgumentParser
        The ``headdir`` parser.
    """
    p = subparsers.add_parser(
        "headdir",
        help="head-direction RNNs: train, analyze, figures",
        description="Train RNNs to integrate angular velocity and find compass "
        "and shifter units (Cueva et al., ICLR 2020).",
    )
    _add_commands(p)
    p.set_defaults(func=run_command)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The standalone parser (``python -m neurozoo.headdir.cli``)."""
    p = argparse.ArgumentParser(
        prog="python -m neurozoo.headdir.cli",
        description="Head-direction RNNs: train, analyze, figures.",
    )
    _add_commands(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point.

    Parameters
    ----------
    argv : sequence of str or None
        Arguments (``sys.argv[1:]`` if None).

    Returns
    -------
    int
        Exit status.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
