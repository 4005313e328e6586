"""`python -m data --data_root DIR --dataset KEY`: JSON summary of a dataset, every image checked.

Exit status: 0 when every listed image exists, 1 when the layout or labels are wrong,
3 when images are missing (the JSON summary is printed anyway).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from common.cli import build_parser as project_parser
from data.registry import DATASET_KEYS, SPLIT_MODES, summarize
from data.rows import DatasetError

EXIT_BAD_LAYOUT = 1
EXIT_MISSING_IMAGES = 3


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags of `python -m data`."""
    parser = project_parser(
        prog="python -m data",
        description="Summarise an IQA dataset in its official layout and check that every "
        "image listed in its labels exists.",
    )
    parser.add_argument(
        "--data_root",
        default=os.environ.get("IQA_DATA_ROOT", "./datasets"),
        help="folder holding <key>/ dataset folders (default: $IQA_DATA_ROOT or ./datasets)",
    )
    parser.add_argument(
        "--dataset",
        "--database",
        required=True,
        help=f"one of {', '.join(DATASET_KEYS)} (or an alias), or csv:PATH",
    )
    parser.add_argument("--split", choices=SPLIT_MODES, default="official")
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument(
        "--split_ratios",
        type=float,
        nargs=3,
        default=(0.7, 0.1, 0.2),
        metavar=("TRAIN", "VAL", "TEST"),
        help="ratios of the random split (default 0.7 0.1 0.2)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print the summary JSON; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = summarize(
            args.dataset, args.data_root, args.split, args.split_seed, args.split_ratios
        )
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_LAYOUT
    print(json.dumps(summary, indent=2))
    if summary["missing"]:
        print(
            f"error: {summary['missing']} of {summary['n_images']} listed images are missing "
            f"under {summary['location']} (first: {', '.join(summary['missing_examples'])}). "
            f"Check --data_root and the extracted archive; training needs --skip_missing to go "
            f"on without them.",
            file=sys.stderr,
        )
        return EXIT_MISSING_IMAGES
    return 0


if __name__ == "__main__":
    sys.exit(main())
