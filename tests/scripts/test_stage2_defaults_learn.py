"""Fine-tuning with the CPU sizes' defaults learns: no rate, batch or head flag given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train_swin import main

# Only what a test must set: size, length, data; every training flag comes from the defaults.
FLAGS = ("--epochs", "10", "--train_patches", "4", "--crop_size", "64", "--seed", "0")


def _test_srcc(tmp_path: Path, script_argv, dataset: str, name: str, *extra: str) -> float:
    assert main(script_argv(tmp_path, "--dataset", dataset, "--model_name", name, *FLAGS,
                            *extra)) == 0
    return json.loads((tmp_path / "runs" / name / "results.json").read_text())["test"]["srcc"]


def test_micro_defaults_learn_what_the_frozen_model_cannot(
    tmp_path: Path, script_argv, learnable_dataset: str
) -> None:
    trained = _test_srcc(tmp_path, script_argv, learnable_dataset, "defaults")
    frozen = _test_srcc(tmp_path, script_argv, learnable_dataset, "frozen", "--lr", "0",
                        "--lr_hyper", "0")
    config = json.loads((tmp_path / "runs" / "defaults" / "finetune_config.json").read_text())
    assert config["size_defaults"]["score_norm"] == "standardize"
    # measured: 0.57 against -0.43 (16 test images)
    assert trained > 0.45 and trained > frozen + 0.5, (trained, frozen)


@pytest.mark.parametrize("flag", ["--score_norm", "--head_pooling"])
def test_a_given_flag_beats_the_size_default(tmp_path: Path, script_argv,
                                             learnable_dataset: str, flag: str) -> None:
    value = "mean"
    argv = script_argv(tmp_path, "--dataset", learnable_dataset, "--model_name", "given",
                       "--epochs", "1", "--max_steps_per_epoch", "1", "--test_patches", "1",
                       "--val_patches", "1", flag, value)
    assert main(argv) == 0
    config = json.loads((tmp_path / "runs" / "given" / "finetune_config.json").read_text())
    assert config["args"][flag[2:]] == value and flag[2:] not in config["size_defaults"]
