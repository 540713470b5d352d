"""Build data/allen_npx_natural_scenes from the upstream files.

Usage::

    python data/build_bundle.py SRC [DST]

SRC is the upstream folder (index.csv, responses/, stimuli_images/); DST
defaults to data/allen_npx_natural_scenes next to this script. Every
conversion is checked to be lossless (see neurozoo.data.bundled.build_bundle).
"""

import argparse
import logging
from pathlib import Path

from neurozoo.data.bundled import BUNDLE_NAME, build_bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path, nargs="?",
                        default=Path(__file__).parent / BUNDLE_NAME)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest = build_bundle(args.src, args.dst)
    print(f"wrote {args.dst}: {manifest['n_recordings']} recordings, "
          f"{manifest['n_units']} units, {len(manifest['files'])} files")


if __name__ == "__main__":
    main()
