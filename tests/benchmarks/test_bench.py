"""Smoke test of benchmarks/bench.py: runs on CPU with the micro model, prints every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.bench import check_targets
from benchmarks.timing import peak_flops

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIRED_KEYS = (
    "train_images_per_s", "backbone_images_per_s", "train_step_vs_backbone_ratio",
    "pretrain_images_per_s", "pretrain_crops_per_s", "pretrain_degrade_share",
    "loader_images_per_s_cold", "loader_images_per_s_cached", "loader_cache_speedup",
    "eval_images_per_s", "peak_memory_mb", "mfu", "mfu_peak_tflops", "model_gmacs_forward",
    "device", "device_name", "torch", "settings", "targets",
)
MEASURED_KEYS = (
    "train_images_per_s", "backbone_images_per_s", "train_step_vs_backbone_ratio",
    "pretrain_images_per_s", "pretrain_crops_per_s", "pretrain_degrade_share",
    "loader_images_per_s_cold", "loader_images_per_s_cached", "loader_cache_speedup",
    "eval_images_per_s", "peak_memory_mb", "model_gmacs_forward",
)


def test_bench_cpu_micro_prints_every_figure() -> None:
    """Tiny counts: the script runs from the repository root and its JSON has all keys."""
    cmd = [sys.executable, "benchmarks/bench.py", "--device", "cpu", "--model_size", "micro",
           "--batch_size", "2", "--steps", "1", "--repeats", "1", "--warmup", "1",
           "--pretrain_batch_size", "1", "--num_levels", "2", "--eval_patches", "2",
           "--loader_images", "2", "--loader_passes", "1", "--threads", "1", "--json"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    missing = [key for key in REQUIRED_KEYS if key not in result]
    assert not missing, f"missing keys {missing}"
    for key in MEASURED_KEYS:
        assert isinstance(result[key], float) and result[key] > 0, (key, result[key])
    assert 0 < result["pretrain_degrade_share"] < 1
    assert result["mfu"] is None  # no known peak on CPU
    assert result["device"] == "cpu"
    assert result["settings"]["model_size"] == "micro"
    assert set(result["targets"]) == {"train_step_vs_backbone_ratio", "loader_cache_speedup",
                                      "pretrain_degrade_share"}


def test_peak_flops_known_gpus_only() -> None:
    """Dense bf16 peaks for H100/A100, nothing for unknown devices or fp32."""
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "bf16") == 312e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "off") is None
    assert peak_flops("NVIDIA GeForce RTX 3090", "bf16") is None
    assert peak_flops("NVIDIA RTX A1000", "bf16") is None
    assert peak_flops("NVIDIA H100 NVL", "bf16") is None


def test_targets_checked_only_where_measured() -> None:
    """A figure that was not measured gives met=None, not a verdict."""
    checks = check_targets({"train_step_vs_backbone_ratio": 1.1, "loader_cache_speedup": 2.0,
                             "pretrain_degrade_share": None})
    assert checks["train_step_vs_backbone_ratio"]["met"] is True
    assert checks["loader_cache_speedup"]["met"] is False
    assert checks["pretrain_degrade_share"]["met"] is None
