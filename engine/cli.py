"""Command-line flags shared by the three stage scripts, and saving the resolved flags of a run."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data.rows import DatasetError
from engine.checkpoint import CheckpointError, atomic_write_json
from engine.runtime import AMP_CHOICES, DeviceError, environment_info
from engine.train_state import NonFiniteLossError
from models.errors import EncoderMismatchError, WeightsUnavailableError

MODEL_SIZE_CHOICES = ("micro", "test", "mini", "tiny", "small", "base")
# Errors that describe bad input, a missing file or a stopped run in words: the scripts print the
# message alone. Anything else is a bug and keeps its traceback.
USER_ERRORS = (DatasetError, CheckpointError, DeviceError, EncoderMismatchError,
               WeightsUnavailableError, NonFiniteLossError, FileExistsError, ValueError)
TRACEBACK_ENV = "QUALICLIP_TRACEBACK"


def run_script(main: Callable[[], int]) -> int:
    """Exit status of a script's main(); a USER_ERRORS error prints `error: <message>` and gives
    status 2 (set QUALICLIP_TRACEBACK=1 to see the traceback instead)."""
    try:
        return main()
    except USER_ERRORS as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to a flag's help unless the help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def add_common_args(parser: argparse.ArgumentParser, training: bool = True) -> None:
    """Add the flags all stage scripts share (training=True: also resume and speed flags)."""
    group = parser.add_argument_group("common")
    group.add_argument(
        "--data_root",
        default=os.environ.get("IQA_DATA_ROOT", "./datasets"),
        help="folder holding DATA_ROOT/<dataset key>/ in the official layouts "
        "(default: env IQA_DATA_ROOT or ./datasets)",
    )
    group.add_argument(
        "--model_size",
        choices=MODEL_SIZE_CHOICES,
        default="base",
        help="Swin size (micro/test: tiny random config for tests)",
    )
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--seed", type=int, default=42, help="random seed")
    group.add_argument(
        "--num_workers", type=non_negative_int, default=4, help="data loader worker processes"
    )
    group.add_argument(
        "--amp",
        choices=AMP_CHOICES,
        default="auto",
        help="mixed precision: auto = bf16 on GPUs that support it, off on CPU",
    )
    group.add_argument("--output_dir", default="checkpoints", help="parent folder of run folders")
    group.add_argument("--log_dir", default="logs", help="folder for the text logs")
    group.add_argument(
        "--cache_dir",
        default=os.environ.get("IQA_CACHE_DIR", "./.cache/images"),
        help="resized-image cache (default: env IQA_CACHE_DIR or ./.cache/images)",
    )
    if not training:
        return
    group.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="resume from <run folder>/last.pkl (bare --resume) or from the given train state",
    )
    group.add_argument(
        "--imagenet_weights",
        default="auto",
        help="ImageNet Swin weights: auto (timm), a local .safetensors/.pth/.bin file, or none",
    )
    group.add_argument(
        "--compile", action="store_true", help="torch.compile the model (falls back if it fails)"
    )
    group.add_argument(
        "--grad_checkpointing",
        action="store_true",
        help="activation checkpointing of the Swin stages: less memory, ~30%% more compute",
    )
    group.add_argument(
        "--accum_steps",
        type=positive_int,
        default=1,
        help="gradient accumulation steps (effective batch = batch_size x accum_steps x GPUs)",
    )
    group.add_argument(
        "--skip_nonfinite",
        action="store_true",
        help="skip batches with a NaN/Inf loss (counted in the log) instead of stopping",
    )


def args_to_dict(args: argparse.Namespace) -> dict[str, Any]:
    """Resolved flags as a JSON-able dict (paths become strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def save_args(args: argparse.Namespace, path: str | os.PathLike, extra: dict | None = None) -> dict:
    """Write {"args": every resolved flag, "environment": environment_info(), **extra} as JSON."""
    record = {"args": args_to_dict(args), "environment": environment_info(), **(extra or {})}
    atomic_write_json(record, path)
    return record
