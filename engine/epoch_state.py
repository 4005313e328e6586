"""An epoch in progress: its running sums, the sampler that can skip the batches already trained,
and the mid-epoch position a train state saves so that a resume continues at the next batch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from common.checkpoint import restore_rng_state, rng_state
from common.distributed import DistInfo, barrier
from common.errors import CheckpointError


class ResumableSampler(DistributedSampler):
    """DistributedSampler whose next pass can leave out its first indices (those already
    trained in the epoch a run is resumed in); every later pass is whole."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._skip = 0

    def skip_next(self, n: int) -> None:
        """Leave out the first `n` indices of the next pass (this rank's share)."""
        self._skip = n

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])

    def __len__(self) -> int:
        return super().__len__() - self._skip


@dataclass
class EpochTotals:
    """What one rank's epoch has added up so far; the values stay on the device (no sync)."""

    device: torch.device
    loss_sum: torch.Tensor | None = None
    log_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    predictions: list[torch.Tensor] = field(default_factory=list)  # (N,) each
    targets: list[torch.Tensor] = field(default_factory=list)
    batches: int = 0  # batches with a readable image
    images: int = 0
    skipped_batches: int = 0
    skipped_images: int = 0

    def __post_init__(self) -> None:
        if self.loss_sum is None:
            self.loss_sum = torch.zeros((), device=self.device)

    def add(self, loss: torch.Tensor, logs: dict[str, torch.Tensor], images: int,
            predictions: torch.Tensor | None, targets: torch.Tensor | None) -> None:
        """Add one trained batch's loss, log terms, image count and predictions."""
        self.batches += 1
        self.images += images
        self.loss_sum += loss.detach()
        for key, value in logs.items():
            self.log_sums[key] = self.log_sums.get(
                key, torch.zeros((), device=self.device)) + value.float()
        if predictions is not None:
            self.predictions.append(predictions.float())
            self.targets.append(targets.float())

    def state(self) -> dict:
        """The sums as CPU tensors and plain numbers (a weights_only checkpoint holds them)."""
        def joined(parts: list[torch.Tensor]) -> torch.Tensor | None:
            return torch.cat(parts).cpu() if parts else None

        return {"loss_sum": self.loss_sum.cpu(),
                "log_sums": {key: value.cpu() for key, value in self.log_sums.items()},
                "predictions": joined(self.predictions), "targets": joined(self.targets),
                "batches": self.batches, "images": self.images,
                "skipped_batches": self.skipped_batches, "skipped_images": self.skipped_images}

    @classmethod
    def from_state(cls, state: dict, device: torch.device) -> EpochTotals:
        """The sums `state()` saved, back on `device`."""
        def parts(value: torch.Tensor | None) -> list[torch.Tensor]:
            return [] if value is None else [value.to(device)]

        return cls(device, state["loss_sum"].to(device),
                   {key: value.to(device) for key, value in state["log_sums"].items()},
                   parts(state["predictions"]), parts(state["targets"]), int(state["batches"]),
                   int(state["images"]), int(state["skipped_batches"]),
                   int(state["skipped_images"]))

    def result(self) -> dict:
        """Epoch means of the loss and log terms, predictions and targets as numpy, counts."""
        n = self.batches
        out = {"loss": (self.loss_sum / n).item() if n else math.nan}
        out.update({key: (value / n).item() for key, value in self.log_sums.items()})
        out["predictions"] = torch.cat(self.predictions).cpu().numpy() if self.predictions else None
        out["targets"] = torch.cat(self.targets).cpu().numpy() if self.targets else None
        out.update(images=self.images, skipped_batches=self.skipped_batches,
                   skipped_images=self.skipped_images)
        return out


@dataclass
class MidEpoch:
    """Where an epoch stands after an optimizer step: what a mid-epoch train state saves.

    `batches` and `steps` are the loader batches and optimizer steps done in the epoch (the
    same on every rank); `rank` is this rank's own part: running sums and RNG streams.
    """

    epoch: int
    batches: int
    steps: int
    epoch_batches: int
    time_s: float
    rank: dict

    def where(self, steps_per_epoch: int) -> str:
        """"in epoch 3 after step 18 of 29" for messages."""
        return f"in epoch {self.epoch} after step {self.steps} of {steps_per_epoch}"


def rank_part(totals: EpochTotals, step_fn: object) -> dict:
    """This rank's part of a mid-epoch position: its sums and its RNG streams (the global ones
    and those of the step function, where it has its own)."""
    step_rng = step_fn.rng_state() if hasattr(step_fn, "rng_state") else None
    return {"totals": totals.state(), "rng": rng_state(), "step_rng": step_rng}


def gather_position(mid: MidEpoch, info: DistInfo) -> dict:
    """The position to save: shared counters and every rank's part in rank order (a collective
    under DDP: call it on every rank)."""
    parts: list[dict | None] = [mid.rank]
    if info.distributed:
        parts = [None] * info.world_size
        dist.all_gather_object(parts, mid.rank)
    return {"epoch": mid.epoch, "batches": mid.batches, "steps": mid.steps,
            "epoch_batches": mid.epoch_batches, "time_s": mid.time_s, "ranks": parts}


def save_mid_epoch(mid: MidEpoch, info: DistInfo, write: Callable[[int, dict], None]) -> None:
    """Gather the position of every rank; rank 0 writes the train state with
    `write(last completed epoch, position)`; every rank waits until it is written."""
    position = gather_position(mid, info)
    if info.is_main:
        write(mid.epoch - 1, position)
    barrier(info)


def position_for_rank(position: dict, state_path: object, info: DistInfo) -> MidEpoch:
    """This rank's resume point out of a saved position; the run must have as many ranks."""
    saved = len(position["ranks"])
    if saved != info.world_size:
        raise CheckpointError(
            f"{state_path} was saved in the middle of epoch {position['epoch']} by {saved} "
            f"process(es), and each one's place in the data order is its own; resume it with "
            f"{saved} process(es) (torchrun --nproc_per_node {saved}), not {info.world_size}")
    return MidEpoch(int(position["epoch"]), int(position["batches"]), int(position["steps"]),
                    int(position["epoch_batches"]), float(position["time_s"]),
                    position["ranks"][info.rank])


def restore_rank_rng(rank: dict, step_fn: object) -> None:
    """Put back the RNG streams a rank had when its position was saved."""
    restore_rng_state(rank["rng"])
    if rank["step_rng"] is not None:
        step_fn.restore_rng_state(rank["step_rng"])
