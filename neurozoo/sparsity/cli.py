"""``neurozoo sparsify``: train sparse networks into zoo checkpoints.

::

    neurozoo sparsify --config pipelines/sparsify_imp.yaml --out runs/imp
    neurozoo sparsify --out runs/snip --set method=oneshot --set criterion=snip
    neurozoo run --models $(cat runs/imp/models.txt) --out results-imp

User errors print one line on stderr and exit with status 2 (handled by the
top-level CLI).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_subparser"]


def _cmd(args: argparse.Namespace) -> int:
    from neurozoo.headdir.cli import parse_set
    from neurozoo.sparsity.pipeline import load_sparsify_config, run_sparsify

    cfg = load_sparsify_config(args.config, parse_set(args.set or []))
    ids = run_sparsify(cfg, args.out, progress=not getattr(args, "quiet", False),
                       replace=args.replace)
    for model_id in ids:
        print(model_id)
    return 0


def add_subparser(sub) -> None:
    """Add the ``sparsify`` command to the top-level CLI."""
    p = sub.add_parser(
        "sparsify",
        help="train sparse networks (IMP with rewinding, SNIP, GraSP, RigL, "
             "early-bird) into zoo checkpoints",
        description="Train or prune a zoo network on labelled images and write "
                    "checkpoints; prints their model ids (also in OUT/models.txt).",
    )
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="YAML or JSON configuration (default: IMP with weight "
                        "rewinding of ResNet-18 on scikit-learn's digits)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a setting, e.g. density=0.1 or train.steps=400 "
                        "(repeatable)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="run folder (a rerun resumes)")
    p.add_argument("--replace", action="store_true",
                   help="delete the checkpoints of another configuration in --out "
                        "instead of refusing to run")
    p.set_defaults(func=_cmd)
