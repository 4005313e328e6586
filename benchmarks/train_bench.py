"""Fine-tuning step, bare backbone and multi-crop evaluation benchmarks (the trainer's path)."""

from __future__ import annotations

import argparse
import logging
import statistics
from collections.abc import Callable

import timm
import torch

import train_swin
from benchmarks.timing import run_times, time_steps
from common.runtime import autocast, make_grad_scaler
from engine.evaluate import eval_batch_size, model_scores
from engine.finetune import finetune_param_groups, l1_step, maybe_compile
from engine.loop import to_device_images, train_one_epoch
from engine.optim import build_optimizer, build_scheduler
from engine.protocols import apply_protocol, learning_rates
from engine.train_state import NonFiniteGuard
from models.swin_encoder import MODEL_SIZES, canonical_model_size
from models.swin_hyperiqa import SwinHyperIQA, build_swin_hyperiqa

LOGGER = logging.getLogger("bench")


def finetune_args(model_size: str, batch_size: int, patches: int, amp: str, device: torch.device,
                  compile_model: bool) -> argparse.Namespace:
    """train_swin.py's flags with their defaults (drop path, dropout, rates) and these settings."""
    argv = ["--model_size", model_size, "--batch_size", str(batch_size), "--train_patches",
            str(patches), "--amp", amp, "--device", str(device), "--imagenet_weights", "none"]
    args = train_swin.get_args_parser().parse_args(argv + (["--compile"] if compile_model else []))
    apply_protocol(args)
    return args


def build_finetune_model(args: argparse.Namespace, device: torch.device,
                         grad_checkpointing: bool = False) -> SwinHyperIQA:
    """Swin-HyperIQA as engine.finetune builds it (random weights), on the device.

    `grad_checkpointing` recomputes each Swin stage's blocks in the backward pass (timm's
    set_grad_checkpointing): less activation memory for about one more forward of compute.
    """
    model = build_swin_hyperiqa(args.model_size, use_multiscale=args.use_multiscale,
                                use_attention=args.use_attention, dropout=args.dropout,
                                drop_path=args.drop_path, imagenet_weights="none",
                                crop_size=args.crop_size, attention_scope=args.attention_scope)
    model.encoder.set_grad_checkpointing(grad_checkpointing)
    return model.to(device, memory_format=torch.channels_last)


def synthetic_batch(batch_size: int, patches: int, crop: int, device: torch.device,
                    seed: int = 0) -> dict:
    """A collated fine-tuning batch as the loader yields it (uint8 crops, pinned for CUDA)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch_size, patches, 3, crop, crop), dtype=torch.uint8,
                           generator=g)
    mos = torch.rand(batch_size, generator=g) * 100
    if device.type == "cuda":
        images, mos = images.pin_memory(), mos.pin_memory()
    return {"image": images, "mos": mos, "index": torch.arange(batch_size),
            "name": [f"bench_{i}.jpg" for i in range(batch_size)], "n_skipped": 0}


def train_runner(args: argparse.Namespace, device: torch.device, grad_checkpointing: bool = False
                 ) -> tuple[Callable[[int], None], SwinHyperIQA]:
    """`run(n)`: one engine.loop.train_one_epoch call over n batches, set up as the trainer does.

    Returns it with the (uncompiled) model, which evaluation uses as engine.finetune does.
    """
    amp = args.amp
    model = build_finetune_model(args, device, grad_checkpointing)
    encoder_lr, hyper_lr = learning_rates(args)
    groups = finetune_param_groups(model, encoder_lr, hyper_lr, args.weight_decay, args.lda_group,
                                   args.decay_all)
    optimizer = build_optimizer(groups, device, kind=args.optimizer)
    scheduler = build_scheduler(optimizer, args.scheduler, 1, 10**6, 0.0)
    scaler = make_grad_scaler(device, amp)
    train_model = maybe_compile(model, args, device, amp, LOGGER)
    guard = NonFiniteGuard(skip=False)
    step = l1_step(device)
    batch = synthetic_batch(args.batch_size, args.train_patches, args.crop_size, device)

    def run(n: int) -> None:
        train_one_epoch(train_model, [batch] * n, optimizer, scheduler, scaler, step,
                        device=device, amp=amp, accum_steps=1, guard=guard, stop=None, epoch=1,
                        desc="bench", is_main=False)

    return run, model


def build_bare_backbone(args: argparse.Namespace, device: torch.device,
                        grad_checkpointing: bool = False) -> torch.nn.Module:
    """timm's Swin of the same size and drop path, straight from timm (no wrapper, no head)."""
    spec = MODEL_SIZES[canonical_model_size(args.model_size)]
    backbone = timm.create_model(spec["arch"], pretrained=False, num_classes=0,
                                 drop_path_rate=args.drop_path, img_size=args.crop_size,
                                 **spec["overrides"])
    backbone.set_grad_checkpointing(grad_checkpointing)
    return backbone.to(device, memory_format=torch.channels_last)


def backbone_runner(args: argparse.Namespace, device: torch.device, grad_checkpointing: bool = False
                    ) -> Callable[[int], None]:
    """`run(n)`: n forward + backward passes of the bare backbone on a batch already on device."""
    backbone = build_bare_backbone(args, device, grad_checkpointing).train()
    features = backbone.forward_features  # (B, H/32, W/32, C): the stages, no pooling or head
    if args.compile:
        features = torch.compile(features)
    crops = args.batch_size * args.train_patches
    x = torch.rand(crops, 3, args.crop_size, args.crop_size, device=device)
    x = x.contiguous(memory_format=torch.channels_last)

    def run(n: int) -> None:
        for _ in range(n):
            with autocast(device, args.amp):
                out = features(x)
            out.float().mean().backward()
            backbone.zero_grad(set_to_none=True)

    return run


def bench_train(args: argparse.Namespace, device: torch.device, warmup: int, steps: int,
                repeats: int, grad_checkpointing: bool = False) -> tuple[dict, SwinHyperIQA]:
    """Crops per second of the fine-tuning step and of the bare backbone, and their ratio.

    The two are timed in alternation (`repeats` rounds of `steps` steps each), so a change in
    machine load hits both alike; the ratio is the median of the per-round ratios.
    """
    train, model = train_runner(args, device, grad_checkpointing)
    backbone = backbone_runner(args, device, grad_checkpointing)
    for run in (train, backbone):
        if warmup:
            run(warmup)
    train_s, backbone_s = [], []
    for _ in range(repeats):
        train_s += run_times(lambda: train(steps), device, 1)
        backbone_s += run_times(lambda: backbone(steps), device, 1)
    crops = args.batch_size * args.train_patches
    train_step = statistics.median(train_s) / steps
    backbone_step = statistics.median(backbone_s) / steps
    ratio = statistics.median(t / b for t, b in zip(train_s, backbone_s, strict=True))
    return {"train_images_per_s": crops / train_step, "train_step_ms": 1000 * train_step,
            "backbone_images_per_s": crops / backbone_step,
            "backbone_step_ms": 1000 * backbone_step,
            "train_step_vs_backbone_ratio": ratio}, model


def bench_eval(model: SwinHyperIQA, args: argparse.Namespace, device: torch.device, warmup: int,
               steps: int, repeats: int, patches: int) -> dict:
    """Images per second of multi-crop scoring as engine.evaluate.predict_rows does it."""
    images_per_batch = eval_batch_size(None, args.batch_size * args.train_patches, patches)
    batch = synthetic_batch(images_per_batch, patches, args.crop_size, device, seed=1)["image"]
    model.eval()

    def step() -> torch.Tensor:
        with torch.inference_mode(), autocast(device, args.amp):
            x = to_device_images(batch.flatten(0, 1), device)
            score = model_scores(model, x).float().view(batch.shape[0], batch.shape[1])
            return score.mean(dim=1)

    seconds = time_steps(step, device, warmup, steps, repeats)
    model.train()
    return {"eval_images_per_s": images_per_batch / seconds,
            "eval_crops_per_s": images_per_batch * patches / seconds,
            "eval_settings": {"patches": patches, "images_per_batch": images_per_batch}}
