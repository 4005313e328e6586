"""AdamW/Adam with differential learning rates and per-step LR schedules (cosine, step, none,
HyperIQA's epoch schedule)."""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from common.errors import InvalidValueError
from common.vocabulary import OPTIMIZER_CHOICES, SCHEDULER_CHOICES

# HyperIQA's solver: after epoch t (0-based) the hyper rate becomes lr / 10**(t // 6) x ratio, the
# ratio 1 once t > 8; the backbone keeps lr; the optimizer is rebuilt (moments reset) each epoch.
HYPERIQA_DROP_EVERY = 6
HYPERIQA_RATIO_UNTIL = 8
# Swin position tables are learned offsets, not weights: decaying them hurts (as in timm).
NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed", "pos_embed")


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    """True for parameters exempt from weight decay: norms, biases, 1-D params, position tables."""
    return param.ndim <= 1 or name.endswith(".bias") or any(k in name for k in NO_DECAY_NAMES)


def param_groups(
    named_modules: dict[str, tuple[nn.Module, float]], weight_decay: float,
    decay_all: bool = False,
) -> list[dict]:
    """One AdamW group per (name, lr) plus a "<name>_no_decay" twin; frozen params are left out.

    decay_all: no twin, every parameter decays (as both reference codes do).

    Example: param_groups({"encoder": (model.encoder, 1e-6), "hyper": (model.head, 5e-5)}, 2e-4).
    A parameter reachable from two entries is an error (it would be trained twice).
    """
    owner: dict[int, str] = {}
    groups = []
    for group_name, (module, lr) in named_modules.items():
        decay, no_decay = [], []
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if id(param) in owner:
                raise InvalidValueError(
                    f"parameter {name!r} of {group_name!r} is also in {owner[id(param)]!r}; "
                    "pass modules that do not overlap"
                )
            owner[id(param)] = group_name
            exempt = not decay_all and is_no_decay(name, param)
            (no_decay if exempt else decay).append(param)
        for suffix, params, wd in (("", decay, weight_decay), ("_no_decay", no_decay, 0.0)):
            if params:
                groups.append(
                    {"name": group_name + suffix, "params": params, "lr": lr, "weight_decay": wd}
                )
    if not groups:
        raise InvalidValueError(
            "no trainable parameters in the given modules (all frozen or empty)")
    return groups


def build_optimizer(
    groups: list[dict],
    device: torch.device | str,
    betas: tuple[float, float] = (0.9, 0.999),
    kind: str = "adamw",
) -> torch.optim.Optimizer:
    """AdamW (decoupled decay) or Adam (decay added to the gradient, as HyperIQA) over the
    groups, with the fused kernel (one pass over all parameters), CUDA and CPU."""
    if kind not in OPTIMIZER_CHOICES:
        raise InvalidValueError(f"--optimizer must be one of {OPTIMIZER_CHOICES}, got {kind!r}")
    fused = torch.device(device).type in ("cuda", "cpu")
    optim_class = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return optim_class(groups, betas=betas, fused=fused or None)


def hyperiqa_factor(epoch: int, ratio: float) -> float:
    """Hyper-network rate factor in 0-based `epoch` of HyperIQA's schedule (`ratio` = hyper rate
    over backbone rate): 1 for epochs 0-6, 1/10 for 7-9, then 1/(100 ratio), 1/(1000 ratio)..."""
    if epoch == 0:
        return 1.0
    t = epoch - 1  # the epoch after which the solver set this rate
    return 10.0 ** -(t // HYPERIQA_DROP_EVERY) / (ratio if t > HYPERIQA_RATIO_UNTIL else 1.0)


def reset_moments(optimizer: torch.optim.Optimizer) -> None:
    """Forget the optimizer's moments and step counts, as rebuilding it would (HyperIQA)."""
    optimizer.state.clear()


def optimizer_steps_per_epoch(batches: int, accum_steps: int, max_steps: int | None) -> int:
    """Optimizer steps in an epoch of `batches` batches: one per accumulation group (the last
    group may be short), capped by `max_steps` (None or 0: no cap)."""
    steps = math.ceil(batches / accum_steps)
    return min(steps, max_steps) if max_steps else steps


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    step_size: int = 10,
    gamma: float = 0.1,
    hyper_ratio: float = 10.0,
) -> LambdaLR:
    """Per-optimizer-step LambdaLR (resume is exact): linear warmup, then cosine/step/constant.

    cosine: from the base lr down to near 0 at the last step; step: lr x gamma every `step_size`
    epochs; none: constant; hyperiqa: groups named "hyper..." follow hyperiqa_factor (with
    `hyper_ratio`), the others stay constant. `warmup_epochs` may be fractional and applies to
    every kind.
    Call scheduler.step() after each optimizer.step() (once per accumulation group).
    """
    if kind not in SCHEDULER_CHOICES:
        raise InvalidValueError(f"--scheduler must be one of {SCHEDULER_CHOICES}, got {kind!r}")
    if epochs < 1 or steps_per_epoch < 1:
        raise InvalidValueError(
            f"need epochs >= 1 and steps_per_epoch >= 1, got {epochs} and {steps_per_epoch} "
            "(is the training set smaller than one batch?)"
        )
    if not 0.0 <= warmup_epochs <= epochs:
        raise InvalidValueError(f"warmup_epochs must lie in [0, {epochs}], got {warmup_epochs}")
    if step_size < 1:
        raise InvalidValueError(f"step_size must be >= 1 epoch, got {step_size}")
    total = epochs * steps_per_epoch
    warmup = round(warmup_epochs * steps_per_epoch)

    def factor(step: int, hyper: bool = False) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "hyperiqa":
            return hyperiqa_factor(step // steps_per_epoch, hyper_ratio) if hyper else 1.0
        if kind == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if kind == "step":
            return gamma ** ((step // steps_per_epoch) // step_size)
        return 1.0

    if kind != "hyperiqa":
        return LambdaLR(optimizer, factor)
    hyper = [str(group.get("name", "")).startswith("hyper") for group in optimizer.param_groups]
    return LambdaLR(optimizer, [partial(factor, hyper=h) for h in hyper])
