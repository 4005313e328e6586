"""Device-path checks of `make gpu-check`: host copies, TF32 and host syncs in training steps.

Each check runs on CPU too (the sync check then runs its steps without CUDA's sync debug mode),
so the CPU variant of the GPU check exercises the same code.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

import torch

from common.runtime import configure_backends
from data.degradations import DISTORTION_NAMES, degrade_levels

SANCTIONED_HOST_COPY = "host_index"  # per-batch indices: pinned and non-blocking on a GPU


@contextlib.contextmanager
def host_tensor_creations() -> Iterator[list[tuple[str, str]]]:
    """Record (file, function) of every torch.tensor / torch.as_tensor call inside the block.

    On a GPU each call with host values and a device is a blocking host->device copy.
    """
    calls: list[tuple[str, str]] = []
    originals = {name: getattr(torch, name) for name in ("tensor", "as_tensor")}

    def spy(original: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_code
            calls.append((caller.co_filename, caller.co_name))
            return original(*args, **kwargs)
        return wrapper

    for name, original in originals.items():
        setattr(torch, name, spy(original))
    try:
        yield calls
    finally:
        for name, original in originals.items():
            setattr(torch, name, original)


def unsanctioned_degradation_copies(device: torch.device) -> list[str]:
    """Host tensor creations of a second degrade_levels call (every type) other than the per-batch
    indices; empty when the degradations' constants are all built once per device."""
    names = list(DISTORTION_NAMES)
    g = torch.Generator().manual_seed(0)
    first = torch.rand(len(names), 3, 32, 32, generator=g).to(device)
    degrade_levels(first, names, 5, generator=torch.Generator(device=device).manual_seed(0))
    second = torch.rand(len(names) + 2, 3, 32, 32, generator=g).to(device)
    shuffled = names[::-1] + names[:2]
    with host_tensor_creations() as calls:
        degrade_levels(second, shuffled, 5, generator=torch.Generator(device=device).manual_seed(1),
                       pair_ids=[i // 2 for i in range(len(shuffled))])
    return sorted({f"{name} ({file})" for file, name in calls
                   if "degradations" in file and name != SANCTIONED_HOST_COPY})


def tf32_changes_degradations(device: torch.device) -> dict[str, float]:
    """Largest change of each distortion's output when TF32 is on globally vs off (all 0 when the
    degradations run at full float32 whatever the global setting)."""
    configure_backends(device)
    names = list(DISTORTION_NAMES)
    x = torch.rand(len(names), 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(device)
    outputs = []
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for tf32 in (True, False):
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            outputs.append(degrade_levels(x, names, 5,
                                          generator=torch.Generator(device=device).manual_seed(0)))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    diff = (outputs[0] - outputs[1]).abs().amax(dim=(1, 2, 3, 4))
    return {name: float(d) for name, d in zip(names, diff.tolist(), strict=True) if d > 0}


def _one_step_under_sync_check(model: torch.nn.Module, step_fn, batch: dict, amp: str,
                               device: torch.device) -> str:
    """Two warm-up steps, then one step of train_one_epoch in CUDA's sync debug mode "error"
    ("ok", the first line of the error, or "n/a (cpu)" after running the steps unchecked)."""
    from common.runtime import make_grad_scaler
    from engine.loop import train_one_epoch
    from engine.optim import build_optimizer, build_scheduler, param_groups
    from engine.train_state import NonFiniteGuard

    optimizer = build_optimizer(param_groups({"all": (model, 1e-5)}, 0.0), device)
    scheduler = build_scheduler(optimizer, "cosine", 1, 10)
    checked: list[str] = []

    def batches() -> Iterator[dict]:
        yield batch
        yield batch
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.set_sync_debug_mode("error")
        checked.append("started")
        yield batch  # the loop steps on it before asking for the next batch
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode(0)
        checked.append("done")

    try:
        train_one_epoch(model, batches(), optimizer, scheduler, make_grad_scaler(device, amp),
                        step_fn, device=device, amp=amp, accum_steps=1,
                        guard=NonFiniteGuard(), stop=None, epoch=1, desc="sync", is_main=False)
    except RuntimeError as exc:
        if checked != ["started"]:
            raise
        return f"host sync: {str(exc).splitlines()[0]}"
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode(0)
    return "ok" if device.type == "cuda" else "n/a (cpu)"


def sync_checks(device: torch.device, model_size: str, crop: int, amp: str) -> dict[str, str]:
    """One pretraining and one fine-tuning step of `model_size` in CUDA's sync debug mode."""
    from benchmarks.pretrain_bench import pair_batch, pretrain_args
    from benchmarks.train_bench import build_finetune_model, finetune_args, synthetic_batch
    from data.degradations import parse_distortions
    from engine.finetune import l1_step
    from engine.pretrain_setup import QualiCLIPStep, build_pretrain_model
    from models.clip_anchors import QUALICLIP_PROMPT_PAIRS

    configure_backends(device)
    pre_args = pretrain_args(model_size, 2, 5, "blur,jpeg,noise,brightness", amp, device, False)
    pre_args.crop_size = crop
    pre_model = build_pretrain_model(pre_args, QUALICLIP_PROMPT_PAIRS).to(
        device, memory_format=torch.channels_last)
    step = QualiCLIPStep(pre_args, parse_distortions(pre_args.distortions), device, seed=0)
    result = {"pretrain_step": _one_step_under_sync_check(pre_model, step,
                                                          pair_batch(2, crop, device), amp, device)}
    ft_args = finetune_args(model_size, 4, 1, amp, device, False)
    ft_args.crop_size = crop
    ft_model = build_finetune_model(ft_args, device)
    result["finetune_step"] = _one_step_under_sync_check(
        ft_model, l1_step(device), synthetic_batch(4, 1, crop, device), amp, device)
    return result
