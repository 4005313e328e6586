"""benchmarks/gpu_check.sh in its CPU variant, trimmed to a few steps, and its summary."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from benchmarks.gpu_check import summary

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = ("demo_data", "device_checks", "bench_bf16", "finetune_bf16", "finetune_fp16_acc2",
         "pretrain_bf16", "pretrain_fp16_acc2", "torchrun_finetune", "torchrun_pretrain",
         "kill_resume", "load_on_cpu", "bench_compile")
TRIMMED = ("device_checks", "pretrain_bf16")  # the suite runs these; `make gpu-check` runs all


def test_cpu_variant_runs_its_steps_and_ends_with_the_summary(demo_root: Path,
                                                              tmp_path: Path) -> None:
    """GC_DEVICE=cpu GC_SIZE=micro with GC_ONLY: the chosen steps pass, the others are listed as
    skipped, and the last screen is the summary table with the verdict."""
    out = tmp_path / "gc"
    env = {**os.environ, "GC_DEVICE": "cpu", "GC_SIZE": "micro", "GC_OUT": str(out),
           "GC_ONLY": " ".join(TRIMMED), "GC_DEMO": str(demo_root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    table = lines[-(len(STEPS) + 2):]
    assert table[0].split()[:6] == ["step", "status", "time", "s", "peak", "MiB"]
    rows = {line.split()[0]: line.split() for line in table[1:-1]}
    assert list(rows) == list(STEPS)
    for name in STEPS:
        assert rows[name][1] == ("ok" if name in TRIMMED else "SKIP"), rows[name]
    assert rows["pretrain_bf16"][3] != "-" and float(rows["pretrain_bf16"][4]) > 0  # MiB, img/s
    assert table[-1].startswith("gpu-check PASSED (12 steps, 10 skipped")
    result = json.loads((out / "summary.json").read_text())
    assert result["passed"] and result["failed"] == []
    device = json.loads((out / "device_checks.out").read_text())
    assert device["ok"] and device["degradation_host_copies"] == []
    assert device["sync"] == {"pretrain_step": "n/a (cpu)", "finetune_step": "n/a (cpu)"}


def test_summary_names_failed_and_timed_out_steps(tmp_path: Path) -> None:
    """A failed or timed-out step makes the verdict FAILED (exit status 1 from the script)."""
    (tmp_path / "records").mkdir()
    (tmp_path / "steps.tsv").write_text("a\tok\t3\tfine\nb\tFAIL\t5\tbroken\nc\tTIMEOUT\t9\t\n"
                                        "d\tSKIP\t0\tnot in GC_ONLY\n")
    (tmp_path / "records" / "a.json.rank0").write_text(
        json.dumps({"rc": 0, "seconds": 3, "peak_mb": 100.0, "memory": "gpu"}))
    (tmp_path / "records" / "a.json.rank1").write_text(
        json.dumps({"rc": 0, "seconds": 3, "peak_mb": 120.0, "memory": "gpu"}))
    text, result = summary(tmp_path)
    assert result["failed"] == ["b", "c"] and not result["passed"]
    assert text.splitlines()[-1].startswith("gpu-check FAILED: b, c")
    assert text.splitlines()[1].split()[:4] == ["a", "ok", "3", "120g"]  # peak over ranks
