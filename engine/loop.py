"""One training epoch shared by pretraining and fine-tuning: AMP, accumulation, no per-step sync."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from common.distributed import DistInfo, all_reduce_max
from common.errors import CheckpointError, InvalidValueError
from common.runlog import progress
from common.runtime import autocast
from data.iqa_dataset import FixedSizeCollate, collate_crops
from engine.epoch_state import (
    EpochTotals,
    MidEpoch,
    ResumableSampler,
    rank_part,
    restore_rank_rng,
)
from engine.train_state import GracefulStop, NonFiniteGuard

STOP_CHECK_EVERY = 20  # optimizer steps between the ranks' stop agreements under DDP


@dataclass
class StepOutput:
    """What a step function returns for one batch."""

    loss: torch.Tensor  # scalar, graph attached
    logs: dict[str, torch.Tensor]  # detached scalar terms averaged over the epoch
    predictions: torch.Tensor | None = None  # (N,) detached, per image (for the train SRCC)
    targets: torch.Tensor | None = None  # (N,)


# A step function with RNG streams of its own also has rng_state() -> dict of tensors and
# restore_rng_state(dict), so that a mid-epoch train state can continue them.
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


def _decide(stop, info: DistInfo | None, steps: int, save_due: bool) -> tuple[bool, bool]:
    """(stop, save) before the next batch (called between accumulation groups); under DDP every
    rank takes the same decisions, agreed every STOP_CHECK_EVERY steps (any rank's stop request
    or due save counts for all)."""
    requested = stop is not None and stop.requested
    if info is None or not info.distributed:
        return requested, save_due
    if steps % STOP_CHECK_EVERY:
        return False, False
    # a collective (one host sync), at a fixed cadence so every rank acts at the same step
    flags = all_reduce_max(torch.tensor([requested, save_due], dtype=torch.uint8), info)
    return bool(flags[0]), bool(flags[1])


def _start_epoch(loader: Iterable, resume: MidEpoch | None, epoch: int) -> int:
    """Let the sampler leave out the batches a resumed epoch has trained; returns their count."""
    if resume is None:
        return 0
    sampler = getattr(loader, "sampler", None)
    if not isinstance(sampler, ResumableSampler):
        raise InvalidValueError("resuming inside an epoch needs a loader with a ResumableSampler")
    full = len(loader)
    if resume.epoch != epoch or full != resume.epoch_batches:
        raise CheckpointError(
            f"the train state was saved after batch {resume.batches} of epoch {resume.epoch}, "
            f"an epoch of {resume.epoch_batches} batches; this run's epoch {epoch} has {full}: "
            "resume with the data and flags the run was started with")
    sampler.skip_next(resume.batches * loader.batch_size)
    return resume.batches


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
    resume: MidEpoch | None = None,
    checkpoint: Callable[[MidEpoch], None] | None = None,
    save_every_s: float = 0.0,
) -> dict:
    """Train `model` for one epoch of `loader` with `step_fn(model, batch) -> StepOutput`.

    Sets the epoch on the loader's sampler and dataset. Batches with no readable image (None, or
    marked "empty" by FixedSizeCollate) are skipped; under DDP an "empty" batch is stepped with
    its loss times zero instead, so every rank runs the same gradient all-reduces. The loss is
    divided by `accum_steps`; the optimizer steps every
    `accum_steps` batches and on the last one, the scheduler once per optimizer step. Loss terms
    and predictions stay on the device until the epoch ends, so no step waits for the host.

    A stop request is checked before each accumulation group (under DDP, pass `info`: ranks
    agree every STOP_CHECK_EVERY steps); a stop calls `checkpoint` with the MidEpoch position,
    as does the first group boundary `save_every_s` seconds (0: never) after the epoch's start
    or its last such save. `resume` (a position
    saved so) continues the epoch at its next batch: the sampler (a ResumableSampler) leaves out
    the batches trained, the sums and RNG streams are restored. Returns {"loss", <log names>,
    "predictions", "targets", "steps", "skipped_batches", "skipped_images", "stopped", "images",
    "time_s", "position"} (counts and time over the whole epoch; "position": the MidEpoch of a
    stop, else None).
    """
    if accum_steps < 1:
        raise InvalidValueError(f"accum_steps must be >= 1, got {accum_steps}")
    start = time.perf_counter()
    model.train()
    _set_epoch(loader, epoch)
    optimizer.zero_grad(set_to_none=True)
    done = _start_epoch(loader, resume, epoch)
    full = done + len(loader) if hasattr(loader, "__len__") else None
    total = full
    if max_steps is not None and total is not None:
        total = min(total, max_steps * accum_steps)
    totals, steps, earlier_s = EpochTotals(device), 0, 0.0
    if resume is not None:
        totals = EpochTotals.from_state(resume.rank["totals"], device)
        steps, earlier_s = resume.steps, resume.time_s
    batch_iter = iter(loader)  # draws the loader's seed from the global RNG...
    if resume is not None:
        restore_rank_rng(resume.rank, step_fn)  # ...so the saved streams are put back after it
    pending = 0
    distributed = info is not None and info.distributed

    def position(seen: int) -> MidEpoch:
        if guard is not None:  # the saved state holds only checked batches
            totals.skipped_batches += guard.finish()
        return MidEpoch(epoch, seen, steps, full or seen, earlier_s + time.perf_counter() - start,
                        rank_part(totals, step_fn))

    stopped = None
    last_save, saved_steps = time.perf_counter(), steps
    decides = stop is not None or (checkpoint is not None and save_every_s > 0)
    bar = progress(batch_iter, desc=desc, total=total, enabled=is_main, initial=done)
    for seen, batch in enumerate(bar, start=done + 1):
        if pending == 0 and decides:  # between groups: this batch is the first a resume trains
            due = (save_every_s > 0 and steps > saved_steps
                   and time.perf_counter() - last_save >= save_every_s)
            stop_now, save_now = _decide(stop, info, steps, due)
            if stop_now or save_now:
                here = position(seen - 1)
                if checkpoint is not None:
                    checkpoint(here)
                last_save, saved_steps = time.perf_counter(), steps
                if stop_now:
                    stopped = here
                    break
        empty = batch is None or bool(batch.get("empty"))
        if empty:
            totals.skipped_batches += 1
        if batch is not None:
            totals.skipped_images += int(batch.get("n_skipped", 0))
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
            totals.add(loss, out.logs, int(batch["image"].shape[0]), out.predictions,
                       out.targets)
        if not pending or not (pending == accum_steps or seen == total):
            continue
        _optimizer_step(optimizer, scheduler, scaler, guard)
        pending = 0
        steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    if pending:  # the loader ended inside an accumulation group (its length was unknown)
        _optimizer_step(optimizer, scheduler, scaler, guard)
        steps += 1
    if guard is not None:
        totals.skipped_batches += guard.finish()
    result = totals.result()
    result.update(steps=steps, stopped=stopped is not None, position=stopped,
                  time_s=earlier_s + time.perf_counter() - start)
    return result
