"""Text log appends across runs, rank-aware; the metrics journal truncates atomically."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from common import runlog
from common.runlog import PACKAGE_LOGGERS, MetricsJournal, log_file_of, progress, setup_logger


def _close(logger: logging.Logger) -> None:
    """Detach the run logger's handlers from it and from the package loggers, and close them."""
    for handler in list(logger.handlers):
        for other in (logger, *(logging.getLogger(p) for p in PACKAGE_LOGGERS)):
            other.removeHandler(handler)
        handler.close()


def test_logger_appends_across_runs_and_does_not_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first = setup_logger("run_a", tmp_path)
    first.info("epoch 1 done")
    second = setup_logger("run_a", tmp_path)  # a resumed run in the same process
    second.info("epoch 2 done")
    _close(second)
    text = (tmp_path / "run_a.log").read_text()
    assert text.count("epoch 1 done") == 1 and text.count("epoch 2 done") == 1
    assert log_file_of(first) is None  # handlers were replaced, not stacked
    assert "epoch 2 done" in capsys.readouterr().out


def test_package_warnings_reach_the_run_log(tmp_path: Path) -> None:
    logger = setup_logger("run_c", tmp_path)
    logging.getLogger("data.iqa_dataset").warning("skipping an unreadable image: broken.jpg")
    logging.getLogger("models.swin_hyperiqa").info("not a warning")
    _close(logger)
    text = (tmp_path / "run_c.log").read_text()
    assert "WARNING skipping an unreadable image: broken.jpg" in text
    assert "not a warning" not in text


def test_non_main_rank_writes_no_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    logger = setup_logger("run_b", tmp_path / "logs", is_main=False)
    logger.info("hidden")
    logger.warning("rank problem")
    _close(logger)
    assert not (tmp_path / "logs" / "run_b.log").exists()
    captured = capsys.readouterr()
    assert "hidden" not in captured.out + captured.err
    assert "rank problem" in captured.err


def test_journal_append_read_truncate(tmp_path: Path) -> None:
    journal = MetricsJournal(tmp_path / "metrics.jsonl")
    assert journal.read() == []
    for epoch in range(5):
        journal.append({"epoch": epoch, "loss": 1.0 / (epoch + 1)})
    journal.truncate_from(3)
    assert [r["epoch"] for r in journal.read()] == [0, 1, 2]
    journal.append({"epoch": 3, "loss": 0.1})
    assert [r["epoch"] for r in journal.read()] == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_journal_recovers_from_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0, "loss": 1.0}\n{"epoch": 1, "lo')
    journal = MetricsJournal(path)
    assert journal.read() == [{"epoch": 0, "loss": 1.0}]
    journal.append({"epoch": 1, "loss": 0.5})
    assert journal.read() == [{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]
    path.write_text('{"epoch": 0}\nnot json\n{"epoch": 1}\n')
    with pytest.raises(ValueError, match=r"line 2"):
        journal.read()


def test_progress_off_and_non_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [1, 2, 3]
    assert progress(items, "x", enabled=False) is items
    err = io.StringIO()
    monkeypatch.setattr("sys.stdout", io.StringIO())
    monkeypatch.setattr("sys.stderr", err)
    bar = progress(items, "train", total=3)
    assert list(bar) == items
    assert bar.ascii and bar.mininterval == 30.0
    assert "train" in err.getvalue()


def test_run_clock_and_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The time left follows the pace of the steps trained in this process."""
    now = [100.0]
    monkeypatch.setattr(runlog.time, "perf_counter", lambda: now[0])
    clock = runlog.RunClock(total_steps=100, done_steps=20)  # resumed after 20 steps
    assert clock.eta(20) == "ETA ?"
    now[0] += 30.0
    assert clock.eta(50) == "ETA 50s"  # 1 s a step, 50 to go
    assert clock.eta(100) == "ETA 0s"
    assert [runlog.format_duration(s) for s in (4.4, 245, 7380)] == ["4s", "4m05s", "2h03m"]
