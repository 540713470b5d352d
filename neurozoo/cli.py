"""The ``neurozoo`` command line.

``neurozoo run`` chains every stage; ``neurozoo stage NAME`` runs one stage
with explicit inputs and outputs (what a workflow engine calls). User errors
print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

# Transparent huge pages for torch's CPU tensors (read when torch is first
# imported, which the commands do lazily): layer outputs kept for the Gram
# matrices are fresh memory, and filling it takes 512 times fewer page faults.
# Measured on AlexNet extraction: 10% faster. Set it to 0 to turn it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from neurozoo import __version__
from neurozoo.errors import NeurozooError

log = logging.getLogger("neurozoo")
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`
EXIT_TERMINATED = 143  # 128 + SIGTERM


class _Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM and Snakemake send to stop a job), raised like
    Ctrl-C so that the same clean-up runs: temporary files are removed and
    nothing is left half-written."""


def _on_sigterm(_signum, _frame):
    raise _Terminated


def _config(args):
    from neurozoo.config import load_config

    overrides = {}
    for name in ("data", "stimuli", "device", "cache_dir", "batch_size", "layout"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if getattr(args, "save_features", False):
        overrides["save_features"] = True
    if getattr(args, "models", None):
        overrides["models"] = args.models
    if getattr(args, "areas", None):
        overrides["areas"] = args.areas
    return load_config(getattr(args, "config", None), **overrides)


def _add_common(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("--config", type=Path, help="YAML or JSON run configuration")
    if data:
        p.add_argument("--data", help="NeuralResponses netCDF (default: bundled data)")
        p.add_argument("--stimuli", help="stimulus folder with stimuli.csv")
        p.add_argument("--areas", nargs="+", help="areas to score, e.g. VISp VISl")
    p.add_argument("--models", nargs="+", help="model ids or aliases")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--cache-dir", dest="cache_dir", help="summary cache folder")
    p.add_argument("--batch-size", dest="batch_size", type=int)
    # neurozoo.features.LAYOUTS, written out: importing it would load torch
    # for --help (tests/test_cli.py checks that the two agree)
    p.add_argument("--layout", choices=("auto", "channels_last", "contiguous"),
                   help="memory layout of the forward passes (default auto: "
                        "channels-last for convolutional networks on the CPU)")


def _add_save_features(p: argparse.ArgumentParser) -> None:
    p.add_argument("--save-features", dest="save_features", action="store_true",
                   help="also write each layer's raw float32 features as .npy files "
                        "(run: OUT/features/<model>/<layer>.npy; stage extract: "
                        "beside --out, in its name without .json) (config "
                        "save_features)")


def cmd_run(args) -> int:
    from neurozoo.pipeline import run

    config = _config(args)
    t0 = time.perf_counter()
    table = run(config, args.out, progress=not args.quiet)
    print(f"\nneurozoo {__version__}: results in {args.out} "
          f"({time.perf_counter() - t0:.0f} s)")
    _print_summary(table)
    return 0


def _print_summary(table) -> None:
    """The held-out best-layer scores of the first metric that has them."""
    from neurozoo.pipeline import summary_table

    heads = {
        "ridge_r_corrected": "Noise-corrected ridge r (r / sqrt(reliability)), median "
                             "over reliable neuroids, best layer chosen on held-out folds:",
        "rsa": "RSA (area RDM against layer RDM), best layer chosen on held-out folds:",
    }
    for metric, head in heads.items():
        summary = summary_table(table, metric)
        if not summary.empty:
            print(head)
            print(summary.to_string())
            return
    print("No held-out best-layer scores (PLS and CKA have none): see scores.csv")


def cmd_stage(args) -> int:
    from neurozoo import pipeline

    config = _config(args)
    if args.stage == "prepare":
        info = pipeline.stage_prepare(config, args.out)
        print(f"prepared {info['n_neuroids']} neuroids x {info['n_stimuli']} stimuli "
              f"in {args.out}")
    elif args.stage == "extract":
        idx = pipeline.stage_extract(config, args.data_dir, args.model, args.out,
                                     progress=not args.quiet)
        print(f"{idx['model']['model_id']}: {len(idx['layers'])} layers -> {args.out}")
    elif args.stage == "score":
        table = pipeline.stage_score(config, args.data_dir, args.features, args.out)
        print(f"{len(table)} rows -> {args.out}")
    elif args.stage == "aggregate":
        table = pipeline.stage_aggregate(config, args.scores, args.out)
        _print_summary(table)
    elif args.stage == "plot":
        for p in pipeline.stage_plot(args.table, args.out):
            print(p)
    return 0


def cmd_models(args) -> int:
    from neurozoo.models import ALIASES, DEFAULT_ZOO
    from neurozoo.models.transforms import TRANSFORMS

    print("Default zoo:")
    for m in DEFAULT_ZOO:
        print(f"  {m}")
    print("Aliases:")
    for a, m in ALIASES.items():
        print(f"  {a:22s} {m}")
    print("Transforms (+NAME:ARG): " + ", ".join(sorted(TRANSFORMS)))
    print("Any torchvision or timm architecture: SOURCE:ARCH@imagenet|random:SEED|"
          "file:PATH")
    return 0


def cmd_layers(args) -> int:
    import torch

    from neurozoo.features import default_layers
    from neurozoo.models import load_model

    loaded = load_model(args.model)
    size = loaded.preprocessing.crop_size
    for name, shape in default_layers(loaded.module, torch.zeros(1, 3, size, size)):
        print(f"{name:30s} {tuple(shape)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurozoo",
        description="Score deep networks against mouse visual cortex.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="warnings only, no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run every stage on one data set and zoo")
    _add_common(p)
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="results folder (default: ./results)")
    _add_save_features(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("stage", help="run one pipeline stage")
    stages = p.add_subparsers(dest="stage", required=True)
    s = stages.add_parser("prepare", help="validate data; reliabilities")
    _add_common(s)
    s.add_argument("--out", type=Path, required=True, help="RUN/data folder")
    s = stages.add_parser("extract", help="layer summaries of one model")
    _add_common(s, data=False)
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--out", type=Path, required=True, help="features index .json")
    _add_save_features(s)
    s = stages.add_parser("score", help="score one model")
    _add_common(s, data=False)
    s.add_argument("--data-dir", type=Path, required=True)
    s.add_argument("--features", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True, help="scores .csv")
    s = stages.add_parser("aggregate", help="merge model scores; provenance")
    _add_common(s)
    s.add_argument("--scores", type=Path, nargs="+", required=True)
    s.add_argument("--out", type=Path, required=True, help="run folder")
    s = stages.add_parser("plot", help="figures from scores.csv")
    s.add_argument("--table", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_stage)

    from neurozoo.allen.cli import add_subparser as add_data_parser

    add_data_parser(sub)

    from neurozoo.headdir.cli import add_subparser as add_headdir_parser

    add_headdir_parser(sub)

    from neurozoo.sparsity.cli import add_subparser as add_sparsify_parser

    add_sparsify_parser(sub)

    p = sub.add_parser("models", help="list the zoo, aliases and transforms")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("layers", help="list a model's default layers")
    p.add_argument("model")
    p.set_defaults(func=cmd_layers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``neurozoo`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else (
        logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader of stdout has gone (`neurozoo layers M | head -2`): stop
        # quietly. Python flushes stdout once more at exit, so point it at
        # devnull, where that cannot fail.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file (captured)
            pass
        return EXIT_BROKEN_PIPE
    except NeurozooError as exc:
        print(f"neurozoo: error: {exc}", file=sys.stderr)
        return 2
    except _Terminated:
        print("neurozoo: terminated; rerun to resume", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("neurozoo: interrupted; rerun to resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
