"""Redraw a figure of a neurozoo run from its scores table.

    python figures/plot_scores.py by-area results/scores.csv figs/scores_by_area.png
    python figures/plot_scores.py vs-depth results/scores.csv figs/score_vs_depth.png \
        [--metric rsa]

``by-area``: each model's best-layer score per visual area, the layer chosen
on held-out folds, or for metrics without a held-out choice (PLS, CKA) the
maximum over layers on the scored data (optimistic; the title says which).
``vs-depth``: score against relative layer depth, one panel per area.

A metric that the table lacks is an error that lists the metrics it has
(exit status 2).
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from neurozoo.errors import NeurozooError
from neurozoo.plotting import plot_score_vs_depth, plot_scores_by_area

KINDS = {"by-area": plot_scores_by_area, "vs-depth": plot_score_vs_depth}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("table", type=Path, help="scores.csv of a neurozoo run")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--metric", default="ridge_r_corrected")
    args = parser.parse_args(argv)
    try:
        if not args.table.exists() or args.table.is_dir():
            raise NeurozooError("no such scores table")
        table = pd.read_csv(args.table)
        if "metric" not in table:
            raise NeurozooError("no column 'metric'; expected a scores.csv of a run")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        print(KINDS[args.kind](table, args.out, metric=args.metric))
    except NeurozooError as exc:
        print(f"plot_scores.py: error: {args.table}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
