"""The argparse kit: parser, help format, flag types, shared flags, saving the resolved flags,
and a script's exit status (one UserError base for every message a user should read).

This module imports no torch: the scripts build their parsers from it, so `--help` and flag errors
answer at once; the heavy packages are imported after parsing.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import math
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common.errors import RunStopped, UserError
from common.vocabulary import AMP_CHOICES, MODEL_SIZE_CHOICES, TRACEBACK_ENV

# Default of --save_every_minutes: one save costs 0.1-0.4 s at micro (13 MB) and 0.2-1.0 s at
# mini (73 MB) on the shared CPU (benchmarks/save_bench.py, docs/PERFORMANCE.md): at most 0.2 %
# of 10 minutes, and a kill loses at most 10 minutes of training.
SAVE_EVERY_MINUTES = 10.0


def run_script(main: Callable[[], int]) -> int:
    """Exit status of a script's main(); RunStopped gives its own exit status (the stage has
    logged how to go on); any other UserError prints `error: <message>` (also into the run's log
    file when one is open) and gives status 2 (set QUALICLIP_TRACEBACK=1 to see the traceback
    instead)."""
    opened_before = _run_log_files()
    try:
        return main()
    except RunStopped as stopped:
        return stopped.exit_code
    except Exception as exc:
        if not isinstance(exc, UserError) or os.environ.get(TRACEBACK_ENV):
            raise
        record = logging.makeLogRecord({"name": "qualiclip", "levelno": logging.ERROR,
                                        "levelname": "ERROR", "msg": f"error: {exc}"})
        for handler in _run_log_files() - opened_before:  # the log this run opened
            handler.handle(record)
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run_log_files() -> set[logging.FileHandler]:
    """File handlers of the run loggers (common.runlog.setup_logger) open in this process."""
    loggers = logging.Logger.manager.loggerDict.items()
    return {handler for name, logger in loggers
            if name.startswith("qualiclip.") and isinstance(logger, logging.Logger)
            for handler in logger.handlers if isinstance(handler, logging.FileHandler)}


def build_parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """An ArgumentParser of this project: no abbreviated flags, every default in the help, and
    flag errors in two lines with the closest flag for a mistyped one."""
    return ProjectParser(prog=prog, description=description, allow_abbrev=False,
                         formatter_class=DefaultsHelpFormatter)


class ProjectParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors say what was wrong, suggest the flag a mistyped one was
    probably meant to be, and point at --help instead of printing the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print `prog: error: message` (+ "did you mean") and a pointer to --help; exit 2."""
        self.exit(2, f"{self.prog}: error: {message}{self._suggestion(message)}\n"
                     f"(run {self.prog} --help for every flag)\n")

    def _suggestion(self, message: str) -> str:
        """"; did you mean --epochs?" for each unknown flag of the message close to a known one."""
        if not message.startswith("unrecognized arguments:"):
            return ""
        known = [flag for action in self._actions for flag in action.option_strings]
        hints = []
        for token in message.split(":", 1)[1].split():
            flag = token.split("=", 1)[0]
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
            if flag.startswith("--") and close:
                hints.append(f"{flag}: did you mean {close[0]}?")
        return f"; {'; '.join(hints)}" if hints else ""


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to a flag's help unless the help already names its default; a flag
    without help text still shows its default (off for switches, none when unset)."""

    def _format_action(self, action: argparse.Action) -> str:
        if action.option_strings and not action.required and not action.help:
            action.help = _default_text(action)  # argparse prints nothing for an empty help
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (not action.option_strings or action.required or "default" in text
                or action.default == argparse.SUPPRESS):
            return text  # positionals, required flags, --help, texts naming their default
        return f"{text} {_default_text(action)}"


def _default_text(action: argparse.Action) -> str:
    """"(default: X)" for a flag's help, with switches as on/off and unset values as none."""
    default = action.default
    if default is None:
        shown = "none"
    elif isinstance(default, bool):
        shown = "on" if default else "off"
    elif isinstance(default, (list, tuple)):
        shown = ",".join(map(str, default)) or "none"
    else:
        shown = str(default).replace("%", "%%")
    return f"(default: {shown})"


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


def non_negative_float(text: str) -> float:
    """argparse type: a float >= 0."""
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def split_ratios(text: str) -> tuple[float, float, float]:
    """argparse type: "0.7,0.1,0.2" -> (train, val, test) ratios."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected three non-negative comma-separated ratios train,val,test such as "
            f"0.7,0.1,0.2; got {text!r}"
        )
    return values


def label_fraction(text: str) -> float:
    """argparse type: a fraction in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(
            f"expected a fraction in (0, 1] such as 0.25; got {text!r}")
    return value


class Switch(argparse.Action):
    """A feature that is on or off: --NAME turns it on, --no_NAME (or --no-NAME) off; one help
    line for both spellings."""

    def __init__(self, option_strings: list[str], dest: str, default: bool | None = True,
                 help: str | None = None) -> None:
        name = option_strings[0].lstrip("-")
        strings = [f"--{name}", f"--no_{name}", f"--no-{name}"]
        super().__init__(strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string: str | None = None) -> None:
        """Set the flag from the spelling used."""
        setattr(namespace, self.dest, not (option_string or "").startswith("--no"))

    def format_usage(self) -> str:
        """Usage text: --NAME | --no_NAME."""
        return " | ".join(self.option_strings[:2])


def add_switch(group: argparse._ArgumentGroup, name: str, help_text: str,
               default: bool | None = True) -> None:
    """--NAME / --no_NAME (also --no-NAME): a feature on or off (default on; None: left for a
    preset such as --protocol to set)."""
    group.add_argument(f"--{name}", dest=name, action=Switch, default=default, help=help_text)


def parse_prompt_pair(text: str) -> tuple[str, str]:
    """argparse type: 'POSITIVE|NEGATIVE' -> (positive, negative)."""
    parts = [part.strip() for part in text.split("|")]
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(
            f"expected one prompt pair as 'POSITIVE|NEGATIVE', e.g. 'Good photo.|Bad photo.'; "
            f"got {text!r}"
        )
    return parts[0], parts[1]


def add_common_args(parser: argparse.ArgumentParser, training: bool = True) -> None:
    """Add the flags all stage scripts share (training=True: also resume and speed flags); called
    after a script's own groups, so `common` closes every script's help."""
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
        "--config",
        default=None,
        help="rerun a recorded run: take every flag from its finetune_config.json or "
        "pretrain_config.json; flags given on the command line override the file's",
    )
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
    group.add_argument(
        "--save_every_minutes",
        type=non_negative_float,
        default=SAVE_EVERY_MINUTES,
        help="also write last.pkl inside an epoch once this many minutes have passed since the "
        "last save, so that a killed run loses at most that much (0: only after each epoch; "
        "SIGINT/SIGTERM always save where the epoch stands)",
    )


def _shortest_path(path: str | os.PathLike) -> str:
    """`path` relative to the working folder where that is shorter, else absolute."""
    absolute = os.path.abspath(path)
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive (Windows)
        return absolute
    return relative if len(relative) < len(absolute) else absolute


def _launcher() -> list[str]:
    """The interpreter that runs this process and, under torchrun, the launcher's flags."""
    python = _shortest_path(sys.executable)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return [python]
    per_node = os.environ.get("LOCAL_WORLD_SIZE", str(world))
    if int(per_node) == world:
        return [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                per_node]
    return [python, "-m", "torch.distributed.run", "--nnodes", str(world // int(per_node)),
            "--nproc_per_node", per_node, "<rendezvous flags as before>"]


def _without_flag(argv: Sequence[str], flag: str) -> list[str]:
    """`argv` less `flag` (an optional-value flag such as --resume) and its value."""
    kept: list[str] = []
    skip_value = False
    for token in argv:
        if skip_value and not token.startswith("-"):
            skip_value = False
            continue
        skip_value = token == flag
        if not skip_value and not token.startswith(f"{flag}="):
            kept.append(token)
    return kept


def command_line(script: str | os.PathLike, argv: Sequence[str], drop: str | None = None) -> str:
    """The shell command that runs `script` with `argv` as this process was run (its interpreter,
    its torchrun launcher), to quote in messages; `drop`: a flag left out with its value."""
    argv = _without_flag(argv, drop) if drop else list(argv)
    return shlex.join([*_launcher(), _shortest_path(script), *argv])


NOT_FROM_CONFIG = ("config", "resume", "help")  # what a recorded run's flags never set again


def _recorded_flags(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The flags a run recorded in its config JSON ({"args": ...}), checked against `parser`."""
    import json

    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"--config {path}: cannot read it ({exc}); expected the "
                        "finetune_config.json or pretrain_config.json of an earlier run") from exc
    flags = record.get("args") if isinstance(record, dict) else None
    if not isinstance(flags, dict):
        raise UserError(f"--config {path} holds no \"args\" (the flags of a run); expected the "
                        "finetune_config.json or pretrain_config.json of an earlier run")
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(flags) - known)
    if unknown:
        raise UserError(f"--config {path} records flags this script does not take: "
                        f"{', '.join('--' + name for name in unknown[:6])}"
                        f"{' ...' if len(unknown) > 6 else ''}; is it the config of the other "
                        "stage? (train_swin.py reads finetune_config.json, pretrain_qualiclip.py "
                        "pretrain_config.json)")
    return {key: value for key, value in flags.items() if key not in NOT_FROM_CONFIG}


def parse_with_config(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse `argv`; with --config FILE the flags recorded in FILE are the defaults, and the
    flags given in `argv` override them (timm's --config, for rerunning a recorded run)."""
    args = parser.parse_args(argv)
    if not getattr(args, "config", None):
        return args
    parser.set_defaults(**_recorded_flags(args.config, parser))
    return parser.parse_args(argv)


def args_to_dict(args: argparse.Namespace) -> dict[str, Any]:
    """Resolved flags as a JSON-able dict (paths become strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def save_args(args: argparse.Namespace, path: str | os.PathLike, extra: dict | None = None) -> dict:
    """Write {"args": every resolved flag, "environment": environment_info(), **extra} as JSON."""
    from common.files import atomic_write_json
    from common.runtime import environment_info  # torch: only once a run saves its flags

    record = {"args": args_to_dict(args), "environment": environment_info(), **(extra or {})}
    atomic_write_json(record, path)
    return record
