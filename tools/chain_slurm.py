"""SLURM jobs of a chain plan (run_qualiclip_experiments.sh --submit slurm [--dry_run]).

Writes RUN_DIR/slurm/<NN>_<stage>.sbatch for every stage the run redoes and RUN_DIR/slurm/submit.sh,
which submits them in the chain's order, each with --dependency=afterok: on the jobs of the stages
it needs (skipped stages are finished already and need no job); --kill-on-invalid-dep=yes cancels
the dependants of a failed job. A job runs its stage through tools.chain_exec (markers, timings and
logs as the chain keeps them). A stage on several GPUs (GPUS or PRETRAIN_GPUS > 1) runs under
`srun torchrun` with the rendezvous from SLURM's variables (first node of the job, a port from the
job id). Without --dry_run, submit.sh is run.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.chain_graph import RUN, Decision, PlanError, Stage, load_decided, plan_parser

REPO = Path(__file__).resolve().parents[1]
# torchrun under srun: one task per node starts the node's processes; the rendezvous host is the
# job's first node, its port derived from the job id so that jobs sharing a node do not collide.
RENDEZVOUS = (
    'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)\n'
    "MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))\n"
)


def slurm_command(stage: Stage) -> str:
    """The stage's command as the job runs it: under srun torchrun when it has several processes."""
    words = list(stage.command)
    if stage.processes == 1:
        return shlex.join(words)
    script = next(i for i, w in enumerate(words) if w.endswith(".py"))
    launcher = (f"srun {shlex.quote(words[0])} -m torch.distributed.run "
                f'--nnodes "$SLURM_JOB_NUM_NODES" --nproc_per_node {stage.processes} '
                '--rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d '
                '--rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT"')
    return f"{launcher} {shlex.join(words[script:])}"


def job_script(stage: Stage, decision: Decision, run_dir: Path, plan: Path,
               resources: argparse.Namespace) -> str:
    """The sbatch script of one stage."""
    gpus = stage.processes if stage.uses_device else 0
    header = [f"--job-name={resources.job_prefix}:{stage.name}",
              f"--output={run_dir}/logs/slurm/{stage.name}-%j.out",
              "--nodes=1", "--ntasks-per-node=1",
              f"--cpus-per-task={max(1, gpus) * resources.cpus_per_gpu}",
              f"--time={resources.time}"]
    if gpus:
        header.append(f"--gpus-per-node={gpus}")
    if resources.partition:
        header.append(f"--partition={resources.partition}")
    if resources.account:
        header.append(f"--account={resources.account}")
    header += shlex.split(resources.sbatch_args)
    forced = " --forced" if decision.forced else ""
    lines = ["#!/bin/bash", *(f"#SBATCH {h}" for h in header),
             f"# stage {stage.name} of the QualiCLIP chain; needs: "
             f"{' '.join(decision.needs) or 'nothing'}",
             "set -euo pipefail", f"cd {shlex.quote(str(REPO))}",
             f"export IQA_CACHE_DIR=${{IQA_CACHE_DIR:-{shlex.quote(str(run_dir / 'cache'))}}}",
             "export MPLBACKEND=Agg"]
    where = shlex.join([str(run_dir), str(plan), stage.name])
    body = (f"{shlex.quote(stage.command[0])} -m tools.chain_exec {where}{forced} -- \\\n"
            f"  {slurm_command(stage)}\n")
    return "\n".join(lines) + "\n" + (RENDEZVOUS if stage.processes > 1 else "") + body


def write_jobs(stages: Sequence[Stage], decisions: dict[str, Decision], run_dir: Path,
               plan: Path, resources: argparse.Namespace) -> Path:
    """Write the job scripts and submit.sh into RUN_DIR/slurm; return submit.sh's path."""
    folder = run_dir / "slurm"
    if folder.is_dir():
        for old in folder.glob("*.sbatch"):
            old.unlink()
    (run_dir / "logs" / "slurm").mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    saved_plan = folder / "plan.jsonl"
    shutil.copyfile(plan, saved_plan)
    submit = ["#!/bin/bash", "# Submits the chain's stages in order; each waits for the stages it "
              "needs (afterok).", "set -euo pipefail", f"cd {shlex.quote(str(folder))}"]
    jobs = {}
    to_run = [s for s in stages if decisions[s.name].action == RUN]
    for i, stage in enumerate(to_run):
        name = f"{i:02d}_{stage.name}.sbatch"
        (folder / name).write_text(job_script(stage, decisions[stage.name], run_dir, saved_plan,
                                              resources))
        needs = [f"${{job_{jobs[n]}}}" for n in decisions[stage.name].needs if n in jobs]
        dependency = (f" --dependency=afterok:{':'.join(needs)} --kill-on-invalid-dep=yes"
                      if needs else "")
        jobs[stage.name] = i
        submit.append(f"job_{i}=$(sbatch --parsable{dependency} {name})")
        submit.append(f'echo "{stage.name}: job $job_{i}"')
    path = folder / "submit.sh"
    path.write_text("\n".join(submit) + "\n")
    path.chmod(0o755)
    return path


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of the job writer (the chain script passes them)."""
    parser = plan_parser(__doc__.splitlines()[0])
    parser.add_argument("--partition", default="")
    parser.add_argument("--account", default="")
    parser.add_argument("--time", default="24:00:00", help="sbatch --time of every job")
    parser.add_argument("--cpus_per_gpu", type=int, default=8)
    parser.add_argument("--sbatch_args", default="", help="extra sbatch flags")
    parser.add_argument("--job_prefix", default="qualiclip")
    parser.add_argument("--dry_run", action="store_true", help="write the jobs, submit nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write (and submit) the jobs of the chain."""
    args = get_args_parser().parse_args(argv)
    try:
        stages, decisions = load_decided(args)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    submit = write_jobs(stages, decisions, args.run_dir, args.plan, args)
    count = sum(d.action == RUN for d in decisions.values())
    if args.dry_run:
        print(f"wrote {count} job scripts and {submit} (not submitted: --dry_run); submit them "
              f"with: bash {submit}")
        return 0
    if shutil.which("sbatch") is None:
        print(f"error: sbatch not found: run this on a SLURM login node, or pass --dry_run and "
              f"submit {submit} there", file=sys.stderr)
        return 2
    print(f"submitting {count} jobs ({submit})", flush=True)
    return subprocess.run(["bash", str(submit)], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
