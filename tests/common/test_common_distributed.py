"""Distributed helpers: single process without env, and 2 CPU processes with gloo."""

from __future__ import annotations

import importlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from common.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    cleanup,
    gather_predictions,
    init_distributed,
    reduce_mean,
    shard_indices,
    unwrap,
    wrap_ddp,
)
from common.errors import CheckpointError
from engine.train_state import GracefulStop


def test_single_process_without_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    assert shard_indices(5, info) == [0, 1, 2, 3, 4]
    pred = gather_predictions(torch.tensor([2, 0, 1]), torch.tensor([0.2, 0.0, 0.1]), 3, info)
    np.testing.assert_allclose(pred, [0.0, 0.1, 0.2])
    model = nn.Linear(2, 1)
    assert wrap_ddp(model, info) is model and unwrap(model) is model
    assert broadcast_object("run", info) == "run"
    barrier(info)
    cleanup(info)


def test_gather_checks_every_index_exactly_once() -> None:
    info = DistInfo(0, 1, 0, torch.device("cpu"), True)
    with pytest.raises(ValueError, match=r"1 index.*more than once.*2 missing"):
        gather_predictions(torch.tensor([0, 0, 2]), torch.zeros(3), 4, info)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        gather_predictions(torch.tensor([0, 5]), torch.zeros(2), 2, info)


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        n = 7  # odd: ranks get 4 and 3 images, nothing padded
        shard = shard_indices(n, info)
        index = torch.tensor(shard)
        pred = index.double() * 10  # prediction = 10 x dataset index
        gathered = gather_predictions(index, pred, n, info)
        duplicate_error = ""
        try:
            gather_predictions(torch.tensor([0]), torch.zeros(1), n, info)
        except ValueError as exc:
            duplicate_error = str(exc)
        name = broadcast_object(f"run_from_rank_{rank}", info)
        mean = reduce_mean(torch.tensor(float(rank)), info).item()
        model = wrap_ddp(nn.Linear(3, 1), info)
        torch.manual_seed(rank)  # different data per rank; DDP averages the gradients
        model(torch.randn(4, 3)).sum().backward()
        grad = unwrap(model).weight.grad.tolist()
        stop = GracefulStop()
        stop.requested = rank == 1
        anyone = stop.any_rank_requested(info)
        barrier(info)
        result = {
            "shard": shard,
            "gathered": gathered.tolist(),
            "dup": duplicate_error,
            "name": name,
            "mean": mean,
            "grad": grad,
            "stop": anyone,
            "is_main": info.is_main,
            "world": info.world_size,
        }
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        cleanup(info)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_with_gloo(tmp_path: Path) -> None:
    importlib.import_module("torch._dynamo")  # DDP imports it (seconds): once here, not per rank
    # fork: the children inherit the imported modules, so the test takes seconds, not tens
    mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork"
    )
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["shard"] == [0, 2, 4, 6] and r1["shard"] == [1, 3, 5]
    assert r0["gathered"] == r1["gathered"] == [10.0 * i for i in range(7)]
    assert "more than once" in r0["dup"] and "missing" in r1["dup"]
    assert r0["name"] == r1["name"] == "run_from_rank_0"
    assert r0["mean"] == r1["mean"] == 0.5
    assert r0["grad"] == r1["grad"]
    assert r0["stop"] and r1["stop"]
    assert (r0["is_main"], r1["is_main"], r0["world"]) == (True, False, 2)


def _shared_folder_worker(info: DistInfo, folders: list[Path], out: Path) -> None:
    import common.distributed

    common.distributed.SHARED_CHECK_WAIT_S = 0.0  # no waiting for a file that never appears
    folder = folders[info.rank]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        common.distributed.check_shared_folder(folder, info)
        message = ""
    except CheckpointError as exc:
        message = str(exc)
    barrier(info)  # rank 0 has removed its probe file
    leftovers = sorted(p.name for p in folder.iterdir())
    Path(out, f"rank{info.rank}.json").write_text(json.dumps({"error": message,
                                                              "left": leftovers}))


@pytest.mark.parametrize("shared", [True, False])
def test_output_folder_must_be_shared_by_every_rank(two_ranks, tmp_path: Path,
                                                    shared: bool) -> None:
    """A folder every rank sees passes; one that rank 1 sees elsewhere (a node's local disk)
    stops both ranks before training, naming the rank."""
    folders = [tmp_path / "runs"] * 2 if shared else [tmp_path / "node0", tmp_path / "node1"]
    two_ranks(_shared_folder_worker, folders, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["left"] == [] and r1["left"] == []  # the probe file is removed
    if shared:
        assert r0["error"] == r1["error"] == ""
    else:
        for error in (r0["error"], r1["error"]):
            assert "not shared by all ranks: rank 1 on" in error and "--output_dir" in error


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """nccl on CUDA, gloo on CPU; QUALICLIP_DIST_BACKEND=gloo lets ranks share one GPU."""
    from common.distributed import BACKEND_ENV, _backend

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert _backend(torch.device("cuda", 0)) == "nccl"
    assert _backend(torch.device("cpu")) == "gloo"
    monkeypatch.setenv(BACKEND_ENV, "gloo")
    assert _backend(torch.device("cuda", 0)) == "gloo"
    monkeypatch.setenv(BACKEND_ENV, "nccl")
    with pytest.raises(RuntimeError, match="expected gloo, or nccl on CUDA"):
        _backend(torch.device("cpu"))
