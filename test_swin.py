"""Cross-dataset testing of a fine-tuned Swin-HyperIQA or a zero-shot Stage-1 encoder; scoring.

Examples:
    python test_swin.py --model_path checkpoints/NAME/best_model.pkl \\
        --test_datasets spaq kadid10k agiqa3k
    python test_swin.py --model_path checkpoints/NAME/best_model.pkl --images photos/ a.jpg \\
        --scores_csv scores.csv
    python test_swin.py --baselines niqe brisque piqe --test_datasets kadid10k \\
        --output eval/classical.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.classical_table import BASELINES, available_text, baseline_name
from common.cli import add_common_args, build_parser, positive_int, run_script
from common.vocabulary import DEFAULT_TEST_PATCHES, SCORES_NAME

DEFAULT_TEST_DATASETS = ("spaq", "kadid10k", "agiqa3k")


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of test_swin.py."""
    parser = build_parser(__doc__.splitlines()[0], prog=Path(__file__).name)
    parser.add_argument("--model_path", default=None,
                        help="best_model.pkl of train_swin.py, or a Stage-1 encoder checkpoint "
                        "(swin_<size>_qualiclip_pretrained.pkl: zero-shot with its head); "
                        "required unless --baselines is given")
    parser.add_argument("--baselines", nargs="+", type=baseline_name, default=[],
                        metavar="NAME",
                        help="also score the test sets with these classical opinion-unaware "
                        f"methods ({available_text()}; lower raw score = better, predictions are "
                        "minus the raw score); each writes <output stem>_NAME.json and its "
                        "prediction CSVs beside --output")
    parser.add_argument("--test_datasets", nargs="+", default=None,
                        help="datasets to test on (aliases accepted; default "
                        f"{' '.join(DEFAULT_TEST_DATASETS)} unless --images is given). The "
                        "training dataset is tested on its test split, the others on all images")
    parser.add_argument("--test_patches", type=positive_int, default=None,
                        help="fixed crops per image, scores averaged (default: the checkpoint's "
                        f"--test_patches, {DEFAULT_TEST_PATCHES} for encoder checkpoints)")
    parser.add_argument("--crop_size", type=positive_int, default=None,
                        help="crop side (default: the checkpoint's)")
    parser.add_argument("--batch_size", type=positive_int, default=8, help="images per batch")
    parser.add_argument("--output", default=None,
                        help="results JSON (default: cross_dataset_results.json in the current "
                        "folder, or _2, _3, ... when taken); predictions go to <output "
                        "stem>_<dataset>_predictions.csv beside it")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of an earlier call (without it, a given "
                        "--output/--scores_csv that exists stops the script before scoring)")
    parser.add_argument("--kadid_types", default=None,
                        help="test KADID-10k on these distortion types only: a comma list of "
                        "codes 1-25 and/or names, e.g. 3,21,25 for types left out of pretraining "
                        "(per-type metrics are always reported)")
    parser.add_argument("--skip_missing", action="store_true",
                        help="test without the images a test set's labels list but the disk "
                        "lacks (counted in the log); without it they stop the script")
    parser.add_argument("--skip_missing_datasets", action="store_true",
                        help="report test sets that cannot be read under --data_root and go on "
                        "with the rest (an error when none is left)")
    parser.add_argument("--images", nargs="+", default=None,
                        help="image files and/or folders to score, printed (one line, or a "
                        "table) and written to --scores_csv. Higher = better: a fine-tuned "
                        "model on its training set's MOS scale; a Stage-1 encoder zero-shot on "
                        "an open scale (default scalar head: compare within one model) or in "
                        "0..1 (sigmoid or CLIP-prompt head); the run says which")
    parser.add_argument("--cache_images", action="store_true",
                        help="also cache the decoded --images under --cache_dir (off: each is "
                        "decoded once per call and nothing is written; a cached full-resolution "
                        "12-MP photo takes about 36 MB)")
    parser.add_argument("--scores_csv", default=None,
                        help=f"CSV image,score of --images; - writes it to stdout instead of the "
                        f"table (default: {SCORES_NAME} beside --output, else in the current "
                        "folder, or _2, _3, ... when taken)")
    add_common_args(parser, training=False)
    parser.set_defaults(model_size=None)  # the checkpoint decides; a given size is checked
    size = next(a for a in parser._actions if a.dest == "model_size")
    size.help = "Swin size, checked against the checkpoint's (default: the checkpoint's)"
    return parser


def main(argv: list[str] | None = None) -> int:
    """Load the checkpoint, score --images and/or --test_datasets, return the exit status."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.model_path is None and not args.baselines:
        parser.error("give --model_path (a checkpoint to test) and/or --baselines NAME... "
                     f"(classical methods: {', '.join(BASELINES)})")
    if args.model_path is None and args.images:
        parser.error("--images scores with a model: give --model_path")
    if args.baselines and args.images and args.test_datasets is None:
        parser.error("--baselines scores test sets, not --images: name them with "
                     "--test_datasets")
    if args.test_datasets is None and not args.images:
        args.test_datasets = list(DEFAULT_TEST_DATASETS)
    from common.distributed import cleanup, decided_on_main, init_distributed
    from common.runlog import setup_logger
    from common.runtime import flush_subnormals
    from engine.classical import classical_test
    from engine.cross_dataset import cross_dataset, results_output
    from engine.evaluate import load_model_for_eval
    from engine.scoring import score_images, scores_output
    from models.classical_iqa import require

    info = init_distributed(args.device)
    flush_subnormals(info.device)
    try:
        # where results go, decided before scoring (never over an earlier call's files)
        results = (decided_on_main(lambda: results_output(args), info)
                   if args.test_datasets else None)
        scores = decided_on_main(lambda: scores_output(args), info) if args.images else None
        logger = setup_logger("test_swin", args.log_dir, info.is_main,
                              console=sys.stderr if args.scores_csv == "-" else sys.stdout)
        # a missing baseline package stops every rank before any scoring
        decided_on_main(lambda: require(args.baselines), info)
        if args.model_path is not None:
            eval_model = load_model_for_eval(args.model_path, info.device, args.model_size)
            if args.images:
                score_images(args, eval_model, info, logger, scores)
            if results is not None:
                cross_dataset(args, eval_model, info, logger, results)
        if args.baselines and results is not None:
            classical_test(args, info, logger, results)
    finally:
        cleanup(info)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
