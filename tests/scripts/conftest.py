"""Fixtures of the stage-script tests: a shared image cache, argv builders, one trained run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

# The demo KADID layout (120/30/30 images by reference, MOS 1-5) with a budget that lifts the
# validation SRCC of a micro model well above chance in a few CPU seconds per epoch.
TRAINED_DATASET = "kadid10k"
TRAINED_FLAGS = ("--epochs", "6", "--batch_size", "8", "--lr", "1e-3", "--lr_ratio", "10",
                 "--scheduler", "none", "--test_patches", "2", "--patience", "0")


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Resized-image cache shared by the script tests (each demo image is decoded once)."""
    return tmp_path_factory.mktemp("image_cache")


@pytest.fixture(scope="session")
def script_argv(demo_root: Path, image_cache: Path) -> Callable[..., list[str]]:
    """argv builder: common flags of a tiny CPU run writing under `out`, plus extra flags."""

    def build(out: Path, *extra: str, training: bool = True) -> list[str]:
        argv = ["--data_root", str(demo_root), "--model_size", "micro", "--device", "cpu",
                "--num_workers", "0", "--log_dir", str(out / "logs"),
                "--cache_dir", str(image_cache)]
        if training:
            argv += ["--output_dir", str(out / "runs"), "--imagenet_weights", "none",
                     "--dropout", "0", "--drop_path", "0", "--warmup_epochs", "0"]
        return argv + list(extra)

    return build


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, script_argv) -> dict:
    """One fine-tuning run on the demo data; its folder, argv and results.json."""
    from train_swin import main

    out = tmp_path_factory.mktemp("trained")
    argv = script_argv(out, "--dataset", TRAINED_DATASET, "--model_name", "demo",
                       "--seed", "0", *TRAINED_FLAGS)
    assert main(argv) == 0
    run_dir = out / "runs" / "demo"
    results = json.loads((run_dir / "results.json").read_text())
    return {"run_dir": run_dir, "out": out, "argv": argv, "results": results}
