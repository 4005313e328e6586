"""Throughput benchmark of the training, pretraining, loading and evaluation paths.

Example (the figures of docs/PERFORMANCE.md):
    python benchmarks/bench.py --device cpu --model_size micro --json
    python benchmarks/bench.py --device cuda --model_size base --amp bf16 --compile --json
Every figure is measured after warm-up steps; the JSON goes to stdout, logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make the project's packages importable
    sys.path.insert(0, str(REPO_ROOT))
from common.cli import build_parser  # noqa: E402 (after the path fix)

SECTIONS = ("train", "eval", "pretrain", "loader")  # "train" times the bare backbone too
# Targets of the performance issue; each is checked where its figure was measured.
TARGETS = {
    "train_step_vs_backbone_ratio": ("<=", 1.25),
    "loader_cache_speedup": (">=", 3.0),
    "pretrain_degrade_share": ("<", 0.20),
}
# Defaults per device type: small on CPU so the micro model finishes in well under two minutes.
# One CPU thread by default: on a shared machine, torch's multi-threaded small ops wait on each
# other and a step can take 20 times longer, so single-thread figures are the steadier ones.
DEFAULTS = {
    "cpu": {"batch_size": 16, "steps": 2, "warmup": 2, "repeats": 5, "pretrain_batch_size": 4,
            "loader_images": 24, "threads": 1},
    "cuda": {"batch_size": 96, "steps": 20, "warmup": 10, "repeats": 5, "pretrain_batch_size": 8,
             "loader_images": 48, "threads": 0},
}


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of the benchmark (unset counts take the device's defaults)."""
    parser = build_parser("QualiCLIP-HyperIQA throughput benchmark")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--model_size", default="micro",
                        choices=("micro", "test", "mini", "tiny", "small", "base"))
    parser.add_argument("--batch_size", type=int, default=None,
                        help="fine-tuning images per step (CPU 16, CUDA 96)")
    parser.add_argument("--train_patches", type=int, default=1, help="crops per training image")
    parser.add_argument("--eval_patches", type=int, default=25, help="crops per evaluated image")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"))
    parser.add_argument("--compile", action="store_true", help="torch.compile the models")
    parser.add_argument("--grad_checkpointing", action="store_true",
                        help="activation checkpointing of the Swin stages (model and backbone)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per repeat (CPU 2, CUDA 20)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats of --steps steps; medians are reported (5)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps first (CPU 2, CUDA 10; compiling happens here)")
    parser.add_argument("--pretrain_batch_size", type=int, default=None,
                        help="source images per pretraining step (CPU 4, CUDA 8)")
    parser.add_argument("--num_levels", type=int, default=5, help="degradation levels L")
    parser.add_argument("--distortions", default="blur,jpeg,noise,brightness")
    parser.add_argument("--loader_images", type=int, default=None,
                        help="generated 1024x768 JPEGs for the loader benchmark (CPU 24, CUDA 48)")
    parser.add_argument("--loader_passes", type=int, default=2,
                        help="epochs over the loader images per timing")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (CPU default 1; 0 = torch's own choice, usually "
                        "all cores)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="what to measure (all by default)")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    return parser


def _fill_defaults(args: argparse.Namespace, device_type: str) -> None:
    defaults = DEFAULTS["cuda" if device_type == "cuda" else "cpu"]
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def check_targets(result: dict) -> dict:
    """{figure: {"target": "<= 1.25", "met": bool | None}} (None where not measured)."""
    checks = {}
    for key, (op, bound) in TARGETS.items():
        value = result.get(key)
        met = None
        if value is not None and math.isfinite(value):
            met = {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]
        checks[key] = {"target": f"{op} {bound}", "met": met}
    return checks


def run_benchmarks(args: argparse.Namespace) -> dict:
    """Measure the requested sections; returns the JSON-able result."""
    import torch

    from benchmarks import timing
    from benchmarks.train_bench import (
        bench_eval,
        bench_train,
        build_finetune_model,
        finetune_args,
    )
    from common.runtime import configure_backends, resolve_amp, resolve_device, seed_everything

    device = resolve_device(args.device)
    _fill_defaults(args, device.type)
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = resolve_amp(args.amp, device)
    configure_backends(device)
    seed_everything(0)
    name = timing.device_name(device)
    result: dict = {key: None for key in (
        "train_images_per_s", "backbone_images_per_s", "train_step_vs_backbone_ratio",
        "pretrain_images_per_s", "pretrain_crops_per_s", "pretrain_degrade_share",
        "loader_images_per_s_cold", "loader_images_per_s_cached", "loader_cache_speedup",
        "eval_images_per_s", "peak_memory_mb", "mfu")}
    memory: dict[str, float] = {}
    ft_args = finetune_args(args.model_size, args.batch_size, args.train_patches, amp, device,
                            args.compile)
    model = None

    def section(key: str, fn):
        timing.reset_peak_memory(device)
        out = fn()
        memory[key] = timing.peak_memory_mb(device)
        return out

    if "train" in args.sections:
        out, model = section("train", lambda: bench_train(
            ft_args, device, args.warmup, args.steps, args.repeats, args.grad_checkpointing))
        result.update(out)
    if "eval" in args.sections:
        eval_model = model or build_finetune_model(ft_args, device)
        result.update(section("eval", lambda: bench_eval(eval_model, ft_args, device, args.warmup,
                                                         args.steps, args.repeats,
                                                         args.eval_patches)))
    if "pretrain" in args.sections:
        from benchmarks.pretrain_bench import bench_pretrain, pretrain_args

        pt_args = pretrain_args(args.model_size, args.pretrain_batch_size, args.num_levels,
                                args.distortions, amp, device, args.compile)
        result.update(section("pretrain", lambda: bench_pretrain(pt_args, device, args.warmup,
                                                                 args.steps, args.repeats)))
    if "loader" in args.sections:
        from benchmarks.loader_bench import bench_loader

        result.update(section("loader", lambda: bench_loader(
            args.loader_images, args.train_patches, ft_args.crop_size, args.loader_passes)))

    result["peak_memory_mb"] = max(memory.values()) if memory else None
    result["peak_memory_mb_by_section"] = memory if device.type == "cuda" else None
    result["peak_memory_kind"] = ("cuda max allocated" if device.type == "cuda"
                                  else "process max RSS (whole run)")

    flops = None
    if model is not None:
        x = torch.rand(1, 3, ft_args.crop_size, ft_args.crop_size, device=device)
        flops = timing.forward_flops(model.eval(), x)
        model.train()
    peak = timing.peak_flops(name, amp) if device.type == "cuda" else None
    if flops and result["train_images_per_s"]:
        achieved = timing.TRAIN_FLOPS_PER_FORWARD * flops * result["train_images_per_s"]
        result["train_tflops_per_s"] = achieved / 1e12
        result["mfu"] = achieved / peak if peak else None
    result["model_gmacs_forward"] = flops / 2e9 if flops else None
    result["mfu_peak_tflops"] = peak / 1e12 if peak else None
    result["mfu_basis"] = (
        "3 x counted forward FLOPs per crop x train_images_per_s / the GPU's dense peak at "
        f"amp={amp}; null on CPU and where that peak is not known")
    result["targets"] = check_targets(result)
    result.update(device=str(device), device_name=name, torch=torch.__version__,
                  cuda=torch.version.cuda if device.type == "cuda" else None,
                  cpu_threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
                  load_average_1m=os.getloadavg()[0])
    result["settings"] = {
        "model_size": ft_args.model_size, "batch_size": args.batch_size,
        "train_patches": args.train_patches, "crop_size": ft_args.crop_size, "amp": amp,
        "compile": args.compile, "grad_checkpointing": args.grad_checkpointing,
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
        "drop_path": ft_args.drop_path, "dropout": ft_args.dropout,
        "pretrain_batch_size": args.pretrain_batch_size, "num_levels": args.num_levels,
        "eval_patches": args.eval_patches, "sections": list(args.sections),
        "channels_last": True,
    }
    return result


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its JSON (and a readable summary without --json)."""
    args = get_args_parser().parse_args(argv)
    for key in ("steps", "repeats", "batch_size", "pretrain_batch_size", "loader_images",
                "train_patches", "eval_patches", "num_levels", "loader_passes"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise SystemExit(f"--{key} must be >= 1, got {value}")
    for key in ("warmup", "threads"):
        value = getattr(args, key)
        if value is not None and value < 0:
            raise SystemExit(f"--{key} must be >= 0, got {value}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = run_benchmarks(args)
    if not args.json:
        for key, value in result.items():
            if isinstance(value, float):
                print(f"{key:32s} {value:.4g}")
            elif not isinstance(value, dict):
                print(f"{key:32s} {value}")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
