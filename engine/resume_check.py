"""--resume safety: the flags of a resumed run must match the ones it was started with.

The rule: every flag must equal the value saved in the run's config JSON, except the few in
RESUMABLE_FLAGS, which change where or how fast a run executes (or extend it) but not its data,
model or objective. A flag added to a script later is therefore checked automatically; a flag
that the saved config does not record (a run started before the flag existed) is reported.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from common.errors import UserError

# Flags that may differ between a run and its resumption; changes are logged.
RESUMABLE_FLAGS = frozenset({
    "epochs",  # extending a run (the schedule is recomputed, see schedule_change_note)
    # locations (--config: where the flags were read from)
    "resume", "config", "model_name", "output_dir", "log_dir", "cache_dir", "data_root",
    "device", "num_workers", "amp", "compile", "grad_checkpointing",  # machine and speed
    "eval_batch_size", "skip_nonfinite", "save_every_minutes",
    "stop_on_collapse",  # going on after a collapse stop is the user's call, the run is the same
})


class ResumeMismatchError(UserError, ValueError):
    """--resume was given flags that change the data, the model or the objective of the run."""


def _plain(value: Any) -> Any:
    """A flag value as it reads back from JSON (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(value, default=str))


def saved_args(config_path: Path) -> dict | None:
    """The "args" recorded in a run's config JSON, or None when the file is absent or unreadable."""
    try:
        return json.loads(config_path.read_text())["args"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_resume_flags(args: argparse.Namespace, state_path: Path | None, config_name: str,
                       logger: logging.Logger) -> dict:
    """Compare the flags with those saved in the config JSON beside the train state being resumed
    (`state_path`; None: a new run, nothing to check); raise ResumeMismatchError naming each
    difference that is not allowed, log the allowed ones. Returns the saved flags ({} if none)."""
    if state_path is None:
        return {}
    config_path = state_path.parent / config_name
    saved = saved_args(config_path)
    if saved is None:
        logger.warning("--resume: %s is missing or unreadable, so the flags cannot be compared "
                       "with the run's; make sure they are the ones it was started with",
                       config_path)
        return {}
    errors, changed, unrecorded = [], [], []
    for key, value in sorted(vars(args).items()):
        if key == "resume":
            continue
        now = _plain(value)
        if key not in saved:
            unrecorded.append(f"--{key} {now!r}")
        elif _plain(saved[key]) != now:
            (changed if key in RESUMABLE_FLAGS else errors).append(
                f"--{key} was {saved[key]!r}, now {now!r}")
    if errors:
        allowed = ", ".join(f"--{k}" for k in sorted(RESUMABLE_FLAGS))
        raise ResumeMismatchError(
            f"cannot resume the run saved in {config_path.parent}: it was started with other "
            f"settings: {'; '.join(errors)}. Resume with the flags it was started with (only "
            f"{allowed} may change), or start a new run with another --model_name")
    if changed:
        logger.info("--resume with changed flags (allowed): %s", "; ".join(changed))
    if unrecorded:
        logger.warning("--resume: %s does not record %s (flags added after the run started); "
                       "make sure these values match how it ran", config_path,
                       ", ".join(unrecorded))
    return saved


def note_epochs_change(saved: dict, new_epochs: int, optimizer: Any, scheduler: Any, kind: str,
                       done_epochs: int, logger: logging.Logger) -> None:
    """When a resumed run's --epochs differs from the saved one (`saved`: its flags), recompute
    the learning rates for the new schedule and log what that does."""
    if saved.get("epochs", new_epochs) != new_epochs:
        logger.warning(schedule_change_note(optimizer, scheduler, kind, saved["epochs"],
                                            new_epochs, done_epochs))


def schedule_change_note(optimizer: Any, scheduler: Any, kind: str, old_epochs: int,
                         new_epochs: int, done_epochs: int) -> str:
    """After resuming with another --epochs: set the learning rates of the schedule recomputed
    for `new_epochs` and say in words what that does. `scheduler` is a LambdaLR."""
    before = optimizer.param_groups[0]["lr"]
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs,
                                   scheduler.lr_lambdas, strict=True):
        group["lr"] = base * factor(scheduler.last_epoch)
    after = optimizer.param_groups[0]["lr"]
    effect = {"cosine": f"the cosine schedule is recomputed over {new_epochs} epochs, so the "
                        f"learning rate moves from {before:.3g} (where the {old_epochs}-epoch "
                        f"schedule stood after epoch {done_epochs}) to {after:.3g} and decays "
                        f"to 0 by epoch {new_epochs}",
              "step": f"the step schedule continues by epoch number: the learning rate is "
                      f"{after:.3g} (was {before:.3g})",
              "none": f"the learning rate stays {after:.3g} (no schedule)"}
    return (f"--epochs changed from {old_epochs} to {new_epochs} on --resume: "
            + effect.get(kind, f"the learning rate is now {after:.3g} (was {before:.3g})"))
