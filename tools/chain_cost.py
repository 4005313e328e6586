"""The cost of a chain plan before it runs: crops per stage, GPU hours, wall time at --parallel N.

run_qualiclip_experiments.sh --plan prints it; --parallel and --submit runs save it as
RUN_DIR/cost_estimate.json for the report, which sets it beside the measured wall times. Crops
come from each stage's command: the flags it gives, else the fine-tuning preset (engine.protocols)
and the pretraining size defaults, and the images per split from the data stage's summaries
(RUN_DIR/data/<key>.json), else from the sizes of the official releases the readers know.
Fine-tuning counts every epoch (early stopping ends runs sooner: the estimate is an upper bound).
The classical baselines (test_swin.py --baselines) run on the CPU and count no GPU time.

Throughput (crops per second) is bench.py's JSON saved by `make gpu-check` (BENCH_JSON) when it was
measured at this model size; otherwise the reference figures below, scaled to the crop size by
pixel count.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from common.files import atomic_write_json
from data.registry import release_sizes
from engine.protocols import DEFAULT_PROTOCOL, PROTOCOLS, SIZE_DEFAULTS
from tools.chain_graph import RUN, SKIP, Decision, PlanError, Stage, load_decided, plan_parser
from tools.chain_parallel import DONE, SKIPPED, WAITING, Slots, ready
from tools.stage_settings import settings_of

REFERENCE_CROP = 224


@dataclass(frozen=True)
class Throughput:
    """Crops per second at `crop` px: fine-tuning step, multi-crop scoring, pretraining step."""

    train: float
    eval: float
    pretrain: float
    crop: int
    source: str

    def at(self, crop: int) -> Throughput:
        """The same rates at another crop size (cost proportional to pixels)."""
        scale = (self.crop / crop) ** 2
        return Throughput(self.train * scale, self.eval * scale, self.pretrain * scale, crop,
                          self.source + (f"; scaled from {self.crop} to {crop} px by pixel count"
                                         if crop != self.crop else ""))


# Reference figures when no benchmark JSON of the model size was saved, (device kind, size).
_EVAL_COST = 0.38  # one eval crop / one training crop, CPU runs of docs/PERFORMANCE.md (0.34-0.42)
REFERENCE = {
    ("cuda", "base"): Throughput(
        270.0, 270.0 / _EVAL_COST, 270.0, REFERENCE_CROP,
        "reference: published Swin-B training throughput with AMP on an A100 (about 270 images/s, "
        "timm results and the Swin-Transformer repository, docs/PERFORMANCE.md); scoring at "
        f"train / {_EVAL_COST} (the eval / train crop cost measured on the CPU, "
        "docs/PERFORMANCE.md); pretraining at the training rate per crop"),
    ("cpu", "micro"): Throughput(
        48.7, 129.9, 59.5, REFERENCE_CROP,
        "reference: docs/PERFORMANCE.md, CPU micro model, one thread, run 4 (idle machine)"),
}


def bench_throughput(path: Path, model_size: str) -> Throughput | None:
    """bench.py's figures in `path` when it measured `model_size` (None otherwise)."""
    if not path.is_file():
        return None
    bench = json.loads(path.read_text())
    settings = bench.get("settings", {})
    keys = ("train_images_per_s", "eval_crops_per_s", "pretrain_crops_per_s")
    if settings.get("model_size") != model_size or any(bench.get(k) is None for k in keys):
        return None
    return Throughput(bench[keys[0]], bench[keys[1]], bench[keys[2]],
                      int(settings.get("crop_size", REFERENCE_CROP)),
                      f"measured: {path} ({bench.get('device_name')}, amp "
                      f"{settings.get('amp')}, compile {settings.get('compile')})")


def throughput(bench_json: Path, model_size: str, device: str) -> Throughput | None:
    """The figures the estimate uses: the saved benchmark, else the reference, else None."""
    measured = bench_throughput(bench_json, model_size)
    if measured is not None:
        return measured
    return REFERENCE.get(("cpu" if device == "cpu" else "cuda", model_size))


@dataclass
class Work:
    """Crops a stage processes: training steps, scoring, pretraining steps."""

    train: int = 0
    eval: int = 0
    pretrain: int = 0

    def seconds(self, rate: Throughput) -> float:
        """Device seconds at the given throughput."""
        return self.train / rate.train + self.eval / rate.eval + self.pretrain / rate.pretrain


def _flags(command: Sequence[str]) -> dict[str, str]:
    """The command's flags (torchrun's own dropped) and its program."""
    words = list(command)
    if "torch.distributed.run" in words:
        words = [words[0], *words[next(i for i, w in enumerate(words) if w.endswith(".py")):]]
    return settings_of([], words)


class Sizes:
    """Images per split of each dataset: data stage summaries, else the official releases."""

    def __init__(self, summaries: Path, split: str = "official") -> None:
        self.summaries, self.split, self.assumed = summaries, split, set()

    def of(self, key: str) -> dict:
        """{"n_images", "splits"} of a dataset."""
        path = self.summaries / f"{key}.json"
        if path.is_file() and self.split == "official":
            return json.loads(path.read_text())
        self.assumed.add(key)
        return release_sizes(key, self.split)


def _preset(flags: dict[str, str], name: str, size: str, protocol: str) -> float:
    """A fine-tuning flag: given, else the model size's default, else the protocol preset's."""
    if f"--{name}" in flags:
        return float(flags[f"--{name}"])
    return float(SIZE_DEFAULTS.get(size, {}).get(name, PROTOCOLS[protocol][name]))


def stage_work(stage: Stage, sizes: Sizes, protocol: str) -> Work:
    """Crops of one stage, from its command."""
    flags = _flags(stage.command)
    program, size = flags["program"], flags.get("--model_size", "base")
    steps = int(flags["--max_steps_per_epoch"]) if "--max_steps_per_epoch" in flags else None
    if program == "train_swin.py":
        protocol = flags.get("--protocol", protocol)
        koniq = sizes.of(flags.get("--dataset", "koniq10k"))["splits"]
        n_train = math.ceil(koniq["train"] * float(flags.get("--label_fraction", 1)))
        per_epoch = n_train * _preset(flags, "train_patches", size, protocol)
        if steps is not None:
            per_epoch = min(per_epoch, steps * _preset(flags, "batch_size", size, protocol)
                            * stage.processes)
        epochs = _preset(flags, "epochs", size, protocol)
        return Work(train=int(epochs * per_epoch),
                    eval=int(epochs * koniq["val"] * _preset(flags, "val_patches", size, protocol)
                             + koniq["test"] * _preset(flags, "test_patches", size, protocol)))
    if program == "pretrain_qualiclip.py":
        from engine.pretrain_setup import SIZE_DEFAULTS as PRETRAIN_DEFAULTS

        views = int(flags.get("--views_per_image", PRETRAIN_DEFAULTS[size]["views_per_image"]))
        crops = 2 * (int(flags.get("--num_levels", 5)) + 1)  # per image: a pair x (clean + L)
        images = sizes.of(flags.get("--dataset", "koniq10k"))["splits"]["train"] * views
        if steps is not None:
            images = min(images, steps * int(flags.get("--batch_size", 8)) * stage.processes)
        return Work(pretrain=int(flags.get("--epochs", 10)) * images * crops)
    if program == "test_swin.py" and "--baselines" in flags:
        return Work()  # classical baselines: one CPU score per image, no model crops
    if program == "test_swin.py":
        patches = (float(flags["--test_patches"]) if "--test_patches" in flags
                   else _preset({}, "test_patches", size, protocol))
        images = sum(sizes.of(k)["splits"]["test"] if k == "koniq10k" else sizes.of(k)["n_images"]
                     for k in flags["--test_datasets"].split())
        return Work(eval=int(images * patches))
    if program == "-m tools.probe":
        images = sum(sizes.of(k)["n_images"] for k in flags["--datasets"].split())
        return Work(eval=len(flags["--encoders"].split()) * images * int(flags["--patches"]))
    return Work()  # data summaries, demo data, the report: no model steps


def simulate_wall(stages: Sequence[Stage], decisions: dict[str, Decision],
                  seconds: dict[str, float], parallel: int, pool: int) -> float:
    """Wall seconds of the local scheduler's order (tools.chain_parallel) on `pool` GPUs."""
    state = {s.name: SKIPPED if decisions[s.name].action == SKIP else WAITING for s in stages}
    slots = Slots([str(i) for i in range(pool)], gpu=True, threads=0)
    slots.check([s for s in stages if state[s.name] == WAITING])
    running: list[tuple[float, str, int]] = []
    now, free = 0.0, pool
    while True:
        for stage in ready(stages, decisions, state):
            wanted = slots.needed(stage)
            if len(running) >= parallel or wanted > free:
                break
            state[stage.name], free = "running", free - wanted
            heapq.heappush(running, (now + seconds[stage.name], stage.name, wanted))
        if not running:
            return now
        now, name, wanted = heapq.heappop(running)
        state[name], free = DONE, free + wanted


def estimate_plan(stages: Sequence[Stage], decisions: dict[str, Decision], summaries: Path,
                  rate: Throughput | None, parallel: int, gpus: int,
                  cluster: bool = False) -> dict:
    """The estimate of the stages to run (JSON-able): crops, GPU seconds, total, wall time at
    --parallel N with `gpus` per slot, or with a job per stage (`cluster`: SLURM)."""
    protocol = next((_flags(s.command)["--protocol"] for s in stages
                     if "--protocol" in s.command), DEFAULT_PROTOCOL)
    sizes = Sizes(summaries, next((_flags(s.command)["--split"] for s in stages
                                   if "--split" in s.command), "official"))
    rows, seconds = {}, {}
    for stage in stages:
        if decisions[stage.name].action != RUN:
            seconds[stage.name] = 0.0
            continue
        work = stage_work(stage, sizes, protocol)
        gpu_s = work.seconds(rate) if rate else None
        n = stage.processes if stage.uses_device else 0
        seconds[stage.name] = (gpu_s or 0.0) / max(1, n)
        rows[stage.name] = {"devices": n, "crops": asdict(work), "gpu_s": gpu_s,
                            "command": list(stage.command)}
    schedule = f"--parallel {parallel} ({gpus} GPU per slot)"
    if cluster:  # every job starts once its inputs are done
        schedule = "a SLURM job per stage"
        parallel, gpus = len(stages), max(1, sum(r["devices"] for r in rows.values()))
    wall = simulate_wall(stages, decisions, seconds, parallel, parallel * gpus) if rate else None
    return {"stages": rows, "throughput": asdict(rate) if rate else None,
            "gpu_s": sum(r["gpu_s"] or 0.0 for r in rows.values()) if rate else None,
            "wall_s": wall, "schedule": schedule,
            "assumed_release_sizes": sorted(sizes.assumed)}


def _hours(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 3600:.2f}"


def format_plan(estimate: dict, skipped: dict[str, str], model_size: str, device: str) -> str:
    """The --plan printout: stages with commands and crops, throughput source, totals."""
    rate = estimate["throughput"]
    lines = [f"[skip] {name}: {note}" for name, note in skipped.items()]
    lines.append(f"Plan: {len(estimate['stages'])} stages to run, {len(skipped)} skipped.")
    if estimate["assumed_release_sizes"]:
        lines.append("Images per split: official release sizes (no data stage summary) for "
                     + ", ".join(estimate["assumed_release_sizes"]) + ".")
    if rate:
        lines.append(f"Throughput at {rate['crop']} px: training {rate['train']:.1f}, scoring "
                     f"{rate['eval']:.1f}, pretraining {rate['pretrain']:.1f} crops/s per device "
                     f"({rate['source']}).")
    else:
        lines.append(f"Throughput: no figure for model size {model_size} on {device}: run `make "
                     f"gpu-check` (GC_SIZE={model_size}) and point BENCH_JSON at its "
                     "bench_bf16.out; crops are given, times are not.")
    lines += ["", f"{'stage':<32} {'devices':>7} {'train crops':>13} {'eval crops':>12} "
              f"{'pretrain crops':>14} {'GPU h':>7}"]
    for name, row in estimate["stages"].items():
        c = row["crops"]
        lines.append(f"{name:<32} {row['devices']:>7} {c['train']:>13,} {c['eval']:>12,} "
                     f"{c['pretrain']:>14,} {_hours(row['gpu_s']):>7}")
        shell = "   (a function of the chain script)" if len(row["command"]) == 1 else ""
        lines.append("    $ " + " ".join(row["command"]) + shell)
    lines += ["", f"Total: {_hours(estimate['gpu_s'])} GPU hours (fine-tuning counted to its last "
              f"epoch: early stopping makes it less); wall time at {estimate['schedule']}: "
              f"{_hours(estimate['wall_s'])} h."]
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of the cost estimate (the chain script passes them)."""
    parser = plan_parser(__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--cluster", action="store_true",
                        help="wall time with a job per stage (--submit slurm)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per slot (the chain's GPUS)")
    parser.add_argument("--device", default="auto", help="the chain's DEVICE")
    parser.add_argument("--bench_json", type=Path, default=Path("gpu_check_out/bench_bf16.out"))
    parser.add_argument("--model_size", default="base")
    parser.add_argument("--crop_size", type=int, default=REFERENCE_CROP)
    parser.add_argument("--save", type=Path, default=None,
                        help="write the estimate to this JSON file instead of printing the plan")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the plan of the chain (--plan)."""
    args = get_args_parser().parse_args(argv)
    rate = throughput(args.bench_json, args.model_size, args.device)
    try:
        stages, decisions = load_decided(args)
        estimate = estimate_plan(stages, decisions, args.run_dir / "data",
                                 rate.at(args.crop_size) if rate else None, args.parallel,
                                 args.gpus, args.cluster)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.save is not None:
        atomic_write_json(estimate, args.save)
        gpu_h, wall_h = _hours(estimate["gpu_s"]), _hours(estimate["wall_s"])
        print(f"cost estimate: {gpu_h} GPU hours, wall {wall_h} h at {estimate['schedule']} "
              f"({args.save})")
        return 0
    skipped = {s.name: decisions[s.name].note for s in stages
               if decisions[s.name].action == SKIP}
    print(format_plan(estimate, skipped, args.model_size, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
