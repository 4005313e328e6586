"""Run one stage of a chain plan with the chain's bookkeeping, as run_stage does it in the script.

A forced stage first loses its marker and its CLEAN paths; a run folder holding last.pkl resumes
(--resume is added); the output goes to RUN_DIR/logs/<stage>.log; timings.json gets the attempt;
the marker RUN_DIR/.done/<stage> records the settings when the command succeeds. The local
scheduler (tools.chain_parallel) calls these functions; each SLURM job script runs

    python -m tools.chain_exec RUN_DIR PLAN STAGE [--forced] -- COMMAND...

where COMMAND is the stage's command with the cluster's launcher (srun torchrun) in front.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from tools.chain_graph import Stage, load_plan
from tools.stage_settings import record
from tools.timings import record_event


def log_path(run_dir: Path, name: str) -> Path:
    """The stage's log file, RUN_DIR/logs/<stage>.log."""
    return run_dir / "logs" / f"{name}.log"


def begin(run_dir: Path, stage: Stage, forced: bool, command: Sequence[str]) -> list[str]:
    """Prepare a stage's attempt; return the command to run (with --resume when it resumes)."""
    if forced:
        (run_dir / ".done" / stage.name).unlink(missing_ok=True)
        for path in map(Path, stage.clean):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    command = list(command)
    if stage.folder and (Path(stage.folder) / "last.pkl").is_file():
        print(f"[resume] {stage.name}: continuing the interrupted run from "
              f"{stage.folder}/last.pkl", flush=True)
        command.append("--resume")
    log = log_path(run_dir, stage.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with log.open("a") as f:
        f.write(f"=== {stamp} stage {stage.name}\n=== {' '.join(command)}\n")
    record_event(run_dir / "timings.json", stage.name, "start")
    return command


def finish(run_dir: Path, stage: Stage, status: int) -> None:
    """Close the attempt: timings, and the marker when the command succeeded."""
    record_event(run_dir / "timings.json", stage.name, "done" if status == 0 else "failed")
    if status == 0:
        record(run_dir / ".done" / stage.name, stage.settings)


def run_stage(run_dir: Path, stage: Stage, forced: bool, command: Sequence[str]) -> int:
    """Run one stage to its end (output appended to its log); its exit status."""
    command = begin(run_dir, stage, forced, command)
    print(f"[run] {stage.name}: {' '.join(command)}", flush=True)
    with log_path(run_dir, stage.name).open("a") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                check=False).returncode
    finish(run_dir, stage, status)
    if status != 0:
        print(f"FAILED: stage '{stage.name}' (exit status {status}); log: "
              f"{log_path(run_dir, stage.name)}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run STAGE of PLAN with COMMAND (a SLURM job's body)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 5 or "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    run_dir, plan, name = Path(argv[0]), Path(argv[1]), argv[2]
    stages = {s.name: s for s in load_plan(plan)}
    if name not in stages:
        print(f"error: stage {name!r} is not in {plan}", file=sys.stderr)
        return 2
    return run_stage(run_dir, stages[name], "--forced" in argv[3:split], argv[split + 1:])


if __name__ == "__main__":
    sys.exit(main())
