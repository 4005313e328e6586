"""The cost before the run: run_qualiclip_experiments.sh --plan, tools.chain_cost's crops and times,
and the report's table of the estimate beside the measured wall times (tools.cost_check)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from engine.pretrain_setup import SIZE_DEFAULTS as PRETRAIN_DEFAULTS
from engine.protocols import PROTOCOLS, SIZE_DEFAULTS
from tools.chain_cost import REFERENCE, Sizes, simulate_wall, stage_work, throughput
from tools.chain_graph import Decision, Stage
from tools.cost_check import estimate_table

REPO = Path(__file__).resolve().parents[2]
RATE = REFERENCE[("cuda", "base")].train  # crops/s of the reference Swin-B figure
EVAL = REFERENCE[("cuda", "base")].eval


def plan(tmp_path: Path, *args: str, status: int = 0, **knobs: str) -> str:
    """--plan of the real-data chain with no data present; its output."""
    env = {**os.environ, "RUN_DIR": str(tmp_path / "run"), "DATA_ROOT": str(tmp_path / "none"),
           "BENCH_JSON": str(tmp_path / "bench.json"), **knobs}
    proc = subprocess.run(["bash", str(REPO / "run_qualiclip_experiments.sh"), "--plan", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == status, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


def test_plan_of_five_repeats_at_base_on_the_official_sizes(tmp_path: Path) -> None:
    out = plan(tmp_path, "--repeats", "5", "--parallel", "8", MODEL_SIZE="base")
    assert not (tmp_path / "run").exists()  # a dry run writes nothing
    assert "Plan: 38 stages to run, 0 skipped." in out  # at 5 repeats with the matched-rate arm
    assert "official release sizes (no data stage summary) for agiqa3k, kadid10k, koniq10k, " \
        "livec, spaq." in out
    # plan preset: 50 epochs x 25 crops x 7,058 training images; 10 crops x 1,000 validation
    # images per epoch and 25 x 2,015 test images once
    finetune = (50 * 25 * 7058) / RATE + (50 * 10 * 1000 + 25 * 2015) / EVAL
    assert re.search(r"^baseline_r4 +1 +8,822,500 +550,375 +0 +" + f"{finetune / 3600:.2f}$",
                     out, flags=re.M)
    assert re.search(r"^pretrain +1 +0 +0 +846,960 ", out, flags=re.M)  # 10 x 7,058 x 2 x 6
    assert "    $ .venv/bin/python train_swin.py " in out and "--model_name pretrained_r4 " in out
    tests = 25 * (11125 + 10125 + 2982 + 1162 + 2015)  # every cross-dataset image, KonIQ test
    probe = 3 * 5 * (10073 + 11125 + 10125 + 2982 + 1162)
    assert "--model_name pretrained_matched_r4 " in out
    total = 15 * finetune + 846960 / RATE + (17 * tests + probe) / EVAL
    assert f"Total: {total / 3600:.2f} GPU hours" in out
    wall = float(re.search(r"wall time at --parallel 8 \(1 GPU per slot\): ([\d.]+) h", out)[1])
    # the pretrained runs wait for the pretraining; eight fine-tuning runs at a time
    assert wall == pytest.approx((846960 / RATE + 2 * finetune) / 3600, rel=0.05)
    assert "published Swin-B training throughput with AMP on an A100" in out


def test_plan_uses_the_saved_benchmark_of_the_same_model_size(tmp_path: Path) -> None:
    bench = {"train_images_per_s": 540.0, "eval_crops_per_s": 1500.0,
             "pretrain_crops_per_s": 500.0, "device_name": "NVIDIA H100",
             "settings": {"model_size": "base", "crop_size": 224, "amp": "bf16",
                          "compile": False}}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    out = plan(tmp_path, MODEL_SIZE="base")
    assert f"measured: {tmp_path / 'bench.json'} (NVIDIA H100, amp bf16, compile False)" in out
    assert "Throughput at 224 px: training 540.0, scoring 1500.0, pretraining 500.0" in out
    out = plan(tmp_path, MODEL_SIZE="tiny")
    assert "Throughput: no figure for model size tiny on auto: run `make gpu-check` " \
        "(GC_SIZE=tiny)" in out
    assert re.search(r"^baseline +1 +8,822,500 +550,375 +0 +n/a$", out, flags=re.M)


def test_a_stage_wider_than_the_gpu_slots_is_refused_before_the_run(tmp_path: Path) -> None:
    out = plan(tmp_path, "--parallel", "2", status=2, PRETRAIN_GPUS="4")
    assert ("error: stage pretrain runs 4 processes (torchrun --nproc_per_node 4) but the run "
            "has 2 GPU slots (--parallel x GPUS, or the GPUs in CUDA_VISIBLE_DEVICES)") in out


def _stage(name: str, command: list[str], feeds: tuple[str, ...] = ()) -> Stage:
    return Stage(name, None, (), feeds, False, (), ("python", *command))


def test_crops_follow_the_flags_the_data_summary_and_the_size_defaults(tmp_path: Path) -> None:
    (tmp_path / "koniq10k.json").write_text(json.dumps(
        {"n_images": 100, "splits": {"train": 70, "val": 10, "test": 20}}))
    sizes = Sizes(tmp_path)
    ft = _stage("labels", ["train_swin.py", "--model_size", "base", "--label_fraction", "0.25",
                           "--epochs", "4", "--train_patches", "3", "--device", "cuda"])
    work = stage_work(ft, sizes, "plan")
    assert (work.train, work.eval) == (4 * 3 * 18, 4 * 10 * 10 + 20 * 25)  # ceil(0.25 x 70)
    capped = _stage("b", ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "train_swin.py", "--model_size", "mini", "--max_steps_per_epoch", "1",
                          "--epochs", "2", "--device", "cuda"])
    mini_batch = SIZE_DEFAULTS["mini"].get("batch_size", PROTOCOLS["plan"]["batch_size"])
    assert stage_work(capped, sizes, "plan").train == 2 * mini_batch * 2
    pre = _stage("p", ["pretrain_qualiclip.py", "--model_size", "mini", "--epochs", "2",
                       "--num_levels", "3", "--device", "cpu"])
    views = PRETRAIN_DEFAULTS["mini"]["views_per_image"]
    assert stage_work(pre, sizes, "plan").pretrain == 2 * 70 * views * 2 * 4
    assert sizes.assumed == set()


def test_wall_time_follows_the_graph_and_the_slots() -> None:
    stages = [_stage("pretrain", ["x", "--device", "cuda"], feeds=("ft1", "ft2")),
              _stage("ft1", ["x", "--device", "cuda"]), _stage("ft2", ["x", "--device", "cuda"]),
              _stage("base", ["x", "--device", "cuda"])]
    decisions = {"pretrain": Decision("run"), "ft1": Decision("run", needs=["pretrain"]),
                 "ft2": Decision("run", needs=["pretrain"]), "base": Decision("run")}
    seconds = {"pretrain": 1.0, "ft1": 2.0, "ft2": 2.0, "base": 3.0}
    assert simulate_wall(stages, decisions, seconds, 1, 1) == 8.0
    assert simulate_wall(stages, decisions, seconds, 2, 2) == 5.0  # pretrain+base, ft1, ft2
    assert simulate_wall(stages, decisions, seconds, 4, 4) == 3.0


def test_throughput_scales_the_reference_to_the_crop_size(tmp_path: Path) -> None:
    rate = throughput(tmp_path / "absent.json", "micro", "cpu").at(112)
    assert rate.train == pytest.approx(48.7 * 4) and "scaled from 224 to 112 px" in rate.source


def test_report_sets_the_estimate_beside_the_measured_times(tmp_path: Path) -> None:
    path = tmp_path / "cost_estimate.json"
    assert estimate_table(path, {}).startswith("Estimate before the run: none saved")
    path.write_text(json.dumps({
        "stages": {"a": {"devices": 1, "crops": {"train": 900, "eval": 0, "pretrain": 0},
                         "gpu_s": 10.0, "command": []},
                   "b": {"devices": 2, "crops": {"train": 0, "eval": 0, "pretrain": 400},
                         "gpu_s": 40.0, "command": []}},
        "throughput": {"source": "reference: test"}, "gpu_s": 50.0, "wall_s": 20.0,
        "schedule": "--parallel 2 (1 GPU per slot)"}))
    timings = {"a": {"attempts": [{"start_unix": 100.0, "wall_s": 9.0, "status": "done"}]},
               "b": {"attempts": [{"start_unix": 104.0, "wall_s": 30.0, "status": "done"}]}}
    text = estimate_table(path, timings)
    assert "(tools.chain_cost; throughput: reference: test)" in text
    assert "| a | 900 | 10.0 s | 9.0 s | 0.90 | 100 |" in text
    assert "| b | 400 | 20.0 s | 30.0 s | 1.50 | 13 |" in text
    assert "| **device time, all stages** |  | 50.0 s | 1 min 09 s | 1.38 |  |" in text
    assert "| **wall time at --parallel 2 (1 GPU per slot)** |  | 20.0 s | 34.0 s | 1.70 |  |" \
        in text
