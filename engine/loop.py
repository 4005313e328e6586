"""One training epoch shared by pretraining and fine-tuning: AMP, accumulation, no per-step sync."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from common.distributed import DistInfo
from common.errors import InvalidValueError
from common.runlog import progress
from common.runtime import autocast
from data.iqa_dataset import FixedSizeCollate, collate_crops
from engine.train_state import GracefulStop, NonFiniteGuard

STOP_CHECK_EVERY = 20  # optimizer steps between the ranks' stop agreements under DDP


@dataclass
class StepOutput:
    """What a step function returns for one batch."""

    loss: torch.Tensor  # scalar, graph attached
    logs: dict[str, torch.Tensor]  # detached scalar terms averaged over the epoch
    predictions: torch.Tensor | None = None  # (N,) detached, per image (for the train SRCC)
    targets: torch.Tensor | None = None  # (N,)


StepFn = Callable[[torch.nn.Module, dict], StepOutput]


def training_loader(dataset: Dataset, sampler: Sampler, batch_size: int, num_workers: int,
                    device: torch.device, drop_last: bool) -> DataLoader:
    """Loader of a training stage: batches of fixed size (FixedSizeCollate, where the dataset has
    a placeholder item), pinned memory on CUDA, persistent workers, 4 batches prefetched per
    worker."""
    collate = (FixedSizeCollate(dataset.placeholder()) if hasattr(dataset, "placeholder")
               else collate_crops)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate, pin_memory=device.type == "cuda",
                      drop_last=drop_last, persistent_workers=num_workers > 0,
                      prefetch_factor=4 if num_workers else None)


def to_device_images(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images (..., 3, H, W) -> float in [0, 1] on `device`; 4-D batches in channels_last."""
    x = images.to(device, non_blocking=True).float().div_(255)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _set_epoch(loader: Iterable, epoch: int) -> None:
    """Let the sampler and the dataset reseed their shuffling and crops for this epoch."""
    for part in (getattr(loader, "sampler", None), getattr(loader, "dataset", None)):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)


def _no_sync(model: torch.nn.Module, accumulating: bool):
    """DDP gradient all-reduce only on the micro-batch that ends an accumulation group."""
    if accumulating and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def _optimizer_step(optimizer, scheduler, scaler, guard) -> None:
    """Unscale, let the guard flag (or zero) non-finite gradients, step optimizer and scheduler.

    With fp16 the scaler skips steps whose gradients overflowed (and lowers its scale); the
    scheduler skips them too. Reading the scale costs one host sync per step, fp16 only.
    """
    scaler.unscale_(optimizer)
    if guard is not None:
        guard.sanitize_gradients(optimizer, scaler)
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    skipped = scale is not None and scaler.get_scale() < scale
    if scheduler is not None and not skipped:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _should_stop(stop, info: DistInfo | None, steps: int, pending: int) -> bool:
    """Whether to stop before the next batch; under DDP all ranks agree every few steps."""
    if stop is None:
        return False
    if info is None or not info.distributed:
        return stop.requested
    # a collective (one host sync), only at a group boundary so every rank stops at the same step
    return pending == 0 and steps % STOP_CHECK_EVERY == 0 and stop.any_rank_requested(info)


def train_one_epoch(
    model: torch.nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    step_fn: StepFn,
    *,
    device: torch.device,
    amp: str,
    accum_steps: int,
    guard: NonFiniteGuard | None,
    stop: GracefulStop | None,
    epoch: int,
    desc: str,
    is_main: bool,
    max_steps: int | None = None,
    info: DistInfo | None = None,
) -> dict:
    """Train `model` for one epoch of `loader` with `step_fn(model, batch) -> StepOutput`.

    Sets the epoch on the loader's sampler and dataset. Batches with no readable image (None, or
    marked "empty" by FixedSizeCollate) are skipped; under DDP an "empty" batch is stepped with
    its loss times zero instead, so every rank runs the same gradient all-reduces. The loss is
    divided by `accum_steps`; the optimizer steps every
    `accum_steps` batches and on the last one, the scheduler once per optimizer step. Loss terms
    and predictions stay on the device until the epoch ends, so no step waits for the host.
    `stop.requested` is checked between steps (under DDP, pass `info`: ranks agree every
    STOP_CHECK_EVERY steps). Returns {"loss", <log names>, "predictions", "targets", "steps",
    "skipped_batches", "skipped_images", "stopped", "images", "time_s"}.
    """
    if accum_steps < 1:
        raise InvalidValueError(f"accum_steps must be >= 1, got {accum_steps}")
    start = time.perf_counter()
    model.train()
    _set_epoch(loader, epoch)
    optimizer.zero_grad(set_to_none=True)
    total = len(loader) if hasattr(loader, "__len__") else None
    if max_steps is not None and total is not None:
        total = min(total, max_steps * accum_steps)
    loss_sum = torch.zeros((), device=device)
    log_sums: dict[str, torch.Tensor] = {}
    predictions: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    batches = steps = skipped = skipped_images = images = pending = 0
    stopped = False
    distributed = info is not None and info.distributed
    batch_iter = progress(loader, desc=desc, total=total, enabled=is_main)
    for seen, batch in enumerate(batch_iter, start=1):
        if _should_stop(stop, info, steps, pending):
            stopped = True
            break
        empty = batch is None or bool(batch.get("empty"))
        if empty:
            skipped += 1
        if batch is not None:
            skipped_images += int(batch.get("n_skipped", 0))
        if not empty or (batch is not None and distributed):
            pending += 1
            ends_group = pending == accum_steps or seen == total
            with _no_sync(model, not ends_group), autocast(device, amp):
                out = step_fn(model, batch)
            loss = out.loss.float()
            if empty:  # the graph stays, so DDP's all-reduce pairs with the other ranks'
                loss = loss * 0.0
            if guard is not None:
                loss = guard.update(loss, batch.get("name"))
            scaler.scale(loss / accum_steps).backward()
        if not empty:
            batches += 1
            images += int(batch["image"].shape[0])
            loss_sum += loss.detach()
            for key, value in out.logs.items():
                log_sums[key] = log_sums.get(key, torch.zeros((), device=device)) + value.float()
            if out.predictions is not None:
                predictions.append(out.predictions.float())
                targets.append(out.targets.float())
        if pending and (pending == accum_steps or seen == total):
            _optimizer_step(optimizer, scheduler, scaler, guard)
            pending = 0
            steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    if pending:  # the loader ended inside an accumulation group (its length was unknown)
        _optimizer_step(optimizer, scheduler, scaler, guard)
        steps += 1
    if guard is not None:
        skipped += guard.finish()
    result = {"loss": (loss_sum / batches).item() if batches else math.nan}
    result.update({key: (value / batches).item() for key, value in log_sums.items()})
    result["predictions"] = torch.cat(predictions).cpu().numpy() if predictions else None
    result["targets"] = torch.cat(targets).cpu().numpy() if targets else None
    result.update(steps=steps, skipped_batches=skipped, skipped_images=skipped_images,
                  stopped=stopped, images=images, time_s=time.perf_counter() - start)
    return result
