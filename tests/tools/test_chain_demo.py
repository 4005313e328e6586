"""End to end: run_qualiclip_experiments.sh --demo with the smallest budgets, then a rerun."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.tools.report_checks import assert_no_placeholder, linked_images

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "run_qualiclip_experiments.sh"
TINY = {"PRETRAIN_EPOCHS": "1", "FINETUNE_EPOCHS": "1", "PRETRAIN_STEPS": "1",
        "FINETUNE_STEPS": "1", "PRETRAIN_BATCH": "2", "FINETUNE_BATCH": "4", "NUM_LEVELS": "2",
        "TEST_PATCHES": "1", "VAL_PATCHES": "1", "TEST_DATASETS": "spaq kadid10k",
        "LABEL_FRACTIONS": "50", "PROBE_PATCHES": "1", "STRICT_REPORT": "1",
        "STOP_ON_COLLAPSE": "0",  # one step of the random model ranks levels at chance
        "BASELINES": "piqe"}


def run_chain(run_dir: Path, data_root: Path, *args: str, status: int = 0, **knobs: str) -> str:
    """Run the chain in demo mode; return its output (the test fails on another exit status)."""
    env = {**os.environ, **TINY, "RUN_DIR": str(run_dir), "DATA_ROOT": str(data_root),
           "IQA_CACHE_DIR": str(run_dir / "cache"), **knobs}
    proc = subprocess.run(["bash", str(SCRIPT), "--demo", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == status, output[-4000:]
    return output


@pytest.mark.slow
def test_demo_chain_writes_a_filled_report_and_reruns_as_skips(tmp_path: Path,
                                                                demo_root: Path) -> None:
    run_dir = tmp_path / "run"
    first = run_chain(run_dir, demo_root, "--ablation", "labels")
    ran = re.findall(r"^\[run\] (\S+):", first, flags=re.M)
    assert ran[:4] == ["data", "pretrain", "untrained", "baseline"]
    expected = {"pretrained", "test_baseline", "test_pretrained", "test_zero_shot",
                "test_zero_shot_untrained", "test_classical", "probe", "report"}
    assert expected <= set(ran)
    report = run_dir / "QUALICLIP_RESULTS.md"
    text = report.read_text()
    assert_no_placeholder(text)
    assert "## Main results: KonIQ-10k" in text and "published figure" in text
    assert "## Does pretraining help?" in text and "| Better quality-aware features? |" in text
    assert (run_dir / "comparisons.json").is_file() and (run_dir / "probe" / "probe.json").is_file()
    labels = {"labels_f50_baseline", "labels_f50_pretrained", "test_labels_f50_pretrained"}
    assert labels <= set(ran)
    half = json.loads((run_dir / "checkpoints" / "labels_f50_pretrained" / "finetune_config.json")
                      .read_text())
    assert half["images"]["train"] == 56 and half["args"]["label_fraction"] == 0.5
    assert "## Label efficiency" in text and "| 50 % |" in text
    plots = linked_images(report)
    assert len(plots) >= 4 and all(p.is_file() for p in plots)
    for name in ("baseline", "pretrained", "zero_shot", "zero_shot_untrained", "classical_piqe"):
        results = json.loads((run_dir / "eval" / f"{name}.json").read_text())["results"]
        assert set(results) == {"spaq", "kadid10k"}
    assert "## KADID-10k by distortion type" in text and "| gaussian_blur * |" in text
    piqe_row = "| PIQE, classical opinion-unaware baseline (pypiqe 1.2) |"
    assert text.count(piqe_row) == 2  # cross-dataset and KADID-10k type tables
    assert "minus PIQE (classical, pypiqe 1.2; minus its raw score)" in text
    assert (run_dir / "logs" / "pretrain.log").is_file()

    second = run_chain(run_dir, demo_root, "--ablation", "labels")
    assert "[run]" not in second
    skipped = re.findall(r"^\[skip\] (\S+):", second, flags=re.M)
    assert set(ran) <= set(skipped)
    stages = json.loads((run_dir / "timings.json").read_text())["stages"]
    assert all(stages[name]["skips"] == 1 for name in ran)

    longer = run_chain(run_dir, demo_root, status=2, PRETRAIN_EPOCHS="2")
    assert "error: stage 'pretrain' finished" in longer
    assert "with other settings: --epochs was '1', now '2'" in longer
