"""run_qualiclip_experiments.sh --controls: the control stages, their flags and what invalidates
them, with a stand-in interpreter that records every stage command instead of training
(tests/tools/chain_stub.py)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.tools.chain_stub import logged_commands, write_stub

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "run_qualiclip_experiments.sh"
# Flags that differ between the runs of one recipe: name, seeds, start, label subset.
PER_RUN = {"--model_name", "--seed", "--split_seed", "--pretrained_encoder",
           "--lr_encoder_pretrained", "--label_fraction", "--label_seed"}


def chain(tmp_path: Path, *args: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Run the chain with --controls (two seeds); the stages it ran and their train_swin flags."""
    stub, log = write_stub(tmp_path), tmp_path / "commands.jsonl"
    log.unlink(missing_ok=True)
    (tmp_path / "data").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHON": str(stub), "STUB_LOG": str(log),
           "RUN_DIR": str(tmp_path / "run"), "DATA_ROOT": str(tmp_path / "data"), "DEVICE": "cpu",
           "CONTROL_SEEDS": "2", "SPLIT": "random",
           "FINETUNE_EPOCHS": "3", "LR_ENCODER_PRETRAINED": "1e-5"}
    proc = subprocess.run(["bash", str(SCRIPT), "--controls", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    ran = re.findall(r"^\[run\] (\S+):", proc.stdout, flags=re.M)
    finetunes = {}
    for cmd in logged_commands(log):
        if cmd[0] == "train_swin.py":
            pairs = zip(cmd[1:], [*cmd[2:], "--"], strict=True)
            flags = {a: "" if b.startswith("--") else b for a, b in pairs if a.startswith("--")}
            finetunes[flags["--model_name"]] = flags
    return ran, finetunes


def test_controls_run_three_arms_per_seed_and_follow_their_encoders(tmp_path: Path) -> None:
    ran, ft = chain(tmp_path)
    controls = [f"ctl_{arm}_s{i}" for i in (0, 1) for arm in ("scratch", "positive", "sham")]
    assert [s for s in ran if s.startswith("ctl_")] == controls
    assert ran.index("ctl_scratch_s0") > ran.index("baseline") and ran[-1] == "report"
    ckpt = tmp_path / "run" / "checkpoints"
    for i in (0, 1):
        scratch, positive, sham = (ft[f"ctl_{arm}_s{i}"] for arm in ("scratch", "positive", "sham"))
        for flags in (scratch, positive, sham):
            assert flags["--label_fraction"] == "0.25" and flags["--label_seed"] == str(42 + i)
            assert flags["--seed"] == str(42 + i)
            # the baseline's split: under SPLIT=random another split seed would test the positive
            # control on images whose labels its encoder was trained on
            assert flags["--split_seed"] == ft["baseline"]["--split_seed"] == "0"
            # the baseline's recipe: every other flag as the chain passes it for the baseline
            assert {k: v for k, v in flags.items() if k not in PER_RUN} == \
                {k: v for k, v in ft["baseline"].items() if k not in PER_RUN}
        assert "--pretrained_encoder" not in scratch
        assert positive["--pretrained_encoder"] == str(ckpt / "baseline" / "best_model.pkl")
        assert sham["--pretrained_encoder"] == str(ckpt / "untrained"
                                                   / "swin_base_qualiclip_pretrained.pkl")
        assert positive["--lr_encoder_pretrained"] == sham["--lr_encoder_pretrained"] == "1e-5"
    assert ft["baseline"]["--epochs"] == "3" and "--label_fraction" not in ft["baseline"]

    ran, _ = chain(tmp_path, "--force", "baseline")
    assert ran == ["baseline", "test_baseline", "ctl_positive_s0", "ctl_positive_s1", "report"]
    ran, _ = chain(tmp_path, "--force", "untrained")
    assert ran == ["untrained", "test_zero_shot_untrained", "ctl_sham_s0", "ctl_sham_s1",
                   "report"]


def test_control_knobs_are_checked_before_any_stage(tmp_path: Path) -> None:
    for knob, value, message in (("CONTROL_SEEDS", "1", "CONTROL_SEEDS must be an integer >= 2"),
                                 ("CONTROL_FRACTION", "100", "take percents 1..99, got '100'")):
        proc = subprocess.run(["bash", str(SCRIPT), "--controls", "--run_dir",
                               str(tmp_path / "run"), f"--{knob.lower()}", value], cwd=REPO,
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2 and message in proc.stderr
        assert not (tmp_path / "run").exists()
