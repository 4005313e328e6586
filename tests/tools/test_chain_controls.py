"""run_qualiclip_experiments.sh --controls: the control stages, their flags and what invalidates
them, with a stand-in interpreter that records every stage command instead of training."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "run_qualiclip_experiments.sh"
# Records each command; the chain's own bookkeeping runs for real; the stage scripts only leave
# the files the chain looks for (encoder checkpoints, the best label-free validation epoch's one
# when pretraining ran epochs, best_model.pkl, dataset summaries).
STUB = '''#!{python}
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
if args[:2] in (["-m", "tools.stage_settings"], ["-m", "tools.timings"]):
    os.execv(sys.executable, [sys.executable, *args])
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")


def flag(name):
    return args[args.index(name) + 1]


if args[:2] == ["-m", "data"]:
    sys.exit(0 if flag("--dataset") == "koniq10k" else 3)
elif args[0] in ("pretrain_qualiclip.py", "train_swin.py"):
    run = Path(flag("--output_dir")) / flag("--model_name")
    run.mkdir(parents=True, exist_ok=True)
    name = "best_model.pkl" if args[0] == "train_swin.py" else "swin_x_qualiclip_pretrained.pkl"
    (run / name).write_bytes(b"0")
    if args[0] == "pretrain_qualiclip.py" and flag("--epochs") != "0":  # validated epochs
        (run / "swin_x_qualiclip_best.pkl").write_bytes(b"0")
elif args[0] == "test_swin.py":
    Path(flag("--output")).write_text("{{}}")
'''
# Flags that differ between the runs of one recipe: name, seeds, start, label subset.
PER_RUN = {"--model_name", "--seed", "--split_seed", "--pretrained_encoder",
           "--lr_encoder_pretrained", "--label_fraction", "--label_seed"}


def chain(tmp_path: Path, *args: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Run the chain with --controls (two seeds); the stages it ran and their train_swin flags."""
    stub, log = tmp_path / "python", tmp_path / "commands.jsonl"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    log.unlink(missing_ok=True)
    (tmp_path / "data").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHON": str(stub), "STUB_LOG": str(log),
           "RUN_DIR": str(tmp_path / "run"), "DATA_ROOT": str(tmp_path / "data"), "DEVICE": "cpu",
           "CONTROL_SEEDS": "2",
           "FINETUNE_EPOCHS": "3", "LR_ENCODER_PRETRAINED": "1e-5"}
    proc = subprocess.run(["bash", str(SCRIPT), "--controls", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    ran = re.findall(r"^\[run\] (\S+):", proc.stdout, flags=re.M)
    finetunes = {}
    for line in log.read_text().splitlines():
        cmd = json.loads(line)
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
            assert flags["--seed"] == str(42 + i) and flags["--split_seed"] == str(i)
            # the baseline's recipe: every other flag as the chain passes it for the baseline
            assert {k: v for k, v in flags.items() if k not in PER_RUN} == \
                {k: v for k, v in ft["baseline"].items() if k not in PER_RUN}
        assert "--pretrained_encoder" not in scratch
        assert positive["--pretrained_encoder"] == str(ckpt / "baseline" / "best_model.pkl")
        assert sham["--pretrained_encoder"] == str(ckpt / "untrained"
                                                   / "swin_x_qualiclip_pretrained.pkl")
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
