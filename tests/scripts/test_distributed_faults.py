"""Pretraining with two ranks: a stop on one rank stops both (and the run resumes where they
stood), a collapse stops both after the same epoch; an unreadable image hangs neither.

Both would hang before ranks agreed (collectives that no longer pair up): each run has a timeout
so a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.checkpoint import load_checkpoint
from common.runlog import MetricsJournal

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 240
STOP_CHECK_EVERY = 2  # the ranks' stop agreement every 2 steps instead of 20 keeps epochs short
IMAGES = 8  # batch 1, two ranks: 4 steps per rank and epoch
SIGNAL_AT_CALL = IMAGES // 2 + 1  # rank 1 gets SIGTERM in the first step of epoch 2
PRETRAIN = "pretrain_qualiclip.py"


def _tiny_pretraining(image_dir: Path, out: Path, name: str) -> list[str]:
    """Flags of a two-epoch micro pretraining run on a folder of images."""
    return ["--image_dir", str(image_dir), "--model_size", "micro", "--imagenet_weights", "none",
            "--device", "cpu", "--num_workers", "0", "--crop_size", "64", "--batch_size", "1",
            "--epochs", "2", "--save_every", "0", "--warmup_epochs", "0",
            "--distortions", "gaussian_blur", "--output_dir", str(out / "runs"),
            "--log_dir", str(out / "logs"), "--cache_dir", str(out / "cache"),
            "--model_name", name]


def _counting_worker(info, argv: list[str], out: Path, tag: str, signal_at: int) -> None:
    """One rank of pretrain_qualiclip.py; records the images of every step it trains, and sends
    itself SIGTERM at step call `signal_at` when it is rank 1."""
    import engine.loop
    import engine.pretrain
    from common.errors import RunStopped
    from pretrain_qualiclip import main

    engine.loop.STOP_CHECK_EVERY = STOP_CHECK_EVERY
    calls: list[list[str]] = []
    step = engine.pretrain.QualiCLIPStep.__call__

    def counted(self, model, batch):
        calls.append(list(batch["name"]))
        if info.rank == 1 and len(calls) == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, model, batch)

    engine.pretrain.QualiCLIPStep.__call__ = counted
    record: dict = {}
    try:
        main(argv)
    except RunStopped as stopped:
        record.update(exit_code=stopped.exit_code, message=str(stopped))
    (out / f"{tag}_rank{info.rank}.json").write_text(json.dumps({"calls": calls, **record}))


def _random_images(tmp_path: Path) -> Path:
    """A folder of IMAGES random 72-pixel PNGs."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        pixels = rng.integers(0, 256, (72, 72, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / f"{i}.png")
    return image_dir


def test_sigterm_on_one_rank_stops_every_rank_and_resumes_mid_epoch(two_ranks,
                                                                   tmp_path: Path) -> None:
    """SIGTERM to rank 1 mid-epoch: both ranks stop after the same step, exit 143, with the
    position saved; the resumed run trains only the steps left, on each rank, and ends with
    the weights of a run never stopped."""
    image_dir = _random_images(tmp_path)
    cut = _tiny_pretraining(image_dir, tmp_path, "stop")
    two_ranks(_counting_worker, cut, tmp_path, "stop", SIGNAL_AT_CALL)
    two_ranks(_counting_worker, [*cut, "--resume"], tmp_path, "resume", 0)
    two_ranks(_counting_worker, _tiny_pretraining(image_dir, tmp_path, "whole"), tmp_path,
              "whole", 0)
    runs = {tag: [json.loads((tmp_path / f"{tag}_rank{r}.json").read_text()) for r in (0, 1)]
            for tag in ("stop", "resume", "whole")}
    steps_per_epoch = IMAGES // 2
    stopped_at = steps_per_epoch + STOP_CHECK_EVERY
    last = tmp_path / "runs" / "stop" / "last.pkl"
    for rank in (0, 1):
        stop, resume, whole = (runs[tag][rank] for tag in ("stop", "resume", "whole"))
        assert len(stop["calls"]) == stopped_at and stop["exit_code"] == 128 + signal.SIGTERM
        assert f"in epoch 2 after step {STOP_CHECK_EVERY} of {steps_per_epoch};" in (
            stop["message"])
        assert "exit_code" not in resume and "exit_code" not in whole
        assert len(resume["calls"]) == 2 * steps_per_epoch - stopped_at  # nothing trained twice
        assert stop["calls"] + resume["calls"] == whole["calls"]
    assert runs["resume"][0]["calls"] != runs["resume"][1]["calls"]  # each rank its own share
    log = (tmp_path / "logs" / "stop.log").read_text()
    assert "stopped by a signal to another rank in epoch 2" in log
    assert f"-m torch.distributed.run --standalone --nproc_per_node 2 {PRETRAIN} " in log
    assert f"--resume {last}" in log
    assert f"resumed from {last} in epoch 2 after step {STOP_CHECK_EVERY} of 4" in log
    records = MetricsJournal(last.parent / "metrics.jsonl").read()
    assert [(r["epoch"], r["steps"], r["images"]) for r in records] == [(1, 4, 8), (2, 4, 8)]
    ours = load_checkpoint(last, "train_state")["state_dict"]
    theirs = load_checkpoint(tmp_path / "runs" / "whole" / "last.pkl")["state_dict"]
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)


def _collapse_worker(info, argv: list[str], out: Path) -> None:
    from common.errors import RunStopped
    from pretrain_qualiclip import main

    try:
        main(argv)
    except RunStopped as stopped:  # the only way the run may end here
        (out / f"rank{info.rank}.json").write_text(json.dumps(
            {"exit_code": stopped.exit_code, "message": str(stopped)}))


def test_a_collapse_stops_every_rank_after_the_same_epoch(two_ranks, tmp_path: Path) -> None:
    """--stop_on_collapse: rank 0 judges the epochs' all-reduced figures and every rank stops
    after the second flagged epoch in a row with exit status 3 (a rank going on alone would hang
    in epoch 3's all-reduce)."""
    from common.vocabulary import EXIT_COLLAPSE

    # a ranking margin of 1000: every real spread of scores is below a tenth of it
    argv = [*_tiny_pretraining(_random_images(tmp_path), tmp_path, "stop"), "--stop_on_collapse",
            "--margin", "1000", "--max_steps_per_epoch", "1", "--epochs", "3"]
    two_ranks(_collapse_worker, argv, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1 and r0["exit_code"] == EXIT_COLLAPSE
    assert r0["message"].startswith("stopped after epoch 2 (--stop_on_collapse): COLLAPSE: "
                                    "epoch 2: ")
    assert "across levels (margin 1000)" in r0["message"]
    run_dir = tmp_path / "runs" / "stop"
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert not (run_dir / "swin_micro_qualiclip_pretrained.pkl").exists()


def _koniq_with_truncated_image(demo_root: Path, folder: Path, n_train: int) -> str:
    """A KonIQ layout of the demo's first `n_train` training images (the first one truncated)
    and a few validation and test images; returns the truncated image's name."""
    source = demo_root / "koniq10k"
    with (source / "koniq10k_distributions_sets.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r["set"] == "training"][:n_train]
    keep += [r for r in rows if r["set"] != "training"][:4]
    (folder / "1024x768").mkdir(parents=True)
    with (folder / "koniq10k_distributions_sets.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    for row in keep:
        data = (source / "1024x768" / row["image_name"]).read_bytes()
        (folder / "1024x768" / row["image_name"]).write_bytes(data)
    bad = folder / "1024x768" / keep[0]["image_name"]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])
    return bad.name


def test_truncated_jpeg_does_not_hang_two_ranks(demo_root: Path, tmp_path: Path) -> None:
    """torchrun, 2 ranks, --batch_size 1: the batch holding the truncated JPEG is empty on one
    rank; the epoch still finishes on both, naming the image."""
    data_root = tmp_path / "data"
    bad = _koniq_with_truncated_image(demo_root, data_root / "koniq10k", n_train=6)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", "pretrain_qualiclip.py", "--data_root", str(data_root), "--dataset",
               "koniq10k", "--model_size", "micro", "--imagenet_weights", "none", "--device",
               "cpu", "--num_workers", "0", "--crop_size", "64", "--batch_size", "1", "--epochs",
               "1", "--save_every", "0", "--distortions", "gaussian_blur", "--output_dir",
               str(out / "runs"), "--log_dir", str(out / "logs"), "--cache_dir",
               str(out / "cache"), "--model_name", "truncated"]
    # its own session, so a hung run is killed with every rank it started
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"two ranks hung on a truncated JPEG:\n{output[-3000:]}") from None
    assert process.returncode == 0, output[-5000:]
    log = (out / "logs" / "truncated.log").read_text()
    assert bad in output  # named by the rank that read it
    assert "epoch 1/1 |" in log and "skipped 1 batches" in log
    assert (out / "runs" / "truncated" / "swin_micro_qualiclip_pretrained.pkl").is_file()
