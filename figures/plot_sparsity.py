"""Score and task accuracy against weight density for sparsify checkpoints.

    python figures/plot_sparsity.py results-imp/scores.csv figs/score_vs_density.png \\
        [--metric rsa]

Reads the scores table of a run that scored ``neurozoo sparsify`` checkpoints
(``SOURCE:ARCH@file:.../model.pt``) and the ``metrics.json`` beside each
checkpoint. One line per area and sparsify run; the other models of the
table are left out. A table without such checkpoints, or without the metric,
is an error (exit status 2).
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from neurozoo.errors import NeurozooError
from neurozoo.plotting import plot_score_vs_density


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="scores.csv of a neurozoo run")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--metric", default="ridge_r_corrected")
    args = parser.parse_args(argv)
    try:
        if not args.table.is_file():
            raise NeurozooError("no such scores table")
        table = pd.read_csv(args.table)
        if "metric" not in table or "model_id" not in table:
            raise NeurozooError("expected a scores.csv of a neurozoo run")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        print(plot_score_vs_density(table, args.out, metric=args.metric))
    except NeurozooError as exc:
        print(f"plot_sparsity.py: error: {args.table}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
