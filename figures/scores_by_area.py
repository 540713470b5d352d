"""Figure: each model's held-out best-layer score per visual area.

    python figures/scores_by_area.py results/scores.csv figs/scores_by_area.png \
        [--metric ridge_r_corrected]
"""

import argparse
from pathlib import Path

import pandas as pd

from neurozoo.plotting import plot_scores_by_area


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="scores.csv of a neurozoo run")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--metric", default="ridge_r_corrected")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(plot_scores_by_area(pd.read_csv(args.table), args.out, args.metric))


if __name__ == "__main__":
    main()
