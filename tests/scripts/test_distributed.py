"""The three scripts under torchrun with two CPU processes (gloo) on demo data, micro model.

Each run must finish with rank 0 alone writing the run files, and test_swin.py over two processes
must score every image exactly once and agree with one process.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.checkpoint import load_checkpoint
from common.runlog import MetricsJournal
from data.registry import read_rows

REPO_ROOT = Path(__file__).resolve().parents[2]
CROP = "64"  # small crops keep the micro model fast on the CPU
ODD_IMAGES = 31  # an odd count: a sampler that pads would score one image twice
TOLERANCE = 1e-5


def _run(script: str, args: list[str], nproc: int) -> subprocess.CompletedProcess:
    """Run a script with `nproc` processes (torchrun when > 1), one CPU thread each."""
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run([*launcher, script, *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (
        f"{script} with {nproc} process(es) failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done


def _common(demo_root: Path, out: Path) -> list[str]:
    """Flags every script takes: demo data, CPU, no workers, outputs under `out`."""
    return ["--data_root", str(demo_root), "--device", "cpu", "--num_workers", "0",
            "--log_dir", str(out / "logs"), "--cache_dir", str(out / "cache")]


def _training(demo_root: Path, out: Path, name: str) -> list[str]:
    """Flags of a tiny training run (micro model, small crops, random weights)."""
    return [*_common(demo_root, out), "--model_size", "micro", "--imagenet_weights", "none",
            "--crop_size", CROP, "--output_dir", str(out / "runs"), "--model_name", name]


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def finetune_run(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train_swin.py under torchrun: one epoch of two steps on the demo KonIQ layout."""
    out = tmp_path_factory.mktemp("ddp_finetune")
    _run("train_swin.py", [*_training(demo_root, out, "ddp"), "--dataset", "koniq10k",
                           "--epochs", "1", "--batch_size", "4", "--max_steps_per_epoch", "2",
                           "--test_patches", "2", "--val_patches", "2", "--patience", "0"], nproc=2)
    return out / "runs" / "ddp"


def test_train_swin_under_torchrun(finetune_run: Path, demo_root: Path) -> None:
    """Rank 0 writes each file and each log line once; the test split is scored in full."""
    names = sorted(p.name for p in finetune_run.iterdir())
    assert names == ["best_model.pkl", "finetune_config.json", "last.pkl", "metrics.jsonl",
                     "results.json"]
    assert [r["epoch"] for r in MetricsJournal(finetune_run / "metrics.jsonl").read()] == [1]
    config = json.loads((finetune_run / "finetune_config.json").read_text())
    assert config["world_size"] == 2
    assert load_checkpoint(finetune_run / "best_model.pkl", "full")["epoch"] == 1
    assert load_checkpoint(finetune_run / "last.pkl", "train_state")["epoch"] == 1
    log = (finetune_run.parents[1] / "logs" / "ddp.log").read_text()
    assert log.count("epoch 1/1 |") == 1
    results = json.loads((finetune_run / "results.json").read_text())
    n_test = sum(row.split == "test" for row in read_rows("koniq10k", demo_root))
    assert results["test"]["n"] == n_test


def test_pretrain_under_torchrun(demo_root: Path, tmp_path: Path) -> None:
    """pretrain_qualiclip.py under torchrun: rank 0 writes the checkpoints and one record."""
    _run("pretrain_qualiclip.py", [*_training(demo_root, tmp_path, "ddp_pre"), "--dataset",
                                   "koniq10k", "--epochs", "1", "--batch_size", "2",
                                   "--max_steps_per_epoch", "2", "--save_every", "1"], nproc=2)
    run_dir = tmp_path / "runs" / "ddp_pre"
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["last.pkl", "metrics.jsonl", "pretrain_config.json",
                     "swin_micro_epoch1.pkl", "swin_micro_qualiclip_best.pkl",
                     "swin_micro_qualiclip_pretrained.pkl"]
    records = MetricsJournal(run_dir / "metrics.jsonl").read()
    assert [r["epoch"] for r in records] == [1]
    assert records[0]["images"] == 2 * 2 * 2  # processes x batch x steps
    assert json.loads((run_dir / "pretrain_config.json").read_text())["world_size"] == 2
    ckpt = load_checkpoint(run_dir / "swin_micro_qualiclip_pretrained.pkl", "encoder")
    assert ckpt["epoch"] == 1 and ckpt["model_size"] == "micro"
    assert (tmp_path / "logs" / "ddp_pre.log").read_text().count("epoch 1/1 |") == 1


def test_test_swin_two_processes_match_one(finetune_run: Path, demo_root: Path,
                                           tmp_path: Path) -> None:
    """Two processes score every image exactly once and match one process's SRCC to 1e-5.

    KonIQ's test split goes through --test_datasets; an odd number of images through --images.
    """
    odd = tmp_path / "odd_images"
    odd.mkdir()
    sources = sorted((demo_root / "koniq10k" / "1024x768").glob("*.jpg"))[:ODD_IMAGES]
    assert len(sources) == ODD_IMAGES
    for source in sources:
        (odd / source.name).symlink_to(source)
    outputs = {}
    for nproc in (2, 1):
        out = tmp_path / f"nproc{nproc}"
        _run("test_swin.py", [*_common(demo_root, tmp_path), "--model_path",
                              str(finetune_run / "best_model.pkl"), "--test_datasets",
                              "koniq10k", "--test_patches", "2", "--batch_size", "3",
                              "--output", str(out / "results.json"), "--images", str(odd),
                              "--scores_csv", str(out / "scores.csv")], nproc=nproc)
        outputs[nproc] = out

    expected_n = {"koniq10k": sum(r.split == "test" for r in read_rows("koniq10k", demo_root))}
    one = json.loads((outputs[1] / "results.json").read_text())["results"]
    two = json.loads((outputs[2] / "results.json").read_text())["results"]
    for key, n in expected_n.items():
        assert one[key]["n"] == two[key]["n"] == n
        assert math.isclose(two[key]["srcc"], one[key]["srcc"], abs_tol=TOLERANCE)
        rows_one = _read_csv(outputs[1] / f"results_{key}_predictions.csv")
        rows_two = _read_csv(outputs[2] / f"results_{key}_predictions.csv")
        assert len({r["image"] for r in rows_two}) == len(rows_two) == n
        assert [r["image"] for r in rows_two] == [r["image"] for r in rows_one]
        for a, b in zip(rows_one, rows_two, strict=True):
            assert math.isclose(float(a["prediction"]), float(b["prediction"]),
                                rel_tol=TOLERANCE, abs_tol=TOLERANCE)

    scores_one = _read_csv(outputs[1] / "scores.csv")
    scores_two = _read_csv(outputs[2] / "scores.csv")
    assert len({r["image"] for r in scores_two}) == len(scores_two) == ODD_IMAGES
    for a, b in zip(scores_one, scores_two, strict=True):
        assert a["image"] == b["image"]
        assert math.isclose(float(a["score"]), float(b["score"]), rel_tol=TOLERANCE,
                            abs_tol=TOLERANCE)
