"""Fixtures of the stage-script tests: a shared image cache, argv builders, one trained run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# The mixed-distortion demo sets need far more steps than a test allows before a randomly
# initialised micro model ranks them; one distortion of the demo generator (darkening, MOS
# 0-100 from its severity) on many scenes is learnt in a few CPU seconds.
LEARNABLE_SPLITS = {"train": 48, "val": 16, "test": 16}
TRAINED_FLAGS = ("--epochs", "4", "--batch_size", "8", "--lr", "3e-4", "--lr_ratio", "10",
                 "--scheduler", "none", "--test_patches", "2", "--val_patches", "2",
                 "--patience", "0", "--select", "val")


def build_learnable_csv(folder: Path, seed: int = 0,
                        splits: dict[str, int] = LEARNABLE_SPLITS) -> Path:
    """csv:PATH dataset (image,mos,split) of darkened demo scenes, 256 x 256 PNG."""
    from data.demo_photos import degrade, load_sources, make_scene

    rng = np.random.default_rng(seed)
    sources = load_sources()
    lines = ["image,mos,split"]
    for split, count in splits.items():
        for _ in range(count):
            scene = make_scene(sources, (256, 256), rng)
            image, quality = degrade(scene, "darken", float(rng.uniform()), rng)
            name = f"img{len(lines):03d}.png"
            image.save(folder / name)
            lines.append(f"{name},{100 * quality:.3f},{split}")
    path = folder / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


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
                     "--dropout", "0", "--drop_path", "0", "--warmup_epochs", "0",
                     "--train_patches", "1"]
        return argv + list(extra)

    return build


@pytest.fixture(scope="session")
def learnable_dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """--dataset value of the learnable demo subset."""
    return f"csv:{build_learnable_csv(tmp_path_factory.mktemp('darkened'))}"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, script_argv, learnable_dataset) -> dict:
    """One fine-tuning run on the learnable demo subset; its folder, argv and results.json."""
    from train_swin import main

    out = tmp_path_factory.mktemp("trained")
    argv = script_argv(out, "--dataset", learnable_dataset, "--model_name", "demo",
                       "--seed", "0", *TRAINED_FLAGS)
    assert main(argv) == 0
    run_dir = out / "runs" / "demo"
    results = json.loads((run_dir / "results.json").read_text())
    return {"run_dir": run_dir, "out": out, "argv": argv, "results": results}
