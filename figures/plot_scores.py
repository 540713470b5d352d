"""Redraw a figure of a neurozoo run from its scores table.

    python figures/plot_scores.py by-area results/scores.csv figs/scores_by_area.png
    python figures/plot_scores.py vs-depth results/scores.csv figs/score_vs_depth.png \
        [--metric rsa]

``by-area``: each model's held-out best-layer score per visual area.
``vs-depth``: score against relative layer depth, one panel per area.
"""

import argparse
from pathlib import Path

import pandas as pd

from neurozoo.plotting import plot_score_vs_depth, plot_scores_by_area

KINDS = {"by-area": plot_scores_by_area, "vs-depth": plot_score_vs_depth}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("table", type=Path, help="scores.csv of a neurozoo run")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--metric", default="ridge_r_corrected")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(KINDS[args.kind](pd.read_csv(args.table), args.out, args.metric))


if __name__ == "__main__":
    main()
