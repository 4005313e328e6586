"""Stage 1: QualiCLIP quality-aware pretraining of the Swin encoder on unlabeled images.

Example:
    python pretrain_qualiclip.py --model_size base --epochs 10 --batch_size 8 --lr 5e-5 \
        --weight_decay 1e-4 --num_levels 5 --distortions blur,jpeg,noise,brightness \
        --loss_type simplified
Writes <output_dir>/<model_name>/ with swin_<size>_epoch<N>.pkl (every --save_every epochs),
swin_<size>_qualiclip_pretrained.pkl, last.pkl, pretrain_config.json and metrics.jsonl; the log
goes to <log_dir>/<model_name>.log.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.cli import (
    add_common_args,
    build_parser,
    command_line,
    non_negative_float,
    non_negative_int,
    parse_prompt_pair,
    parse_with_config,
    positive_int,
    run_script,
)
from common.vocabulary import (
    CONSISTENCY_FORMS,
    DEFAULT_DISTORTIONS,
    DEFAULT_VAL_DISTORTIONS,
    EXIT_COLLAPSE,
    POOLINGS,
    SCORE_ACTIVATIONS,
)


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of the pretraining stage (the common flags of common.cli included)."""
    parser = build_parser("QualiCLIP pretraining of the Swin encoder (unlabeled images, no MOS)",
                          prog=Path(__file__).name)

    data = parser.add_argument_group("data")
    source = data.add_mutually_exclusive_group()
    source.add_argument(
        "--dataset",
        "--database",
        dest="dataset",
        default="koniq10k",
        help="dataset whose TRAINING split images are used, without labels",
    )
    source.add_argument("--image_dir", default=None, help="use every image of this folder instead")
    data.add_argument("--skip_missing", action="store_true",
                      help="go on without training images missing on disk (default: stop)")
    data.add_argument("--crop_size", type=positive_int, default=224, help="crop side in pixels")
    data.add_argument("--views_per_image", type=positive_int, default=None,
                      help="independent crop pairs of every image per epoch (default per "
                      "--model_size: 3 for mini, 1 otherwise)")
    data.add_argument(
        "--num_levels", type=positive_int, default=5, help="degradation levels L per distortion"
    )
    data.add_argument(
        "--distortions",
        default=DEFAULT_DISTORTIONS,
        help="comma list of distortion names, aliases (blur, noise, jpeg, brightness), groups "
        "(group:blur, group:noise, ...) or all",
    )

    loss = parser.add_argument_group("loss")
    loss.add_argument(
        "--loss_type",
        choices=("simplified", "full"),
        default="simplified",
        help="simplified: scalar quality head; full: CLIP antonym-prompt anchors",
    )
    loss.add_argument(
        "--margin", type=non_negative_float, default=0.05, help="ranking margin between levels"
    )
    loss.add_argument(
        "--consistency_margin",
        type=non_negative_float,
        default=0.0,
        help="crop differences tolerated by the consistency term (0: the whole "
        "difference; > 0: QualiCLIP's margin-ranking form)",
    )
    loss.add_argument(
        "--consistency_form",
        choices=CONSISTENCY_FORMS,
        default="absolute",
        help="standardised: the crops' disagreement in units of the batch's level spread (no "
        "pull towards a constant score); absolute: the plain difference (docs/STAGE1.md)",
    )
    loss.add_argument("--consistency_weight", type=non_negative_float, default=None,
                      help="weight of the crop-consistency term (default 0 at every --model_size: "
                      "measured on mini, weight 1 collapses or misranks, docs/STAGE1.md)")
    loss.add_argument("--ranking_weight", type=non_negative_float, default=1.0,
                      help="weight of the ranking term (less degraded scores higher)")
    loss.add_argument(
        "--score_activation",
        choices=SCORE_ACTIVATIONS,
        default="none",
        help="simplified loss: the scalar head's raw output as the score, or squashed by a "
        "sigmoid into (0, 1) (earlier behaviour; it saturates, docs/STAGE1.md)",
    )
    loss.add_argument(
        "--pooling",
        choices=POOLINGS,
        default="stages",
        help="head input: mean and standard deviation of all four stage maps, their means only, "
        "or the mean of the last stage (earlier behaviour)",
    )
    loss.add_argument("--clip_model", default="RN50", help="open_clip text tower of the full loss")
    loss.add_argument(
        "--clip_weights",
        default="openai",
        help="CLIP text weights: openai, a local file, or none (random, tests only)",
    )
    loss.add_argument(
        "--prompt_pairs",
        nargs="+",
        type=parse_prompt_pair,
        default=None,
        metavar="'POSITIVE|NEGATIVE'",
        help="antonym prompt pairs, positive first (default: the seven pairs QualiCLIP's "
        "inference averages)",
    )
    loss.add_argument(
        "--train_prompt_pairs",
        type=positive_int,
        default=1,
        help="the full loss trains on the first N pairs and the zero-shot score averages the "
        "same N (default 1: 'Good photo.' / 'Bad photo.', the pair QualiCLIP trains on; README, "
        "deviations)",
    )

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=non_negative_int, default=10,
                       help="0 saves the untrained encoder and head: the control of "
                       "zero-shot comparisons")
    optim.add_argument("--batch_size", type=positive_int, default=8, help="images per step and GPU")
    optim.add_argument("--lr", type=float, default=None,
                       help="AdamW learning rate, encoder and head (default per --model_size: "
                       "micro 1e-3, mini 3e-4, tiny/small/base 5e-5)")
    optim.add_argument("--weight_decay", type=non_negative_float, default=1e-4)
    optim.add_argument(
        "--warmup_epochs",
        type=non_negative_float,
        default=0.0,
        help="linear warm-up before the cosine schedule",
    )
    optim.add_argument(
        "--max_steps_per_epoch",
        type=positive_int,
        default=None,
        help="cap optimizer steps per epoch (quick runs)",
    )

    monitor = parser.add_argument_group("collapse monitor and label-free validation")
    monitor.add_argument(
        "--val_distortions",
        default=DEFAULT_VAL_DISTORTIONS,
        help="distortion types held out of training for the per-epoch zero-shot validation "
        "(SRCC of level vs score within each held-out image); 'none' or '' turns it off",
    )
    monitor.add_argument("--val_images", type=non_negative_int, default=16,
                         help="held-out images of the validation (the dataset's validation split, "
                         "or taken out of --image_dir)")
    monitor.add_argument("--stop_on_collapse", action="store_true",
                         help="stop (exit status 3) after the second epoch in a row (or the "
                         "last epoch) whose training batches rank levels near chance or barely "
                         "spread their scores")

    run = parser.add_argument_group("run")
    run.add_argument(
        "--model_name",
        default=None,
        help="run folder name (default qualiclip_pretrain_YYYYmmdd_HHMMSS)",
    )
    run.add_argument(
        "--save_every",
        type=non_negative_int,
        default=5,
        help="write swin_<size>_epoch<N>.pkl every N epochs (0: only the final one)",
    )
    add_common_args(parser, training=True)
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Parse flags and run the pretraining; returns the run summary (a stop raises RunStopped)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_with_config(get_args_parser(), argv)
    if args.val_distortions.strip().lower() in ("", "none"):
        args.val_distortions = ""
    command = command_line(__file__, argv, drop="--resume")
    from common.distributed import cleanup, init_distributed
    from engine.pretrain import pretrain

    info = init_distributed(args.device)
    try:
        return pretrain(args, info, command)
    finally:
        cleanup(info)


def exit_status(argv: list[str] | None = None) -> int:
    """0 once the run has finished (run_script turns a stop into its own exit status)."""
    main(argv)
    return 0


__all__ = ["EXIT_COLLAPSE", "get_args_parser", "main"]

if __name__ == "__main__":
    sys.exit(run_script(exit_status))
