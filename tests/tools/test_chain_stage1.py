"""The chain and Stage-1 health: a collapsing pretraining stops it before fine-tuning, and
fine-tuning, the zero-shot test and the probe start from the label-free-validation-selected
encoder."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.tools.test_chain_controls import chain as stub_chain
from tests.tools.test_chain_demo import TINY

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "run_qualiclip_experiments.sh"


@pytest.mark.parametrize("gpus", ["1", "2"])  # 2: torchrun, which exits 1 when a rank fails
def test_a_collapsing_stage1_stops_the_chain_before_fine_tuning(tmp_path: Path, demo_root: Path,
                                                                 gpus: str) -> None:
    # A ranking margin of 1000 makes every real score spread "below a tenth of the margin": the
    # monitor flags the first epoch, and the chain's default --stop_on_collapse ends it there.
    run_dir = tmp_path / "run"
    env = {**os.environ, **TINY, "RUN_DIR": str(run_dir), "DATA_ROOT": str(demo_root),
           "IQA_CACHE_DIR": str(tmp_path / "cache"), "EXTRA_PRETRAIN_ARGS": "--margin 1000",
           "GPUS": gpus, "OMP_NUM_THREADS": "1"}
    env.pop("STOP_ON_COLLAPSE")  # the chain's default
    proc = subprocess.run(["bash", str(SCRIPT), "--demo"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 3, (proc.stdout + proc.stderr)[-4000:]
    assert re.findall(r"^\[run\] (\S+):", proc.stdout, flags=re.M) == ["data", "pretrain"]
    assert "--stop_on_collapse" in proc.stdout.split("[run] pretrain:")[1].splitlines()[0]
    err = proc.stderr
    assert ("STOPPED before fine-tuning: Stage 1 collapsed in stage 'pretrain' "
            "(--stop_on_collapse, exit status 3)") in err
    evidence = re.search(r"Evidence \(training batches, checkpoints/pretrain/metrics.jsonl\): "
                         r"epoch 1: rank accuracy \d\.\d{3} \(collapse at <= 0\.6\), level "
                         r"spread (\S+) \(collapse below 1\.00e\+02\), validation SRCC "
                         r"-?\d\.\d{3} \(held-out types\)\. COLLAPSE: epoch 1: .*its scores "
                         r"spread by \S+ across levels \(margin 1000\)", err)
    assert evidence, err
    assert float(evidence.group(1)) < 100
    assert "and rerun with --force pretrain; or rerun with STOP_ON_COLLAPSE=0" in err
    assert "FAILED: stage" not in err  # the collapse notice replaces the generic failure
    assert "stopped after epoch 1 (--stop_on_collapse): COLLAPSE: epoch 1" in proc.stdout
    ckpt = run_dir / "checkpoints"
    assert not (ckpt / "baseline").exists() and not (ckpt / "pretrained").exists()
    assert not (run_dir / ".done" / "pretrain").exists()
    stages = json.loads((run_dir / "timings.json").read_text())["stages"]
    assert stages["pretrain"]["attempts"][-1]["status"] == "failed"


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_fine_tuning_zero_shot_and_probe_start_from_the_best_encoder(tmp_path: Path) -> None:
    _, finetunes = stub_chain(tmp_path)
    commands = [json.loads(line) for line in (tmp_path / "commands.jsonl").read_text()
                .splitlines()]
    best = tmp_path / "run" / "checkpoints" / "pretrain" / "swin_base_qualiclip_best.pkl"
    assert finetunes["pretrained"]["--pretrained_encoder"] == str(best)
    tests = {Path(_flag(c, "--output")).name: _flag(c, "--model_path")
             for c in commands if c[0] == "test_swin.py" and "--model_path" in c}
    assert tests["zero_shot.json"] == str(best)
    # the untrained control has no validated epoch: its final (and only) encoder
    untrained = "untrained/swin_base_qualiclip_pretrained.pkl"
    assert tests["zero_shot_untrained.json"].endswith(untrained)
    probe = next(c for c in commands if c[:2] == ["-m", "tools.probe"])
    assert f"qualiclip={best}" in probe
    pretrains = [c for c in commands if c[0] == "pretrain_qualiclip.py"]
    assert len(pretrains) == 2 and all("--stop_on_collapse" in c for c in pretrains)

    off = tmp_path / "off"
    off.mkdir()
    stub_chain(off, "--stop_on_collapse", "0")
    commands = [json.loads(line) for line in (off / "commands.jsonl").read_text().splitlines()]
    assert not any("--stop_on_collapse" in c for c in commands)


def test_stop_on_collapse_knob_is_checked_and_listed(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", str(SCRIPT), "--stop_on_collapse", "yes", "--run_dir",
                           str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2
    assert ("error: STOP_ON_COLLAPSE must be 1 (stop on a collapse) or 0 (warn only), got "
            "'yes'") in proc.stderr
    assert not (tmp_path / "run").exists()
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], cwd=REPO, capture_output=True,
                           text=True, timeout=60, check=True).stdout
    assert "STOP_ON_COLLAPSE       [1]" in usage
    assert "swin_<size>_qualiclip_best.pkl" in usage
