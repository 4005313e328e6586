"""Independent stages of a chain plan side by side (run_qualiclip_experiments.sh --parallel N).

A stage starts once every stage it needs has finished or was skipped, in the chain's order among
those ready, on free device slots: on a GPU machine a slot is one GPU (CUDA_VISIBLE_DEVICES of the
chain, else GPUs 0..N x GPUS - 1) and a torchrun stage takes --nproc_per_node of them; on a CPU a
slot is a process with OMP_NUM_THREADS = the chain's threads / N. At most N stages run at once.
Each stage logs to RUN_DIR/logs/<stage>.log; every start and end adds one status line to
RUN_DIR/logs/status.log (`tail -f` it). A failed stage stops only the stages that need it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tools.chain_exec import begin, finish, log_path
from tools.chain_graph import SKIP, Decision, PlanError, Stage, load_decided, plan_parser
from tools.timings import record_event

WAITING, RUNNING, DONE, SKIPPED, FAILED, BLOCKED = (
    "waiting", "running", "done", "skipped", "failed", "blocked")
POLL_S = 0.2


def ready(stages: Sequence[Stage], decisions: dict[str, Decision],
          state: dict[str, str]) -> list[Stage]:
    """The waiting stages whose inputs all finished or were skipped, in the chain's order."""
    return [s for s in stages if state[s.name] == WAITING
            and all(state[n] in (DONE, SKIPPED) for n in decisions[s.name].needs)]


@dataclass
class Slots:
    """The device pool: GPU ids, or CPU slot numbers with their thread share."""

    ids: list[str]
    gpu: bool
    threads: int

    def needed(self, stage: Stage) -> int:
        """Slots a stage takes: one GPU per process; on a CPU one per process, at most all of
        them; none when it computes nothing on a device (the report)."""
        if not stage.uses_device:
            return 0
        return stage.processes if self.gpu else min(stage.processes, len(self.ids))

    def check(self, stages: Sequence[Stage]) -> None:
        """Refuse a stage that needs more GPUs than the pool has (PlanError)."""
        for stage in stages:
            if self.needed(stage) > len(self.ids):
                raise PlanError(
                    f"stage {stage.name} runs {stage.processes} processes (torchrun "
                    f"--nproc_per_node {stage.processes}) but the run has {len(self.ids)} GPU "
                    "slots (--parallel x GPUS, or the GPUs in CUDA_VISIBLE_DEVICES): give it more "
                    "GPUs or lower GPUS / PRETRAIN_GPUS")

    def env(self, taken: Sequence[str]) -> dict[str, str]:
        """Environment of a stage on the slots `taken` (threads are per process)."""
        if self.gpu:
            return {"CUDA_VISIBLE_DEVICES": ",".join(taken)} if taken else {}
        return {"OMP_NUM_THREADS": str(self.threads)}

    def describe(self, taken: Sequence[str]) -> str:
        """Where a stage runs, in words."""
        if self.gpu:
            return f"GPU {','.join(taken)}" if taken else "no GPU"
        threads = self.env(taken)["OMP_NUM_THREADS"]
        return f"CPU slot {','.join(taken) or '-'}, OMP_NUM_THREADS {threads}"


def make_slots(parallel: int, gpus: int, device: str) -> Slots:
    """The pool for --parallel N: GPUs when the chain's DEVICE is not cpu and nvidia-smi exists."""
    if device != "cpu" and shutil.which("nvidia-smi"):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        ids = [i for i in visible.split(",") if i] or [str(i) for i in range(parallel * gpus)]
        return Slots(ids, gpu=True, threads=0)
    threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    return Slots([str(i) for i in range(parallel)], gpu=False, threads=max(1, threads // parallel))


class Scheduler:
    """Runs the stages of a plan that are to run, at most `parallel` at once."""

    def __init__(self, run_dir: Path, stages: Sequence[Stage], decisions: dict[str, Decision],
                 slots: Slots, parallel: int) -> None:
        self.run_dir, self.stages, self.decisions = run_dir, list(stages), decisions
        self.slots, self.parallel = slots, parallel
        self.free = list(slots.ids)
        self.state = {s.name: SKIPPED if decisions[s.name].action == SKIP else WAITING
                      for s in stages}
        self.procs: dict[str, tuple[subprocess.Popen, list[str], float, object]] = {}
        self.exit_codes: dict[str, int] = {}
        self.status_file = run_dir / "logs" / "status.log"
        slots.check([s for s in stages if self.state[s.name] == WAITING])

    def status_line(self) -> str:
        """One line: counts per state and the running stages with their slots."""
        counts = {k: sum(v == k for v in self.state.values())
                  for k in (RUNNING, DONE, SKIPPED, WAITING, FAILED, BLOCKED)}
        running = ", ".join(f"{n} [{self.slots.describe(p[1])}]" for n, p in self.procs.items())
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
        return (f"{stamp} " + " | ".join(f"{k} {v}" for k, v in counts.items())
                + (f" | now: {running}" if running else ""))

    def report(self, line: str) -> None:
        """Print an event and append the status line to logs/status.log."""
        print(line, flush=True)
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        with self.status_file.open("a") as f:
            f.write(self.status_line() + "\n")

    def launch(self, stage: Stage) -> None:
        """Start a stage on free slots."""
        taken = [self.free.pop(0) for _ in range(self.slots.needed(stage))]
        command = begin(self.run_dir, stage, self.decisions[stage.name].forced, stage.command)
        log = log_path(self.run_dir, stage.name).open("a")
        env = {**os.environ, **self.slots.env(taken)}
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        sampler = None
        if self.slots.gpu and taken:
            with (self.run_dir / "logs" / f"gpu_{stage.name}.csv").open("a") as out:
                sampler = subprocess.Popen(
                    ["nvidia-smi", "-i", ",".join(taken), "--query-gpu=utilization.gpu,"
                     "memory.used", "--format=csv,noheader,nounits", "-l", "2"],
                    stdout=out, stderr=subprocess.DEVNULL)
        self.procs[stage.name] = (proc, taken, time.time(), (log, sampler))
        self.state[stage.name] = RUNNING
        self.report(f"[run] {stage.name}: {' '.join(command)}\n      on "
                    f"{self.slots.describe(taken)}; log {log.name}")

    def reap(self, name: str, status: int) -> None:
        """Close a finished stage; a failure blocks every stage that needs it."""
        _, taken, started, (log, sampler) = self.procs.pop(name)
        log.close()
        if sampler is not None:
            sampler.terminate()
            sampler.wait()
        self.free.extend(taken)
        stage = next(s for s in self.stages if s.name == name)
        finish(self.run_dir, stage, status)
        self.exit_codes[name] = status
        wall = time.time() - started
        if status == 0:
            self.state[name] = DONE
            self.report(f"[done] {name} ({wall:.1f} s)")
            return
        self.state[name] = FAILED
        for s in self.stages:
            if self.state[s.name] == WAITING and any(
                    self.state[n] in (FAILED, BLOCKED) for n in self.decisions[s.name].needs):
                self.state[s.name] = BLOCKED
        self.report(f"FAILED: stage '{name}' (exit status {status}, {wall:.1f} s); log: "
                    f"{log_path(self.run_dir, name)}")

    def run(self) -> int:
        """Run to the end; 0 when every stage finished, 1 when one failed."""
        for s in self.stages:
            if self.state[s.name] == SKIPPED:
                print(f"[skip] {s.name}: {self.decisions[s.name].note}; --force {s.name} "
                      "redoes it", flush=True)
                record_event(self.run_dir / "timings.json", s.name, "skipped")
        while True:
            for stage in ready(self.stages, self.decisions, self.state):
                if len(self.procs) >= self.parallel or self.slots.needed(stage) > len(self.free):
                    break  # keep the chain's order: a later stage does not overtake
                self.launch(stage)
            if not self.procs:
                break
            time.sleep(POLL_S)
            for name, (proc, *_rest) in list(self.procs.items()):
                if proc.poll() is not None:
                    self.reap(name, proc.returncode)
        return self.summary()

    def summary(self) -> int:
        """Name the failed stages, those left, and how to resume."""
        failed = [n for n, s in self.state.items() if s == FAILED]
        if not failed:
            return 0
        left = [n for n, s in self.state.items() if s in (BLOCKED, WAITING)]
        for name in failed:
            print(f"FAILED: stage '{name}' (exit status {self.exit_codes[name]}); log: "
                  f"{log_path(self.run_dir, name)}", file=sys.stderr)
        print(f"Not run (they need a failed stage): {', '.join(left) or 'none'}", file=sys.stderr)
        print("Rerun the same command (after fixing the cause): finished stages are skipped, a "
              "failed one resumes from its last checkpoint, and the stages left run then.",
              file=sys.stderr)
        return 1

    def interrupt(self) -> int:
        """Stop the running stages (SIGTERM), record them as failed; exit status 130."""
        for name, (proc, *_rest) in list(self.procs.items()):
            proc.terminate()
            proc.wait()
            self.reap(name, 130)
        left = [n for n, s in self.state.items() if s in (FAILED, BLOCKED, WAITING)]
        print(f"INTERRUPTED: stages not finished: {', '.join(left)}; rerun the same command to "
              "resume them (from last.pkl where one was written)", file=sys.stderr)
        return 130


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of the local scheduler (the chain script passes them)."""
    parser = plan_parser(__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, required=True, help="stages at once")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per slot (the chain's GPUS)")
    parser.add_argument("--device", default="auto", help="the chain's DEVICE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: decide, then run the plan's stages side by side."""
    args = get_args_parser().parse_args(argv)
    try:
        stages, decisions = load_decided(args)
        scheduler = Scheduler(args.run_dir, stages, decisions,
                              make_slots(args.parallel, args.gpus, args.device), args.parallel)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return scheduler.run()
    except KeyboardInterrupt:
        return scheduler.interrupt()


if __name__ == "__main__":
    sys.exit(main())
