"""run_qualiclip_experiments.sh's extra arms: the matched-rate arm (MATCHED_RATE: the pretrained
runs again at the baseline's encoder rate) and --pretrain_repeats (several Stage-1 runs shared by
the fine-tuning seeds), with the stand-in interpreter (tests/tools/chain_stub.py)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from engine.protocols import PROTOCOLS, apply_protocol, learning_rates
from tests.tools.test_chain_parallel import chain
from tests.tools.test_chain_slurm import chain as slurm_chain
from tests.tools.test_chain_slurm import dependencies
from tools.chain_graph import load_plan, needs_of
from train_swin import get_args_parser

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "run_qualiclip_experiments.sh"
BEST = "swin_base_qualiclip_best.pkl"


def ran(output: str) -> list[str]:
    """The stages a chain ran, in order."""
    return re.findall(r"^\[run\] (\S+):", output, flags=re.M)


def by_run(commands: list[list[str]]) -> dict[str, list[str]]:
    """{--model_name or --output file name: command} of the training and test commands."""
    out = {}
    for c in commands:
        for flag in ("--model_name", "--output"):
            if flag in c:
                out[Path(c[c.index(flag) + 1]).name] = c
    return out


def flag(command: list[str], name: str) -> str:
    """The value of the last `name` in a command (argparse keeps the last)."""
    return command[len(command) - 1 - command[::-1].index(name) + 1]


def encoder_rate(command: list[str]) -> float:
    """The rate train_swin.py trains the encoder of this command at, by its own parser."""
    args = get_args_parser().parse_args(command[command.index("train_swin.py") + 1:])
    apply_protocol(args)
    return learning_rates(args)[0]


def test_matched_arm_starts_from_the_pretrained_encoder_at_the_baselines_rate(
        tmp_path: Path) -> None:
    out, commands = chain(tmp_path, "run", REPEATS="3")  # auto: on from 3 repeats
    stages, runs = ran(out), by_run(commands)
    for i, s in enumerate(("", "_r1", "_r2")):
        assert stages.index(f"pretrained{s}") + 1 == stages.index(f"pretrained_matched{s}")
        assert stages.index(f"test_pretrained{s}") + 1 == stages.index(
            f"test_pretrained_matched{s}")
        base, pre, matched = (runs[f"{arm}{s}"] for arm in
                              ("baseline", "pretrained", "pretrained_matched"))
        assert flag(matched, "--pretrained_encoder") == flag(pre, "--pretrained_encoder") == \
            f"RUN/checkpoints/pretrain/{BEST}"
        assert flag(matched, "--lr_encoder_pretrained") == repr(PROTOCOLS["plan"]["lr"])
        assert encoder_rate(matched) == encoder_rate(base) == 5e-6 != encoder_rate(pre)
        assert flag(matched, "--seed") == flag(pre, "--seed") == str(42 + i)
        assert runs[f"pretrained_matched{s}.json"][runs[f"pretrained_matched{s}.json"].index(
            "--model_path") + 1] == f"RUN/checkpoints/pretrained_matched{s}/best_model.pkl"
    assert ("matched-rate arm: pretrained_matched* fine-tune the Stage-1 encoder at the "
            "baseline's encoder rate 5e-06 (pretrained*: 1e-06)") in out
    assert len(stages) == 26

    # a rate given three ways: the matched arm still trains at the baseline's
    knobs = {"REPEATS": "1", "MATCHED_RATE": "1", "FINETUNE_LR": "2e-5",
             "LR_ENCODER_PRETRAINED": "1e-5", "EXTRA_FINETUNE_ARGS": "--lr_encoder_pretrained 3e-6"}
    _, commands = chain(tmp_path, "given", **knobs)
    runs = by_run(commands)
    assert flag(runs["pretrained_matched"], "--lr_encoder_pretrained") == "2e-05"
    assert encoder_rate(runs["pretrained_matched"]) == encoder_rate(runs["baseline"]) == 2e-5
    assert encoder_rate(runs["pretrained"]) == 3e-6


@pytest.mark.parametrize(("knobs", "matched"), [
    ({}, False),  # two repeats: auto leaves it out
    ({"REPEATS": "1", "MATCHED_RATE": "1"}, True),
    ({"REPEATS": "3", "MATCHED_RATE": "0"}, False),
    ({"REPEATS": "3", "PROTOCOL": "smart"}, False),  # one encoder rate for both arms anyway
])
def test_the_matched_arm_runs_when_asked_and_the_rates_differ(tmp_path: Path, knobs: dict,
                                                             matched: bool) -> None:
    out, _ = chain(tmp_path, "run", "--plan", **knobs)
    assert ("pretrained_matched " in out) == matched
    assert ("notice: no matched-rate arm: the pretrained runs fine-tune the encoder at the "
            "baseline's rate (5e-07) already" in out) == ("PROTOCOL" in knobs)


def test_pretrain_repeats_serve_the_seeds_in_turn(tmp_path: Path) -> None:
    out, commands = chain(tmp_path, "run", "--pretrain_repeats", "2", REPEATS="3")
    stages = ran(out)
    assert stages[:5] == ["data", "pretrain", "pretrain_r1", "untrained", "untrained_r1"]
    runs = by_run(commands)
    assert [flag(runs[n], "--seed") for n in ("pretrain", "pretrain_r1", "untrained_r1")] == [
        "42", "43", "43"]
    assert flag(runs["untrained_r1"], "--epochs") == "0"
    for s, start in (("", "pretrain"), ("_r1", "pretrain_r1"), ("_r2", "pretrain")):
        for arm in ("pretrained", "pretrained_matched"):
            assert flag(runs[arm + s], "--pretrained_encoder") == \
                f"RUN/checkpoints/{start}/{BEST}"
    # the zero-shot test, the probe and the labels ablation stay on the first run
    assert flag(runs["zero_shot.json"], "--model_path") == f"RUN/checkpoints/pretrain/{BEST}"
    probe = next(c for c in commands if c[:2] == ["-m", "tools.probe"])
    assert f"qualiclip=RUN/checkpoints/pretrain/{BEST}" in probe

    forced, _ = chain(tmp_path, "run", "--pretrain_repeats", "2", "--force", "pretrain_r1",
                      REPEATS="3")
    assert ran(forced) == ["pretrain_r1", "pretrained_r1", "pretrained_matched_r1",
                           "test_pretrained_r1", "test_pretrained_matched_r1", "report"]


@pytest.mark.parametrize("gpus", ["1", "2"])  # 2: torchrun, which exits 1 when a rank fails
def test_a_collapse_in_a_later_pretraining_run_stops_the_chain(tmp_path: Path, gpus: str) -> None:
    out, commands = chain(tmp_path, "run", "--pretrain_repeats", "2", status=3, REPEATS="2",
                          STUB_COLLAPSE="pretrain_r1", GPUS=gpus)
    assert ran(out) == ["data", "pretrain", "pretrain_r1"]
    assert ("STOPPED before fine-tuning: Stage 1 collapsed in stage 'pretrain_r1' "
            "(--stop_on_collapse, exit status 3)") in out
    assert "Evidence (training batches, checkpoints/pretrain_r1/metrics.jsonl)" in out
    assert "rerun with --force pretrain_r1" in out and "FAILED: stage" not in out
    assert not any(c[0] == "train_swin.py" for c in commands)


def test_parallel_and_slurm_follow_each_seeds_stage1_run(tmp_path: Path) -> None:
    _, sequential = chain(tmp_path, "seq", "--pretrain_repeats", "2", REPEATS="3")
    out, parallel = chain(tmp_path, "par", "--pretrain_repeats", "2", "--parallel", "2",
                          REPEATS="3")
    assert sorted(map(json.dumps, parallel)) == sorted(map(json.dumps, sequential))
    assert len(ran(out)) == 28
    needs = needs_of(load_plan(tmp_path / "par" / "chain_plan.jsonl"))
    assert needs["pretrained_r1"] == needs["pretrained_matched_r1"] == ["pretrain_r1"]
    assert needs["pretrained_r2"] == needs["pretrained_matched_r2"] == ["pretrain"]
    assert needs["test_pretrained_matched"] == ["pretrained_matched"]

    slurm_chain(tmp_path, "slurm", "--pretrain_repeats", "2", "--repeats", "3", "--submit",
                "slurm", "--dry_run")
    graph = dependencies(tmp_path / "slurm" / "slurm" / "submit.sh")
    assert graph["pretrain_r1"] == graph["untrained_r1"] == set()
    assert graph["pretrained_r1"] == graph["pretrained_matched_r1"] == {"pretrain_r1"}
    assert graph["pretrained_matched_r2"] == {"pretrain"}
    assert graph["report"] >= {"pretrain_r1", "untrained_r1", "test_pretrained_matched_r2"}
    script = next((tmp_path / "slurm" / "slurm").glob("??_pretrain_r1.sbatch")).read_text()
    assert "#SBATCH --gpus-per-node=8\n" in script  # PRETRAIN_GPUS, as the first run


def test_plan_counts_every_stage1_run(tmp_path: Path) -> None:
    out, _ = chain(tmp_path, "run", "--plan", "--pretrain_repeats", "3", REPEATS="3",
                   MATCHED_RATE="0")
    rows = {m[1]: m[2] for m in re.finditer(r"^(\S+) +\d+ +[\d,]+ +[\d,]+ +([\d,]+) ", out,
                                            flags=re.M)}
    assert rows["pretrain"] == rows["pretrain_r1"] == rows["pretrain_r2"] != "0"
    assert rows["untrained_r2"] == "0"
    assert "Plan: 24 stages to run" in out


def test_both_knobs_are_checked_and_listed(tmp_path: Path) -> None:
    for args, message in (
            (["--repeats", "2", "--pretrain_repeats", "3"],
             "PRETRAIN_REPEATS must be an integer from 1 to REPEATS (2)"),
            (["--matched_rate", "yes"], "MATCHED_RATE must be 1 (add the matched-rate arm), 0")):
        proc = subprocess.run(["bash", str(SCRIPT), *args, "--run_dir", str(tmp_path / "run")],
                              cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2 and message in proc.stderr
        assert not (tmp_path / "run").exists()
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], cwd=REPO, capture_output=True,
                           text=True, timeout=60, check=True).stdout
    assert "  PRETRAIN_REPEATS       [1]  " in usage
    assert "  MATCHED_RATE           [auto]  " in usage


def test_every_knob_is_in_the_help() -> None:
    text = SCRIPT.read_text()
    knobs = shlex.split(re.search(r"^KNOBS=\(([^)]*)\)", text, flags=re.M)[1])
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], cwd=REPO, capture_output=True,
                           text=True, timeout=60, check=True).stdout
    missing = [k for k in knobs if not re.search(rf"(^|\s)({k}|--{k.lower()})\s", usage)]
    assert missing == []
