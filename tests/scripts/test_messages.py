"""Error messages that point the right way, and a failed run's error in its own log file."""

from __future__ import annotations

from pathlib import Path

import pytest

import test_swin
import train_swin
from common.cli import run_script
from common.vocabulary import TRACEBACK_ENV

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)


def stderr_of(script_argv, tmp_path: Path, capsys, model_path: Path) -> str:
    """stderr of test_swin.py run on `model_path` (exit status 2 expected)."""
    argv = script_argv(tmp_path, "--model_path", str(model_path), "--test_datasets", "koniq10k",
                       training=False)
    assert run_script(lambda: test_swin.main(argv)) == 2
    return capsys.readouterr().err


def test_a_file_that_is_no_checkpoint_is_named_as_such(script_argv, tmp_path, capsys) -> None:
    err = stderr_of(script_argv, tmp_path, capsys, REPO / "README.md")
    assert "is not a checkpoint: it is neither a torch zip archive nor a pickle" in err
    assert "malicious" not in err and "pickled Python objects" not in err


def test_a_folder_as_model_path_lists_its_checkpoints(script_argv, tmp_path, capsys) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("last.pkl", "best_model.pkl"):
        (folder / name).write_bytes(b"PK\x03\x04")
    err = stderr_of(script_argv, tmp_path, capsys, folder)
    assert f"{folder} is a folder, not a checkpoint file; checkpoints in it: best_model.pkl, " \
           "last.pkl" in err
    assert "not found" not in err


def test_failed_run_writes_its_error_into_its_log(script_argv, tmp_path, capsys) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("image,mos,split\ngone.png,50,train\nlost.png,60,val\n")
    argv = script_argv(tmp_path, "--dataset", f"csv:{labels}", "--model_name", "broken")
    assert run_script(lambda: train_swin.main(argv)) == 2
    err = capsys.readouterr().err
    assert "relative to the CSV's own folder" in err and "archive" not in err
    log = (tmp_path / "logs" / "broken.log").read_text()
    assert "ERROR error: " in log and "gone.png" in log
