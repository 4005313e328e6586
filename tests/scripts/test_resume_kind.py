"""--resume of a run of the other stage, or of a folder holding no run: one line naming the run's
kind and what to do, and nothing created; test_swin.py on a train state says the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import pretrain_qualiclip
import test_swin
import train_swin
from common.cli import run_script
from common.vocabulary import TRACEBACK_ENV


@pytest.fixture(autouse=True)
def no_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory: pytest.TempPathFactory, demo_root: Path,
                 image_cache: Path) -> Path:
    """The folder of a one-step micro pretraining run."""
    out = tmp_path_factory.mktemp("pretrain_kind")
    argv = ["--data_root", str(demo_root), "--model_size", "micro", "--imagenet_weights", "none",
            "--device", "cpu", "--num_workers", "0", "--crop_size", "32", "--batch_size", "2",
            "--output_dir", str(out / "runs"), "--log_dir", str(out / "logs"),
            "--cache_dir", str(image_cache), "--model_name", "pre", "--epochs", "1",
            "--max_steps_per_epoch", "1", "--distortions", "blur", "--num_levels", "2",
            "--val_images", "0"]
    assert run_script(lambda: pretrain_qualiclip.exit_status(argv)) == 0
    return out / "runs" / "pre"


def error_lines(capsys: pytest.CaptureFixture) -> list[str]:
    """The lines the script printed to stderr."""
    return capsys.readouterr().err.strip().splitlines()


def test_train_swin_refuses_to_resume_a_pretraining_run(pretrain_run: Path, script_argv,
                                                        tmp_path: Path, capsys) -> None:
    argv = script_argv(tmp_path, "--dataset", "koniq10k", "--resume", str(pretrain_run))
    assert run_script(lambda: train_swin.main(argv)) == 2
    assert error_lines(capsys) == [
        f"error: --resume: {pretrain_run} is a pretraining (Stage 1) run of "
        "pretrain_qualiclip.py, not a fine-tuning (Stage 2) run; resume it with "
        f"pretrain_qualiclip.py --resume {pretrain_run}, or fine-tune from it with train_swin.py "
        f"--pretrained_encoder {pretrain_run / 'swin_micro_qualiclip_pretrained.pkl'}"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "logs").exists()


def test_pretraining_refuses_to_resume_a_fine_tuning_run(trained_run: dict, tmp_path: Path,
                                                         capsys) -> None:
    run_dir = trained_run["run_dir"]
    argv = ["--model_size", "micro", "--device", "cpu", "--output_dir", str(tmp_path / "runs"),
            "--log_dir", str(tmp_path / "logs"), "--resume", str(run_dir)]
    assert run_script(lambda: pretrain_qualiclip.exit_status(argv)) == 2
    assert error_lines(capsys) == [
        f"error: --resume: {run_dir} is a fine-tuning (Stage 2) run of train_swin.py, not a "
        f"pretraining (Stage 1) run; resume it with train_swin.py --resume {run_dir}, or score "
        f"it with test_swin.py --model_path {run_dir / 'best_model.pkl'}"]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "logs").exists()


def test_a_train_state_without_its_config_is_still_recognised(pretrain_run: Path, script_argv,
                                                              tmp_path: Path, capsys) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(pretrain_run / "last.pkl", bare / "last.pkl")  # no pretrain_config.json
    argv = script_argv(tmp_path, "--dataset", "koniq10k", "--batch_size", "8", "--epochs", "1",
                       "--resume", str(bare / "last.pkl"))
    assert run_script(lambda: train_swin.main(argv)) == 2
    err = capsys.readouterr().err
    assert (f"error: --resume: {bare / 'last.pkl'} is the train state of a pretraining (Stage 1) "
            "run of pretrain_qualiclip.py, not a fine-tuning (Stage 2) run") in err
    assert "Missing key" not in err and "size mismatch" not in err


def test_a_folder_holding_no_run_is_named_as_such(pretrain_run: Path, script_argv,
                                                  capsys) -> None:
    parent = pretrain_run.parent
    argv = script_argv(parent.parent, "--dataset", "koniq10k", "--resume", str(parent))
    assert run_script(lambda: train_swin.main(argv)) == 2
    assert error_lines(capsys) == [
        f"error: --resume {parent}: {parent} holds no run of either stage (no last.pkl, "
        "finetune_config.json or pretrain_config.json); run folders in it: pre; pass a run "
        "folder (<output_dir>/<model_name>) of train_swin.py, or its last.pkl"]


def test_test_swin_names_the_run_of_a_train_state(trained_run: dict, script_argv,
                                                  tmp_path: Path, capsys) -> None:
    run_dir = trained_run["run_dir"]
    argv = script_argv(tmp_path, "--model_path", str(run_dir / "last.pkl"), "--test_datasets",
                       "livec", training=False)
    assert run_script(lambda: test_swin.main(argv)) == 2
    assert error_lines(capsys) == [
        f"error: {run_dir / 'last.pkl'} is the train state of a fine-tuning (Stage 2) run of "
        f"train_swin.py, not a model to score; resume it with train_swin.py --resume {run_dir}, "
        f"or score it with test_swin.py --model_path {run_dir / 'best_model.pkl'}"]
