"""Resumable training state (last.pkl), clean stops on SIGTERM/SIGINT, and the NaN/Inf guard."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import nn

from common.checkpoint import (
    atomic_save,
    check_json_able,
    load_checkpoint,
    make_checkpoint,
    restore_rng_state,
    rng_state,
)
from common.distributed import DistInfo, all_reduce_max, unwrap
from common.errors import CheckpointError, InvalidValueError, RunStopped, UserError
from engine.run_kind import RunKind, kind_of_config, wrong_kind_message

GUARD_CHECK_EVERY = 50  # batches between the NaN/Inf guard's host checks


def save_train_state(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    epoch: int,
    extra: dict,
    config: dict,
    model_size: str,
    rank_rngs: list[dict] | None = None,
    position: dict | None = None,
) -> None:
    """Write a "train_state" checkpoint: model, optimizer, scheduler, scaler, RNG, last done epoch.

    `epoch` is the last COMPLETED epoch; `extra` holds plain values such as the best score and
    the early-stopping counter; `rank_rngs` every rank's RNG state (all_rank_rngs) under DDP;
    `position` where the epoch after it stands when saved in its middle (gather_position).
    """
    check_json_able(extra, "extra")
    ckpt = make_checkpoint(
        "train_state",
        model_size,
        unwrap(model).state_dict(),
        config,
        epoch,
        {},
        extra=extra,
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict() if scheduler is not None else None,
        scaler=scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        rng=rng_state(),
        rank_rngs=rank_rngs,
        position=position,
    )
    atomic_save(ckpt, path)


def all_rank_rngs(info: DistInfo) -> list[dict] | None:
    """Every rank's RNG state in rank order (a collective: call on every rank); None alone."""
    if not info.distributed:
        return None
    states: list[dict | None] = [None] * info.world_size
    dist.all_gather_object(states, rng_state())
    return states


def load_train_state(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    rank: int = 0,
    expected: RunKind | None = None,
) -> dict:
    """Restore everything save_train_state wrote; returns {"epoch", "extra", "config",
    "position"} ("position": None unless saved in the middle of an epoch).

    `rank` gets its own saved RNG stream; a rank the saving run did not have keeps the one it
    was seeded with. A train state of another kind of run than `expected` is refused.
    """
    ckpt = load_checkpoint(path, expected_kind="train_state")
    found = kind_of_config(ckpt["config"])
    if expected is not None and found != expected:
        wanted = f"a {expected.name} run"
        raise CheckpointError(f"--resume: {wrong_kind_message(Path(path), found, wanted)}")
    hint = (
        f"{path} was saved by a run with model_size {ckpt['model_size']!r} and config "
        f"{ckpt['config']}; resume with the same flags, or start a new run without --resume"
    )
    try:
        unwrap(model).load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"model weights do not fit: {exc}\n{hint}") from exc
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"optimizer state does not fit ({exc}); {hint}") from exc
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    streams = ckpt.get("rank_rngs") or [ckpt["rng"]]
    if rank < len(streams):
        restore_rng_state(streams[rank])
    return {"epoch": int(ckpt["epoch"]), "extra": ckpt.get("extra", {}), "config": ckpt["config"],
            "position": ckpt.get("position")}


class GracefulStop:
    """Context manager: SIGTERM/SIGINT set `.requested`; a second signal raises KeyboardInterrupt.

    The training loop checks `.requested` between steps, saves last.pkl and exits with
    `resume_message(...)`. Handlers are installed only in the main thread (elsewhere it is inert).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, logger: Any = None) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._logger = logger
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """First signal: ask the loop to stop; second: stop now."""
        name = signal.Signals(signum).name
        if self.requested:
            self._restore()
            raise KeyboardInterrupt(f"second {name}: stopping immediately without saving")
        self.requested = True
        self.signal_name = name
        if self._logger is not None:
            self._logger.warning(
                "received %s: finishing the current step, saving the train state, then exiting "
                "(send it again to stop immediately)",
                name,
            )

    def _restore(self) -> None:
        """Put back the handlers that were installed before."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    def any_rank_requested(self, info: DistInfo) -> bool:
        """True if a stop was requested on any rank (one collective; call at a fixed cadence)."""
        if not info.distributed:
            return self.requested
        device = info.device if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([int(self.requested)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    @property
    def exit_code(self) -> int:
        """Exit status after the stop: 128 + the signal's number (SIGTERM's when another rank's)."""
        return 128 + int(signal.Signals[self.signal_name] if self.signal_name else signal.SIGTERM)

    def resume_message(self, state_path: str | os.PathLike, where: str, command: str) -> str:
        """The line to print on exit: where the run stopped ("after epoch 2", "in epoch 3 after
        step 18 of 29"), what was saved and the command that continues it."""
        cause = self.signal_name or "a signal to another rank"
        return (f"stopped by {cause} {where}; train state saved to {state_path}. Resume with: "
                f"{command} --resume {state_path}")

    def stop_run(self, state_path: str | os.PathLike, where: str, command: str,
                 logger: Any, is_main: bool) -> NoReturn:
        """Log (main process) how to resume and raise RunStopped (exit status 128 + signal)."""
        message = self.resume_message(state_path, where, command)
        if is_main:
            logger.warning(message)
        raise RunStopped(message, self.exit_code)


class NonFiniteLossError(UserError, RuntimeError):
    """A NaN/Inf loss or gradient was found; carries the step and the batch's image names."""

    def __init__(self, message: str, step: int, names: list[str]) -> None:
        super().__init__(message)
        self.step = step
        self.names = names


class NonFiniteGuard:
    """Finds NaN/Inf losses and gradients without a host sync per step.

    Design. `update(loss, names)` is called once per batch, before backward. It appends a 0-d
    uint8 device tensor (1 = loss non-finite) and the batch's image names (a plain host list)
    to a window, and returns the loss. `sanitize_gradients(optimizer, scaler)` is called once
    per optimizer step, after backward (and after `scaler.unscale_`): it ORs 2 into the flags of
    the step's batches when the total gradient norm is non-finite (not with an enabled fp16
    GradScaler, which already skips overflowing steps). Only when the window holds
    `check_every` settled batches, and at the epoch end in `finish()`, are the flags copied to
    the host (one sync for the whole window):

    - skip=False: the first bad batch raises NonFiniteLossError naming its step (batches counted
      from the guard's creation), its image names and `last_checkpoint` (the last good state).
    - skip=True: `update` returns the loss with a non-finite value replaced by 0 (torch.where),
      and `sanitize_gradients` zeroes every gradient on the device (masked_fill_ with the step's
      bad flag), so `optimizer.step()` runs unconditionally but adds no gradient (AdamW momentum
      and weight decay still advance one step, harmless for isolated batches). `finish()`
      returns the epoch's count of skipped batches; their names collect in `skipped_names`.
      `diverged_after` consecutive bad batches raise anyway: skipping cannot save such a run.
    - Under DDP (`info`), the flags are all-reduced (MAX) before they are read, and each step's
      skip decision before gradients are zeroed, so every rank skips or raises at the same
      batch and the replicas never drift apart.
    """

    def __init__(
        self,
        check_every: int = GUARD_CHECK_EVERY,
        skip: bool = False,
        last_checkpoint: str | None = None,
        diverged_after: int = 50,
        info: DistInfo | None = None,
    ) -> None:
        if check_every < 1:
            raise InvalidValueError(f"check_every must be >= 1, got {check_every}")
        self.check_every = check_every
        self.skip = skip
        self.last_checkpoint = last_checkpoint
        self.diverged_after = diverged_after
        self.info = info
        self.step = 0
        self.skipped_total = 0
        self.skipped_names: list[str] = []
        self._flags: list[torch.Tensor] = []  # one 0-d uint8 per batch not yet checked
        self._names: list[list[str]] = []
        self._pending = 0  # batches whose gradients have not been checked yet
        self._uses_gradients = False  # set by the first sanitize_gradients call
        self._consecutive_bad = 0
        self._skipped_at_epoch_start = 0

    def update(self, loss: torch.Tensor, names: Sequence[str] | None = None) -> torch.Tensor:
        """Record one batch's loss (no sync); returns it, zeroed when non-finite and skip=True."""
        finite = torch.isfinite(loss.detach()).all()
        self._flags.append(finite.logical_not().to(torch.uint8))
        self._names.append(list(names) if names is not None else [])
        self.step += 1
        self._pending += 1
        keep = min(self._pending, len(self._flags)) if self._uses_gradients else 0
        if len(self._flags) - keep >= self.check_every:
            self._check(keep)
        if self.skip:
            return torch.where(finite, loss, torch.zeros_like(loss))
        return loss

    def sanitize_gradients(
        self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None
    ) -> None:
        """Flag non-finite gradients of this optimizer step; with skip=True zero them if bad."""
        self._uses_gradients = True
        n_pending = min(self._pending, len(self._flags))
        self._pending = 0
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        grads = [g for g in grads if g is not None]
        if not n_pending or not grads:
            return
        start = len(self._flags) - n_pending
        bad = torch.stack(self._flags[start:]).amax().bool().to(grads[0].device)
        if scaler is None or not scaler.is_enabled():
            norm = torch.nn.utils.get_total_norm(grads, foreach=True)
            grad_bad = torch.isfinite(norm).logical_not()
            code = grad_bad.to(torch.uint8) * 2
            for i in range(start, len(self._flags)):
                self._flags[i] = self._flags[i] | code.to(self._flags[i].device)
            bad = bad | grad_bad
        if self.skip:
            bad = all_reduce_max(bad.to(torch.uint8), self.info).bool()  # every rank skips alike
            for g in grads:
                g.masked_fill_(bad.to(g.device), 0.0)

    def _check(self, keep: int) -> None:
        """Copy all but the last `keep` flags to the host (one sync); raise or count."""
        n_checked = len(self._flags) - keep
        if n_checked <= 0:
            return
        local = torch.stack(self._flags[:n_checked])
        # every rank sees every rank's flags, so all skip or all raise at the same batch
        flags = all_reduce_max(local, self.info).cpu().tolist()
        here = local.cpu().tolist()
        names = self._names[:n_checked]
        del self._flags[:n_checked], self._names[:n_checked]
        first_step = self.step - keep - n_checked + 1
        for i, code in enumerate(flags):
            self._consecutive_bad = self._consecutive_bad + 1 if code else 0
            if not code:
                continue
            if self.skip and self._consecutive_bad < self.diverged_after:
                self.skipped_total += 1
                self.skipped_names.extend(names[i])
                continue
            what = {1: "loss", 2: "gradient", 3: "loss and gradient"}[code]
            batch_names = names[i] if here[i] else []
            if not here[i]:
                what += " (found on another rank, which names its images)"
            reason = (
                f"{self._consecutive_bad} consecutive batches were non-finite up to step "
                f"{first_step + i} (the run diverged; skipping cannot help)"
                if self.skip
                else f"non-finite {what} at step {first_step + i}"
            )
            raise NonFiniteLossError(
                f"{reason}; images of the batch: {batch_names[:16]}; last good checkpoint: "
                f"{self.last_checkpoint or 'none saved yet'}. Lower the learning rate, check "
                "these images, try --amp off, or pass --skip_nonfinite to skip such batches",
                step=first_step + i,
                names=batch_names,
            )

    def finish(self) -> int:
        """End of epoch: check every remaining batch; returns the epoch's skipped batch count."""
        self._pending = 0
        self._check(0)
        skipped = self.skipped_total - self._skipped_at_epoch_start
        self._skipped_at_epoch_start = self.skipped_total
        return skipped
