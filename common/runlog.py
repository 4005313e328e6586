"""Run logging: text log (stdout + appended file), per-epoch metrics journal, progress bars."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

from common.errors import InvalidValueError
from common.files import atomic_write_text

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
PACKAGE_LOGGERS = ("data", "models")  # their warnings belong in the run log too


def setup_logger(name: str, log_dir: str | os.PathLike, is_main: bool = True,
                 console: TextIO | None = None) -> logging.Logger:
    """Logger writing to `console` (default stdout) and appending to log_dir/<name>.log (main
    rank only; stderr when stdout carries a script's data, e.g. test_swin.py --scores_csv -).

    The warnings of the `data` and `models` packages (e.g. an unreadable image skipped) go to the
    same places. Calling it again for the same name replaces the handlers (no duplicated lines).
    Non-main ranks write nothing to the file and only warnings and errors to stderr.
    """
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    if is_main:
        stream = logging.StreamHandler(console or sys.stdout)
        log_path = Path(log_dir) / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers: list[logging.Handler] = [
            stream, logging.FileHandler(log_path, mode="a", encoding="utf-8")]
    else:
        handlers = [logging.StreamHandler(sys.stderr)]
    for handler in handlers:
        handler.setFormatter(formatter)
    logger = logging.getLogger(f"qualiclip.{name}")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    logger.setLevel(logging.INFO if is_main else logging.WARNING)
    for package in PACKAGE_LOGGERS:  # levels untouched: warnings and above pass by default
        package_logger = logging.getLogger(package)
        for handler in list(package_logger.handlers):
            package_logger.removeHandler(handler)
        for handler in handlers:
            package_logger.addHandler(handler)
    for handler in handlers:
        logger.addHandler(handler)
    return logger


def log_file_of(logger: logging.Logger) -> Path | None:
    """Path of the file a logger from setup_logger appends to (None on non-main ranks)."""
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None


class MetricsJournal:
    """metrics.jsonl: one JSON line per epoch; truncate_from(epoch) drops epochs to be redone."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def append(self, record: dict) -> None:
        """Append one record as a JSON line (flushed, fsynced); drops a partial last line first."""
        line = json.dumps(record, default=str) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            f.seek(0)
            content = f.read()
            if content and not content.endswith(b"\n"):  # a killed writer left a partial line
                f.truncate(content.rfind(b"\n") + 1)
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict]:
        """All records in order; an unparseable last line (a write cut short) is skipped."""
        if not self.path.is_file():
            return []
        lines = [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if number == len(lines):
                    break
                raise InvalidValueError(
                    f"{self.path} line {number} is not valid JSON ({exc}); fix or remove that line"
                ) from exc
        return records

    def truncate_from(self, epoch: int) -> None:
        """Drop every record with record["epoch"] >= epoch, rewriting the file atomically."""
        if not self.path.is_file():
            return
        kept = [
            r for r in self.read() if not (isinstance(r.get("epoch"), int) and r["epoch"] >= epoch)
        ]
        atomic_write_text("".join(json.dumps(r, default=str) + "\n" for r in kept), self.path)


def progress(
    iterable: Iterable[T],
    desc: str,
    total: int | None = None,
    enabled: bool = True,
    initial: int = 0,
) -> Iterator[T] | Iterable[T]:
    """tqdm bar (counting from `initial`, the items a resumed pass left out); when stdout is
    not a TTY (tee, nohup): ASCII, every 30 s, on stderr."""
    if not enabled:
        return iterable
    if sys.stdout.isatty():
        return tqdm(iterable, desc=desc, total=total, initial=initial, dynamic_ncols=True,
                    leave=False)
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        initial=initial,
        ascii=True,
        mininterval=30.0,
        ncols=100,
        file=sys.stderr,
    )


class _LineProgress:
    """Progress as plain log lines on stderr (for tee, nohup and batch-system logs): one line
    every `interval_s` seconds and a summary line at the end."""

    def __init__(self, desc: str, total: int, unit: str, interval_s: float) -> None:
        self.desc, self.total, self.unit, self.interval_s = desc, total, unit, interval_s
        self.n = 0
        self.start = self.last = time.perf_counter()

    def _line(self, now: float, final: bool) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.n / elapsed
        if final:
            tail = f"in {elapsed:.1f} s"
        else:
            left = (self.total - self.n) / rate if rate > 0 else float("nan")
            tail = f"{100 * self.n / max(self.total, 1):.0f}%, about {left:.0f} s left"
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}s {tail} ({rate:.1f} {self.unit}s/s)",
              file=sys.stderr, flush=True)

    def update(self, n: int) -> None:
        """Count `n` more done; print a line when the interval has passed."""
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.interval_s:
            self.last = now
            self._line(now, final=False)

    def close(self) -> None:
        """Print the summary line."""
        self._line(time.perf_counter(), final=True)


def counter(desc: str, total: int, unit: str = "image", enabled: bool = True,
            interval_s: float = 30.0) -> Any:
    """A progress counter with update(n) and close(): a tqdm bar (rate in units/s) when stdout is
    a terminal, else a log line every `interval_s` seconds and one at the end; None if disabled."""
    if not enabled:
        return None
    if sys.stdout.isatty():
        return tqdm(desc=desc, total=total, unit=unit, dynamic_ncols=True, leave=False)
    return _LineProgress(desc, total, unit, interval_s)


def format_duration(seconds: float) -> str:
    """A duration for humans: "45s", "4m05s", "2h03m"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class RunClock:
    """The time a run has left, from the pace of the optimizer steps this process has trained
    (validation and checkpoints between them included)."""

    def __init__(self, total_steps: int, done_steps: int = 0) -> None:
        self.total_steps = total_steps
        self.start_steps = done_steps
        self.start = time.perf_counter()

    def eta(self, done_steps: int) -> str:
        """"ETA 4m05s" once `done_steps` of the run's steps are done ("ETA ?" before any)."""
        trained = done_steps - self.start_steps
        if trained <= 0:
            return "ETA ?"
        pace = (time.perf_counter() - self.start) / trained
        return f"ETA {format_duration(pace * max(self.total_steps - done_steps, 0))}"
