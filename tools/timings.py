"""Record the wall time of each stage of the chained experiment in RUN_DIR/timings.json.

Called by run_qualiclip_experiments.sh around every stage:
`python -m tools.timings RUN_DIR/timings.json STAGE start|done|failed|skipped`.
Each run of a stage is one attempt; an interrupted stage that is resumed adds a second attempt, so
the measured cost of a stage is the sum over its attempts. Stages that run side by side (--parallel,
SLURM jobs) record through a lock file beside timings.json, so no event is lost.
"""

from __future__ import annotations

import fcntl
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from common.cli import build_parser
from common.files import atomic_write_json

EVENTS = ("start", "done", "failed", "skipped")


def read_timings(path: str | Path) -> dict:
    """Return the timings record ({"stages": {stage: {"attempts": [...], "skips": int}}})."""
    path = Path(path)
    if not path.is_file():
        return {"stages": {}}
    with path.open() as f:
        data = json.load(f)
    data.setdefault("stages", {})
    return data


def record_event(path: str | Path, stage: str, event: str, now: float | None = None) -> dict:
    """Add one event of `stage` to the timings file and return the stage's record."""
    if event not in EVENTS:
        raise ValueError(f"unknown timing event {event!r}: expected one of {', '.join(EVENTS)}")
    path = Path(path)
    now = time.time() if now is None else now
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _add_event(path, stage, event, now)


def _add_event(path: Path, stage: str, event: str, now: float) -> dict:
    """record_event under the lock: read, add, write atomically."""
    data = read_timings(path)
    record = data["stages"].setdefault(stage, {"attempts": [], "skips": 0})
    attempts = record["attempts"]
    stamp = datetime.fromtimestamp(now, tz=timezone.utc).isoformat(timespec="seconds")
    if event == "start":
        attempts.append({"start": stamp, "start_unix": now, "status": "running"})
    elif event == "skipped":
        record["skips"] = record.get("skips", 0) + 1
    else:
        if not attempts or attempts[-1]["status"] != "running":
            attempts.append({"start": stamp, "start_unix": now, "status": "running"})
        last = attempts[-1]
        last.update(end=stamp, wall_s=round(now - last["start_unix"], 3), status=event)
    atomic_write_json(data, path)
    return record


def stage_wall_time(record: dict) -> float | None:
    """Sum of the wall times of a stage's finished attempts, or None when none finished."""
    walls = [a["wall_s"] for a in record.get("attempts", []) if "wall_s" in a]
    return sum(walls) if walls else None


def main(argv: list[str] | None = None) -> None:
    """Command line: record one stage event."""
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("path", help="timings.json of the run folder")
    parser.add_argument("stage", help="stage name, e.g. pretrain")
    parser.add_argument("event", choices=EVENTS)
    args = parser.parse_args(argv)
    record_event(args.path, args.stage, args.event)


if __name__ == "__main__":
    main()
