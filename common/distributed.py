"""torchrun/DDP helpers: process-group setup, sharding without padding, gathering predictions."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from common.errors import CheckpointError, InvalidValueError, UserError
from common.runtime import resolve_device

BACKEND_ENV = "QUALICLIP_DIST_BACKEND"  # documented: gloo lets ranks share a GPU
T = TypeVar("T")
SHARED_CHECK_WAIT_S = 5.0  # how long a rank waits for rank 0's probe file to appear


@dataclass
class DistInfo:
    """Where this process sits in the job (world_size 1 when not launched by torchrun)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    """Integer environment variable set by torchrun."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise RuntimeError(f"environment variable {name}={value!r} is not an integer") from exc


def _backend(device: torch.device) -> str:
    """nccl on CUDA and gloo on CPU, unless BACKEND_ENV names one of them."""
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if device.type == "cuda" else "gloo")
    if backend not in ("nccl", "gloo") or (backend == "nccl" and device.type != "cuda"):
        raise RuntimeError(f"{BACKEND_ENV}={backend!r}: expected gloo, or nccl on CUDA devices")
    return backend


def init_distributed(device_arg: str) -> DistInfo:
    """Join the torchrun process group (nccl on CUDA, gloo on CPU); single process without env.

    With BACKEND_ENV=gloo, ranks may share GPUs (rank r on GPU r mod count): slow, for checks on
    a one-GPU machine, where NCCL refuses two ranks on one GPU.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistInfo(0, 1, 0, resolve_device(device_arg), True)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = resolve_device(device_arg)
    backend = _backend(device)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count and backend == "nccl":
            raise RuntimeError(
                f"LOCAL_RANK {local_rank} but only {count} GPU(s) are visible; use "
                f"--nproc_per_node <= number of GPUs (or {BACKEND_ENV}=gloo to share GPUs, slowly)"
            )
        device = torch.device("cuda", local_rank % count)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, **kwargs)
    return DistInfo(rank, world_size, local_rank, device, rank == 0)


def shard_indices(n: int, info: DistInfo) -> list[int]:
    """This rank's dataset indices (rank::world_size): no padding, so no image counts twice."""
    return list(range(info.rank, n, info.world_size))


def _comm_device(info: DistInfo) -> torch.device:
    """Device that collectives of the current backend accept."""
    if info.distributed and dist.get_backend() == "nccl":
        return info.device
    return torch.device("cpu")


def gather_predictions(
    index: torch.Tensor, pred: torch.Tensor, n_total: int, info: DistInfo
) -> np.ndarray:
    """Place every rank's predictions by dataset index; checks each index appears exactly once."""
    index = index.detach().reshape(-1).to(torch.int64)
    pred = pred.detach().reshape(-1).to(torch.float64)
    if index.numel() != pred.numel():
        raise InvalidValueError(
            f"gather_predictions got {index.numel()} indices but {pred.numel()} predictions"
        )
    if info.distributed:
        device = _comm_device(info)
        index, pred = index.to(device), pred.to(device)
        count = torch.tensor([index.numel()], device=device, dtype=torch.int64)
        counts = [torch.zeros_like(count) for _ in range(info.world_size)]
        dist.all_gather(counts, count)
        longest = int(max(c.item() for c in counts))
        padded_index = torch.full((longest,), -1, dtype=torch.int64, device=device)
        padded_pred = torch.zeros(longest, dtype=torch.float64, device=device)
        padded_index[: index.numel()] = index
        padded_pred[: pred.numel()] = pred
        all_index = [torch.empty_like(padded_index) for _ in range(info.world_size)]
        all_pred = [torch.empty_like(padded_pred) for _ in range(info.world_size)]
        dist.all_gather(all_index, padded_index)
        dist.all_gather(all_pred, padded_pred)
        index = torch.cat([i[: int(c.item())] for i, c in zip(all_index, counts, strict=True)])
        pred = torch.cat([p[: int(c.item())] for p, c in zip(all_pred, counts, strict=True)])
    idx = index.cpu().numpy()
    values = pred.cpu().numpy()
    if idx.size and (idx.min() < 0 or idx.max() >= n_total):
        raise InvalidValueError(
            f"prediction indices must lie in [0, {n_total}); found {idx.min()}..{idx.max()}"
        )
    seen = np.bincount(idx, minlength=n_total)
    duplicated = np.flatnonzero(seen > 1)
    missing = np.flatnonzero(seen == 0)
    if duplicated.size or missing.size:
        raise InvalidValueError(
            f"every image must be predicted exactly once: {duplicated.size} index(es) predicted "
            f"more than once (first {duplicated[:5].tolist()}), {missing.size} missing "
            f"(first {missing[:5].tolist()}) of {n_total}; shard with shard_indices, not a padding "
            "DistributedSampler"
        )
    out = np.empty(n_total, dtype=np.float64)
    out[idx] = values
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's value of obj on every rank (e.g. a run name that contains a timestamp)."""
    if not info.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0, device=_comm_device(info))
    return holder[0]


def decided_on_main(decide: Callable[[], T], info: DistInfo) -> T:
    """Rank 0's result of `decide()` on every rank; a UserError it raises is raised on every
    rank alike, so no rank goes on alone (e.g. the check of output files before scoring)."""
    outcome: tuple[T | None, UserError | None] = (None, None)
    if info.is_main:
        try:
            outcome = (decide(), None)
        except UserError as exc:
            outcome = (None, exc)
    result, failure = broadcast_object(outcome, info)
    if failure is not None:
        raise failure
    return result  # type: ignore[return-value]


def gather_arrays(values: np.ndarray | None, info: DistInfo) -> np.ndarray | None:
    """Every rank's 1-D array joined in rank order (None when no rank has one)."""
    if not info.distributed:
        return values
    parts: list[np.ndarray | None] = [None] * info.world_size
    dist.all_gather_object(parts, values)
    present = [part for part in parts if part is not None]
    return np.concatenate(present) if present else None


def reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (returns a new tensor; the input is left unchanged)."""
    if not info.distributed:
        return value.clone()
    out = value.detach().clone().to(_comm_device(info))
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return (out / info.world_size).to(value.device)


def all_reduce_max(value: torch.Tensor, info: DistInfo | None) -> torch.Tensor:
    """Elementwise maximum of a tensor over ranks (the tensor itself in a single process).

    On NCCL the reduction runs on the device without waiting for the host; gloo works on CPU
    copies.
    """
    if info is None or not info.distributed:
        return value
    out = value.detach().to(_comm_device(info), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out.to(value.device)


def wrap_ddp(model: nn.Module, info: DistInfo, **kwargs: Any) -> nn.Module:
    """DistributedDataParallel around model when distributed; the model itself otherwise."""
    if not info.distributed:
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    # no BatchNorm anywhere: nothing to broadcast before each forward
    kwargs.setdefault("broadcast_buffers", False)
    return DistributedDataParallel(model, device_ids=device_ids, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP and/or torch.compile wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed and dist.is_initialized():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group (no-op in a single process)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def check_shared_folder(folder: str | os.PathLike, info: DistInfo) -> None:
    """Stop every rank before training unless all of them see `folder` as rank 0 does.

    Rank 0 alone writes last.pkl and best_model.pkl, and every rank reads them (the final test,
    --resume); on nodes without a shared filesystem the other ranks would read nothing or a
    stale file. Rank 0 writes a probe file with a random token that every rank must read back.
    A collective: call it on every rank, after rank 0 has created `folder`.
    """
    if not info.distributed:
        return
    token = broadcast_object(secrets.token_hex(8) if info.is_main else None, info)
    probe = Path(folder) / f".shared_check_{token}"
    if info.is_main:
        probe.write_text(token)
    barrier(info)
    deadline = time.monotonic() + SHARED_CHECK_WAIT_S
    while not (sees := probe.is_file() and probe.read_text() == token) and (
            time.monotonic() < deadline):
        time.sleep(0.5)  # a network filesystem may show a new file a moment later
    views: list[tuple[int, str, bool] | None] = [None] * info.world_size
    dist.all_gather_object(views, (info.rank, socket.gethostname(), sees))
    barrier(info)
    if info.is_main:
        probe.unlink(missing_ok=True)
    blind = [f"rank {rank} on {host}" for rank, host, seen in views if not seen]
    if blind:
        raise CheckpointError(
            f"the output folder {folder} is not shared by all ranks: {', '.join(blind)} cannot "
            "see a file rank 0 wrote there. Rank 0 alone writes the checkpoints (last.pkl, "
            "best_model.pkl) and every rank reads them for the final test and --resume: put "
            "--output_dir on a filesystem every node mounts (NFS, Lustre, ...)"
        )
