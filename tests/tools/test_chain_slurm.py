"""run_qualiclip_experiments.sh --submit slurm --dry_run: one sbatch job per stage, chained by the
stage graph, for a 5-repeat run on an 8-GPU node (pretraining on all 8 under srun torchrun, every
fine-tuning run on one GPU; at 5 repeats the matched-rate arm runs too), with a stand-in interpreter
(tests/tools/chain_stub.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.tools.chain_stub import logged_commands, write_stub

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "run_qualiclip_experiments.sh"
KNOBS = {"GPUS": "1", "PRETRAIN_GPUS": "8", "REPEATS": "5", "DEVICE": "cuda",
         "SLURM_PARTITION": "gpu", "SLURM_ACCOUNT": "iqa-lab", "SLURM_TIME": "12:00:00",
         "SLURM_ARGS": "--qos=high --mem=64G"}


def chain(tmp_path: Path, run: str, *args: str, status: int = 0,
          path: str | None = None) -> subprocess.CompletedProcess:
    """Run the chain with KNOBS and the stand-in interpreter."""
    (tmp_path / "data").mkdir(exist_ok=True)
    env = {**os.environ, **KNOBS, "PYTHON": str(write_stub(tmp_path)),
           "STUB_LOG": str(tmp_path / f"{run}.jsonl"), "RUN_DIR": str(tmp_path / run),
           "DATA_ROOT": str(tmp_path / "data"), "PATH": path or os.environ["PATH"]}
    proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == status, (proc.stdout + proc.stderr)[-4000:]
    return proc


def dependencies(submit: Path) -> dict[str, set[str]]:
    """{stage: the stages its job waits for}, read from submit.sh."""
    names, graph = {}, {}
    for line in submit.read_text().splitlines():
        match = re.fullmatch(r"job_(\d+)=\$\(sbatch --parsable(.*) \d\d_(\S+)\.sbatch\)", line)
        if match:
            names[match[1]] = match[3]
            waits = re.search(r"--dependency=afterok:(\S+) --kill-on-invalid-dep=yes", match[2])
            graph[match[3]] = ({names[j] for j in re.findall(r"\$\{job_(\d+)\}", waits[1])}
                               if waits else set())
    return graph


def job_command(script: Path) -> list[str]:
    """The stage command a job runs (after tools.chain_exec's `--`), as words."""
    return shlex.split(script.read_text().split(" -- \\\n", 1)[1])


def run_of(command: list[str]) -> str:
    """What a command makes: its run folder name or its output file."""
    for flag in ("--model_name", "--output"):
        if flag in command:
            return command[command.index(flag) + 1]
    return " ".join(command)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A sequential run (its commands) and the SLURM jobs of the same chain, written only."""
    tmp = tmp_path_factory.mktemp("slurm")
    chain(tmp, "seq")
    proc = chain(tmp, "run", "--submit", "slurm", "--dry_run")
    submit = tmp / "run" / "slurm" / "submit.sh"
    assert f"wrote 37 job scripts and {submit} (not submitted: --dry_run)" in proc.stdout
    return tmp, submit


def test_jobs_wait_for_the_stages_they_need(jobs: tuple[Path, Path]) -> None:
    _, submit = jobs
    graph = dependencies(submit)
    suffixes = ["", *(f"_r{i}" for i in range(1, 5))]
    expected = {"pretrain": set(), "untrained": set(), "test_zero_shot": {"pretrain"},
                "test_zero_shot_untrained": {"untrained"}, "probe": {"pretrain"},
                "test_classical": set()}
    for s in suffixes:
        expected |= {f"baseline{s}": set(), f"pretrained{s}": {"pretrain"},
                     f"pretrained_matched{s}": {"pretrain"},
                     f"test_baseline{s}": {f"baseline{s}"},
                     f"test_pretrained{s}": {f"pretrained{s}"},
                     f"test_pretrained_matched{s}": {f"pretrained_matched{s}"}}
    expected["report"] = set(expected)
    assert graph == expected  # the data stage ran before submitting
    estimate = json.loads((submit.parents[1] / "cost_estimate.json").read_text())
    assert estimate["schedule"] == "a SLURM job per stage" and set(estimate["stages"]) == set(graph)


def test_resources_and_commands_equal_the_chains(jobs: tuple[Path, Path]) -> None:
    tmp, submit = jobs
    sequential = {run_of(c): c for c in logged_commands(tmp / "seq.jsonl")}
    scripts = sorted(submit.parent.glob("*.sbatch"))
    assert len(scripts) == 37
    for script in scripts:
        text, stage = script.read_text(), script.stem[3:]
        assert "#SBATCH --partition=gpu\n#SBATCH --account=iqa-lab\n" in text
        assert "#SBATCH --time=12:00:00\n" in text and "#SBATCH --qos=high\n#SBATCH --mem=64G\n" \
            in text
        command = [w.replace(str(tmp / "run"), str(tmp / "seq")) for w in job_command(script)]
        if stage == "report":
            assert "--gpus-per-node" not in text and command[1:3] == ["-m", "tools.report"]
            continue
        if "train_swin.py" in command:
            name = command[command.index("--model_name") + 1]
            assert "#SBATCH --gpus-per-node=1\n#SBATCH" in text and "srun" not in text
            assert command[1:] == sequential[name]
        elif "pretrain_qualiclip.py" in command and stage == "pretrain":
            assert "#SBATCH --gpus-per-node=8\n" in text and "--cpus-per-task=64" in text
            assert 'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' \
                in text
            assert text.split(" -- \\\n  ")[1].startswith(
                f"srun {tmp / 'python'} -m torch.distributed.run "
                '--nnodes "$SLURM_JOB_NUM_NODES" --nproc_per_node 8 --rdzv_id "$SLURM_JOB_ID" '
                "--rdzv_backend c10d "
                '--rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" pretrain_qualiclip.py ')
            script_at = command.index("pretrain_qualiclip.py")
            seq = sequential["pretrain"]
            assert seq[:5] == ["-m", "torch.distributed.run", "--standalone",
                               "--nproc_per_node", "8"]
            assert command[script_at:] == seq[seq.index("pretrain_qualiclip.py"):]
        elif stage == "untrained":  # no training: one process saves the encoder
            assert "#SBATCH --gpus-per-node=1\n" in text and "srun" not in text
            assert command[1:] == sequential["untrained"]
        elif "test_swin.py" in command:
            assert "#SBATCH --gpus-per-node=1\n" in text
            assert command[1:] == sequential[run_of(command)]


def test_a_job_script_runs_its_stage_with_the_chains_bookkeeping(
        jobs: tuple[Path, Path]) -> None:
    tmp, submit = jobs
    script = next(submit.parent.glob("??_baseline.sbatch"))
    env = {**os.environ, "STUB_LOG": str(tmp / "job.jsonl")}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp / "run"
    assert f"[run] baseline: {tmp / 'python'} train_swin.py" in proc.stdout
    assert (run / ".done" / "baseline").is_file()
    assert (run / "checkpoints" / "baseline" / "best_model.pkl").is_file()
    attempts = json.loads((run / "timings.json").read_text())["stages"]["baseline"]["attempts"]
    assert [a["status"] for a in attempts] == ["done"]


def test_submitting_needs_sbatch_and_the_options_are_checked(tmp_path: Path) -> None:
    no_sbatch = f"{Path(os.environ['PATH'].split(':')[0])}:/usr/bin:/bin"
    proc = chain(tmp_path, "run", "--submit", "slurm", status=2, path=no_sbatch)
    assert "error: sbatch not found: run this on a SLURM login node, or pass --dry_run" \
        in proc.stderr
    proc = chain(tmp_path, "run", "--submit", "pbs", status=2)
    assert "error: --submit takes slurm (the scheduler it writes jobs for), got 'pbs'" \
        in proc.stderr
    proc = chain(tmp_path, "run", "--dry_run", status=2)
    assert "error: --dry_run goes with --submit slurm" in proc.stderr
