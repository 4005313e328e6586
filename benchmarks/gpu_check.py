"""Helpers of benchmarks/gpu_check.sh: run one step and record it, the device checks, the summary.

    python benchmarks/gpu_check.py run --record FILE -- SCRIPT [ARGS...]
        runs SCRIPT in this process (also under torchrun) and writes FILE (FILE.rankN under
        torchrun): exit status, seconds, peak memory (CUDA max allocated, else peak RSS).
    python benchmarks/gpu_check.py device --device cuda --model_size base --crop_size 224
        host copies and TF32 in the degradations, host syncs in one training step of each stage;
        prints JSON, exit status 1 when a check fails.
    python benchmarks/gpu_check.py kill-resume --run_dir DIR -- python train_swin.py ARGS...
        SIGKILL a training run after its first epoch, run it again with --resume, check that
        every epoch is recorded once.
    python benchmarks/gpu_check.py summary --dir OUT
        the one-screen table of every step in OUT/steps.tsv; writes OUT/summary.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import runpy
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make the project's packages importable
    sys.path.insert(0, str(REPO_ROOT))

SUMMARY_NAME = "summary.json"
STEPS_NAME = "steps.tsv"  # one line per step: name, status (ok|FAIL|TIMEOUT|SKIP), seconds, note


def _peak_memory_mb() -> tuple[float, str]:
    """(peak MiB, what it measures) of this process: CUDA max allocated if CUDA was used."""
    import torch

    from benchmarks.timing import peak_memory_mb

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return max(peak_memory_mb(torch.device("cuda", i))
                   for i in range(torch.cuda.device_count())), "gpu"
    return peak_memory_mb(torch.device("cpu")), "rss"


def run_step(record: str, script: list[str]) -> int:
    """Run `script` (path and arguments) as __main__ in this process; record how it went."""
    start = time.perf_counter()
    sys.argv = list(script)
    code: int | str | None = 0
    try:
        runpy.run_path(script[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    status = code if isinstance(code, int) else (0 if code is None else 1)
    peak, kind = _peak_memory_mb()
    rank = os.environ.get("RANK")
    path = Path(f"{record}.rank{rank}" if rank is not None else record)
    path.write_text(json.dumps({"rc": status, "seconds": time.perf_counter() - start,
                                "peak_mb": round(peak, 1), "memory": kind}))
    return status


def device_report(device_name: str, model_size: str, crop: int, amp: str) -> dict:
    """The device checks as one JSON-able dict with "ok"."""
    import torch

    from benchmarks.device_checks import (
        sync_checks,
        tf32_changes_degradations,
        unsanctioned_degradation_copies,
    )
    from common.runtime import resolve_amp

    device = torch.device(device_name)
    amp = resolve_amp(amp, device)
    report: dict = {"device": str(device), "amp": amp, "torch": torch.__version__}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
        report["bf16_native"] = torch.cuda.is_bf16_supported(including_emulation=False)
    report["degradation_host_copies"] = unsanctioned_degradation_copies(device)
    report["degradations_changed_by_tf32"] = tf32_changes_degradations(device)
    report["sync"] = sync_checks(device, model_size, crop, amp)
    report["ok"] = (not report["degradation_host_copies"]
                    and not report["degradations_changed_by_tf32"]
                    and all(v in ("ok", "n/a (cpu)") for v in report["sync"].values()))
    return report


def kill_and_resume(run_dir: Path, command: list[str], wait_s: float) -> int:
    """Start `command` (a training run writing `run_dir`), SIGKILL it once its first epoch is in
    metrics.jsonl, run it again with --resume; 0 when the resumed run ends with every epoch
    recorded once."""
    import signal
    import subprocess

    metrics = run_dir / "metrics.jsonl"
    process = subprocess.Popen(command)
    deadline = time.monotonic() + wait_s
    while process.poll() is None and time.monotonic() < deadline:
        if metrics.is_file() and metrics.read_text().strip():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    if process.wait() != -signal.SIGKILL:
        print("kill-resume: the first run was not killed after an epoch "
              f"(exit {process.returncode})")
        return 1
    print("kill-resume: killed after epoch 1; resuming", flush=True)
    status = subprocess.run([*command, "--resume"], check=False).returncode
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines() if line]
    print(f"kill-resume: resumed run exit {status}, epochs recorded {epochs}")
    expected = list(range(1, len(epochs) + 1))
    return 0 if status == 0 and epochs == expected and len(epochs) > 1 else 1


def _records(out: Path, name: str) -> list[dict]:
    """The run records of a step (one per rank under torchrun)."""
    paths = sorted(glob.glob(str(out / "records" / f"{name}.json*")))
    return [json.loads(Path(p).read_text()) for p in paths]


def _figures(out: Path, name: str) -> dict:
    """Throughput and MFU of a step: from its benchmark JSON, or its run's metrics.jsonl."""
    bench = out / f"{name}.out"
    if bench.is_file():
        try:
            result = json.loads(bench.read_text())
            return {"images_per_s": result.get("train_images_per_s"), "mfu": result.get("mfu")}
        except json.JSONDecodeError:
            pass
    metrics = out / "metrics" / f"{name}.jsonl"
    if metrics.is_file():
        lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        timed = [r for r in lines if r.get("images") and r.get("time_s")]
        if timed:
            return {"images_per_s": timed[-1]["images"] / timed[-1]["time_s"], "mfu": None}
    return {"images_per_s": None, "mfu": None}


def summary(out: Path) -> tuple[str, dict]:
    """(table text, summary dict) of every step in OUT/steps.tsv."""
    steps = []
    for line in (out / STEPS_NAME).read_text().splitlines():
        name, status, seconds, note = (line.split("\t") + [""] * 4)[:4]
        records = _records(out, name)
        peaks = [r["peak_mb"] for r in records]
        step = {"step": name, "status": status, "seconds": float(seconds or 0), "note": note,
                "peak_mb": max(peaks) if peaks else None,
                "memory": records[0]["memory"] if records else None, **_figures(out, name)}
        steps.append(step)
    failed = [s["step"] for s in steps if s["status"] not in ("ok", "SKIP")]

    def cell(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    rows = [f"{'step':<22} {'status':<8} {'time s':>7} {'peak MiB':>9} {'img/s':>8} {'MFU':>6}  "
            "note"]
    for s in steps:
        memory = cell(s["peak_mb"], ".0f") + ("g" if s["memory"] == "gpu" else "")
        rows.append(f"{s['step']:<22} {s['status']:<8} {s['seconds']:>7.0f} {memory:>9} "
                    f"{cell(s['images_per_s'], '.1f'):>8} {cell(s['mfu'], '.3f'):>6}  "
                    f"{s['note']}")
    verdict = "PASSED" if not failed else f"FAILED: {', '.join(failed)}"
    skipped = sum(s["status"] == "SKIP" for s in steps)
    rows.append(f"gpu-check {verdict} ({len(steps)} steps, {skipped} skipped; peak MiB: g = GPU "
                f"max allocated, else process RSS; details in {out})")
    result = {"passed": not failed, "failed": failed, "steps": steps}
    (out / SUMMARY_NAME).write_text(json.dumps(result, indent=1))
    return "\n".join(rows), result


def main(argv: list[str] | None = None) -> int:
    """Entry point of the subcommands."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a script in this process and record it")
    run.add_argument("--record", required=True)
    run.add_argument("script", nargs=argparse.REMAINDER)
    device = sub.add_parser("device", help="host copies, TF32, host syncs")
    device.add_argument("--device", default="cuda")
    device.add_argument("--model_size", default="base")
    device.add_argument("--crop_size", type=int, default=224)
    device.add_argument("--amp", default="auto")
    kill = sub.add_parser("kill-resume", help="kill a training run after epoch 1, then --resume")
    kill.add_argument("--run_dir", required=True)
    kill.add_argument("--wait_s", type=float, default=300.0)
    kill.add_argument("argv", nargs=argparse.REMAINDER, help="-- the training command")
    table = sub.add_parser("summary", help="the one-screen summary of a gpu-check folder")
    table.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    if args.command == "run":
        script = args.script[1:] if args.script[:1] == ["--"] else args.script
        return run_step(args.record, script)
    if args.command == "kill-resume":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        return kill_and_resume(Path(args.run_dir), command, args.wait_s)
    if args.command == "device":
        report = device_report(args.device, args.model_size, args.crop_size, args.amp)
        print(json.dumps(report, indent=1))
        return 0 if report["ok"] else 1
    text, result = summary(Path(args.dir))
    print(text)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
