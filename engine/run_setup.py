"""The start both stages share: run folder, log, resume point, seeds, device backends and AMP."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.distributed import DistInfo, check_shared_folder
from common.errors import RunExistsError
from common.files import check_writable
from common.runlog import log_file_of, setup_logger
from common.runtime import configure_backends, resolve_amp, seed_everything
from engine.resume_check import check_resume_flags
from engine.run_kind import RunKind, resume_state


@dataclass
class RunFolder:
    """A run's folder and log, the train state it resumes (if any) and its precision."""

    name: str
    run_dir: Path
    logger: logging.Logger
    resume_path: Path | None
    saved_args: dict  # the flags the resumed run was started with ({} for a new run)
    amp: str
    checked: Any  # what the run's first checks returned (e.g. its data)


def open_run(args: argparse.Namespace, info: DistInfo, name: str, *, kind: RunKind,
             markers: Sequence[str], seed: int, checks: Callable[[], Any]) -> RunFolder:
    """Find the resume point (a run of `kind`) and run the run's first `checks` (its data)
    before anything is created, so a run failing them leaves no folder and no log; then check
    the outputs are writable and shared, open the log, check the resumed run's flags, refuse a
    run folder holding one of `markers` without --resume, and seed."""
    run_dir = Path(args.output_dir) / name
    resume_path = resume_state(args.resume, run_dir, kind)
    checked = checks()
    if info.is_main:  # fail in the first second, not after an epoch, when outputs cannot be written
        check_writable(run_dir)
        check_writable(args.log_dir)
    check_shared_folder(run_dir, info)
    logger = setup_logger(name, args.log_dir, info.is_main)
    logger.info("run folder %s, log %s", run_dir, log_file_of(logger))
    saved = check_resume_flags(args, resume_path, kind.config_name, logger)
    found = [marker for marker in markers if (run_dir / marker).exists()]
    if not args.resume and found:
        raise RunExistsError(f"{run_dir} already holds a run ({' and '.join(found)}); pass "
                             "--resume to continue it, or choose another --model_name or "
                             "--output_dir")
    seed_everything(seed)
    configure_backends(info.device)
    return RunFolder(name, run_dir, logger, resume_path, saved,
                     resolve_amp(args.amp, info.device), checked)

