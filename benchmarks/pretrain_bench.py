"""QualiCLIP pretraining step benchmark, with the share of the step spent degrading crops."""

from __future__ import annotations

import argparse
import statistics

import torch

import pretrain_qualiclip
from benchmarks.timing import RegionTimer, run_times
from common.runtime import make_grad_scaler
from data.degradations import parse_distortions
from engine.loop import train_one_epoch
from engine.optim import build_optimizer, build_scheduler, param_groups
from engine.pretrain_setup import QualiCLIPStep, build_pretrain_model, resolve_size_defaults
from engine.train_state import NonFiniteGuard
from models.clip_anchors import QUALICLIP_PROMPT_PAIRS


def pretrain_args(model_size: str, batch_size: int, num_levels: int, distortions: str, amp: str,
                  device: torch.device, compile_model: bool) -> argparse.Namespace:
    """pretrain_qualiclip.py's flags with their defaults (simplified loss) and these settings."""
    argv = ["--model_size", model_size, "--batch_size", str(batch_size), "--num_levels",
            str(num_levels), "--distortions", distortions, "--amp", amp, "--device", str(device),
            "--imagenet_weights", "none", "--loss_type", "simplified"]
    parser = pretrain_qualiclip.get_args_parser()
    args = parser.parse_args(argv + (["--compile"] if compile_model else []))
    resolve_size_defaults(args)  # the learning rate and loss weights of the model size
    return args


def pair_batch(batch_size: int, crop: int, device: torch.device, seed: int = 0) -> dict:
    """A collated pretraining batch as the loader yields it: (B, 2, 3, crop, crop) uint8."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch_size, 2, 3, crop, crop), dtype=torch.uint8, generator=g)
    if device.type == "cuda":
        images = images.pin_memory()
    return {"image": images, "index": torch.arange(batch_size),
            "name": [f"bench_{i}.jpg" for i in range(batch_size)], "n_skipped": 0}


def bench_pretrain(args: argparse.Namespace, device: torch.device, warmup: int, steps: int,
                   repeats: int) -> dict:
    """Source images and crops per second of the QualiCLIP step, and the degradation share.

    Each timing is one train_one_epoch call over `steps` batches; the median over `repeats`
    is reported. The throughput runs use the step as the trainer does. The share runs time the
    step's `degrade` with device synchronisation on both sides, so the time measured is the
    degradations' own (on CPU, where nothing is asynchronous, the same runs give both).
    """
    distortions = parse_distortions(args.distortions)
    model = build_pretrain_model(args, QUALICLIP_PROMPT_PAIRS).to(device)
    groups = param_groups({"encoder": (model.encoder, args.lr), "head": (model.head, args.lr)},
                          args.weight_decay)
    optimizer = build_optimizer(groups, device)
    scheduler = build_scheduler(optimizer, "cosine", 1, warmup + 2 * steps * repeats)
    scaler = make_grad_scaler(device, args.amp)
    if args.compile:
        model.compile()
    guard = NonFiniteGuard(skip=False)
    step = QualiCLIPStep(args, distortions, device, seed=0)
    timer = RegionTimer(device)
    step.degrade = timer.wrap(step.degrade)
    batch = pair_batch(args.batch_size, args.crop_size, device)

    def run(n: int) -> None:
        train_one_epoch(model, [batch] * n, optimizer, scheduler, scaler, step, device=device,
                        amp=args.amp, accum_steps=1, guard=guard, stop=None, epoch=1,
                        desc="bench", is_main=False)

    timer.enabled = False
    if warmup:
        run(warmup)
    timer.enabled = device.type == "cpu"
    times = run_times(lambda: run(steps), device, repeats)
    seconds = statistics.median(times)
    share_times = times  # on CPU the same runs; on a GPU separate runs with synchronisation
    if device.type != "cpu":
        timer.enabled = True
        share_times = run_times(lambda: run(steps), device, repeats)
    crops = 2 * args.batch_size * (args.num_levels + 1)  # two crops x (clean + L levels)
    return {
        "pretrain_images_per_s": args.batch_size * steps / seconds,
        "pretrain_crops_per_s": crops * steps / seconds,
        "pretrain_step_ms": 1000 * seconds / steps,
        "pretrain_degrade_share": timer.seconds / sum(share_times),
        "pretrain_degrade_ms": 1000 * timer.seconds / max(timer.calls, 1),
        "pretrain_settings": {"batch_size": args.batch_size, "num_levels": args.num_levels,
                              "distortions": distortions, "crops_per_step": crops,
                              "loss_type": args.loss_type},
    }
