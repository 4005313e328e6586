"""--resume compares the flags with the run's saved ones: data, model and objective must match."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pretrain_qualiclip
from common.cli import run_script
from common.runlog import MetricsJournal
from engine.resume_check import ResumeMismatchError
from train_swin import main

QUICK = ("--batch_size", "8", "--max_steps_per_epoch", "1", "--test_patches", "1",
         "--val_patches", "1", "--model_name", "koniq", "--seed", "0")


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory: pytest.TempPathFactory, script_argv) -> dict:
    """A one-epoch micro fine-tuning run on the demo KonIQ-10k."""
    out = tmp_path_factory.mktemp("resume_flags")
    argv = script_argv(out, "--dataset", "koniq10k", *QUICK, "--epochs", "1")
    assert main(argv) == 0
    return {"argv": argv, "run_dir": out / "runs" / "koniq", "log": out / "logs" / "koniq.log"}


def test_resume_with_other_data_or_objective_is_refused(one_epoch_run: dict,
                                                        learnable_dataset: str) -> None:
    argv = list(one_epoch_run["argv"])
    argv[argv.index("--dataset") + 1] = learnable_dataset
    argv[argv.index("--batch_size") + 1] = "4"
    with pytest.raises(ResumeMismatchError) as caught:
        main([*argv, "--lr", "1e-2", "--resume"])
    text = str(caught.value)
    assert f"--dataset was 'koniq10k', now '{learnable_dataset}'" in text
    assert "--batch_size was 8, now 4" in text and "--lr was 0.0003, now 0.01" in text
    assert "--epochs" in text and "another --model_name" in text  # what may change, what to do
    assert [r["epoch"] for r in MetricsJournal(one_epoch_run["run_dir"] / "metrics.jsonl")
            .read()] == [1]


def test_extending_epochs_says_what_the_schedule_does(one_epoch_run: dict) -> None:
    run_dir = one_epoch_run["run_dir"]
    config = run_dir / "finetune_config.json"
    saved = json.loads(config.read_text())
    del saved["args"]["val_patches"]  # as if --val_patches were added after the run started
    config.write_text(json.dumps(saved))
    argv = list(one_epoch_run["argv"])
    argv[argv.index("--epochs") + 1] = "2"
    assert main([*argv, "--resume"]) == 0
    log = one_epoch_run["log"].read_text()
    assert ("--epochs changed from 1 to 2 on --resume: the cosine schedule is recomputed over 2 "
            "epochs, so the learning rate moves from 0 ") in log
    assert "--resume with changed flags (allowed): --epochs was 1, now 2" in log
    assert "does not record --val_patches 1" in log
    assert "--resume was" not in log
    assert [r["epoch"] for r in MetricsJournal(run_dir / "metrics.jsonl").read()] == [1, 2]


def test_pretraining_resume_with_other_distortions_is_refused(demo_root: Path,
                                                              tmp_path: Path) -> None:
    argv = ["--data_root", str(demo_root), "--model_size", "micro", "--imagenet_weights", "none",
            "--device", "cpu", "--num_workers", "0", "--crop_size", "32", "--batch_size", "2",
            "--output_dir", str(tmp_path / "runs"), "--log_dir", str(tmp_path / "logs"),
            "--cache_dir", str(tmp_path / "cache"), "--model_name", "pre", "--epochs", "1",
            "--max_steps_per_epoch", "1", "--distortions", "blur", "--num_levels", "2"]
    assert run_script(lambda: pretrain_qualiclip.exit_status(argv)) == 0
    with pytest.raises(ResumeMismatchError) as caught:
        pretrain_qualiclip.main([*argv, "--distortions", "jpeg", "--lr", "0.01", "--epochs", "2",
                                 "--resume"])
    assert "--distortions was 'blur', now 'jpeg'" in str(caught.value)
    assert "--lr was 0.001, now 0.01" in str(caught.value)  # micro's default learning rate
