"""run_qualiclip_experiments.sh --parallel N: the sequential chain's stages and commands, run
side by side as their inputs are ready, with a stand-in interpreter (tests/tools/chain_stub.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.tools.chain_stub import logged_commands, write_stub
from tools.chain_graph import load_plan, needs_of

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "run_qualiclip_experiments.sh"


def chain(tmp_path: Path, run: str, *args: str, status: int = 0,
          **knobs: str) -> tuple[str, list[list[str]]]:
    """Run the chain (two repeats, the stand-in interpreter); its output and stage commands."""
    stub, log = write_stub(tmp_path), tmp_path / f"{run}.jsonl"
    log.unlink(missing_ok=True)
    (tmp_path / "data").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHON": str(stub), "STUB_LOG": str(log), "RUN_DIR": str(tmp_path / run),
           "DATA_ROOT": str(tmp_path / "data"), "DEVICE": "cpu", "REPEATS": "2",
           "OMP_NUM_THREADS": "4", **knobs}
    proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == status, output[-4000:]
    commands = logged_commands(log) if log.is_file() else []
    return output, [[w.replace(str(tmp_path / run), "RUN") for w in c] for c in commands]


def intervals(run_dir: Path) -> dict[str, tuple[float, float]]:
    """(start, end) of each stage's last attempt, from timings.json."""
    stages = json.loads((run_dir / "timings.json").read_text())["stages"]
    return {name: (r["attempts"][-1]["start_unix"],
                   r["attempts"][-1]["start_unix"] + r["attempts"][-1]["wall_s"])
            for name, r in stages.items() if r["attempts"]}


def test_parallel_runs_the_sequential_commands_side_by_side_in_graph_order(
        tmp_path: Path) -> None:
    _, sequential = chain(tmp_path, "seq", STUB_SLEEP="0.3")
    out, parallel = chain(tmp_path, "par", "--parallel", "3", STUB_SLEEP="0.3")
    assert sorted(map(json.dumps, parallel)) == sorted(map(json.dumps, sequential))
    ran = re.findall(r"^\[run\] (\S+):", out, flags=re.M)
    assert ran[:2] == ["data", "pretrain"] and ran[-1] == "report" and len(ran) == 16
    assert "on CPU slot 0, OMP_NUM_THREADS 1; log " in out  # 4 threads over 3 slots
    assert out.rstrip().endswith(f"done: {tmp_path / 'par'}/QUALICLIP_RESULTS.md")
    spans = intervals(tmp_path / "par")
    needs = needs_of(load_plan(tmp_path / "par" / "chain_plan.jsonl"))
    for name, inputs in needs.items():
        assert all(spans[n][1] <= spans[name][0] for n in inputs), name
    assert spans["baseline"][0] < spans["pretrain"][1]  # the baselines need no pretraining
    assert spans["pretrained"][0] < spans["pretrained_r1"][1]  # the repeats overlap
    status = (tmp_path / "par" / "logs" / "status.log").read_text().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d running 0 \| done 15 \| skipped 0 \| waiting 0 \| "
                        r"failed 0 \| blocked 0", status[-1])
    assert any("| now: " in line and "pretrain [CPU slot" in line for line in status)
    assert (tmp_path / "par" / ".done" / "test_pretrained_r1").is_file()
    assert (tmp_path / "par" / "logs" / "pretrained_r1.log").read_text().startswith("=== ")

    again, commands = chain(tmp_path, "par", "--parallel", "3")
    assert commands == [] and "[run]" not in again
    assert "[skip] pretrained_r1: finished " in again
    forced, commands = chain(tmp_path, "par", "--parallel", "3", "--force", "baseline")
    assert re.findall(r"^\[run\] (\S+):", forced, flags=re.M) == [
        "baseline", "test_baseline", "report"]


def test_a_failed_stage_stops_only_the_stages_that_need_it(tmp_path: Path) -> None:
    out, _ = chain(tmp_path, "run", "--parallel", "2", status=1, STUB_FAIL="pretrain")
    assert "FAILED: stage 'pretrain' (exit status 1" in out
    assert ("Not run (they need a failed stage): pretrained, pretrained_r1, test_pretrained, "
            "test_pretrained_r1, test_zero_shot, probe, report") in out
    assert "Rerun the same command (after fixing the cause): finished stages are skipped" in out
    done = {p.name for p in (tmp_path / "run" / ".done").iterdir()}
    assert done == {"data", "untrained", "baseline", "baseline_r1", "test_baseline",
                    "test_baseline_r1", "test_zero_shot_untrained", "test_classical"}
    log = (tmp_path / "run" / "logs" / "pretrain.log").read_text()
    assert "stand-in failure of pretrain" in log
    assert json.loads((tmp_path / "run" / "timings.json").read_text())["stages"]["pretrain"][
        "attempts"][-1]["status"] == "failed"

    resumed, _ = chain(tmp_path, "run", "--parallel", "2")
    ran = re.findall(r"^\[run\] (\S+):", resumed, flags=re.M)
    assert sorted(ran) == sorted(["pretrain", "pretrained", "pretrained_r1", "test_pretrained",
                                  "test_pretrained_r1", "test_zero_shot", "probe", "report"])


def test_a_stage_finished_with_other_settings_stops_before_any_stage_runs(
        tmp_path: Path) -> None:
    chain(tmp_path, "run", "--parallel", "2")
    out, commands = chain(tmp_path, "run", "--parallel", "2", status=2, FINETUNE_EPOCHS="7")
    assert "error: stage 'baseline' finished " in out
    assert "with other settings: --epochs '7' is new. Pass --force baseline" in out
    assert commands == []  # nothing ran, not even the stages that agree


def test_parallel_must_be_a_positive_integer(tmp_path: Path) -> None:
    out, _ = chain(tmp_path, "run", "--parallel", "two", status=2)
    assert "error: --parallel (PARALLEL) must be an integer >= 1, got 'two'" in out


def test_on_gpus_each_stage_gets_its_own_devices(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 0, 100\n")  # stands in for the sampler
    (bin_dir / "nvidia-smi").chmod(0o755)
    env_log = tmp_path / "env.jsonl"
    out, _ = chain(tmp_path, "run", "--parallel", "2", DEVICE="cuda", PRETRAIN_GPUS="2",
                   STUB_ENV_LOG=str(env_log), PATH=f"{bin_dir}:{os.environ['PATH']}")
    given = {}
    for args, cuda, _ in map(json.loads, env_log.read_text().splitlines()):
        for flag, prefix in (("--model_name", ""), ("--output", "test_"), ("--out", "")):
            if flag in args:
                given[prefix + Path(args[args.index(flag) + 1]).stem] = cuda
    assert given["pretrain"] == "0,1"  # torchrun --nproc_per_node 2 takes both GPUs
    assert {given[n] for n in ("baseline", "pretrained_r1", "test_baseline", "probe")} <= {
        "0", "1"}
    assert "on GPU 0,1; log " in out and (tmp_path / "run" / "logs" / "gpu_pretrain.csv").is_file()
