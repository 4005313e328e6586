"""Stage timings recorded by the chain: attempts, resumed stages and skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.timings import read_timings, record_event, stage_wall_time


def test_attempts_add_up_and_skips_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "timings.json"
    record_event(path, "pretrain", "start", now=100.0)
    record_event(path, "pretrain", "failed", now=110.0)
    record_event(path, "pretrain", "start", now=200.0)
    record_event(path, "pretrain", "done", now=205.5)
    record = record_event(path, "pretrain", "skipped", now=300.0)
    assert [a["status"] for a in record["attempts"]] == ["failed", "done"]
    assert stage_wall_time(record) == pytest.approx(15.5)
    assert read_timings(path)["stages"]["pretrain"]["skips"] == 1


def test_unknown_event_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        record_event(tmp_path / "t.json", "x", "finished")
