"""Fixtures shared by every test package: the real label files and one demo-data build."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Folder of the real dataset label files (kept beside the repository, never copied into it)."""
    path = REPO_ROOT.parent / "shared" / "fixtures" / "labels"
    if not path.is_dir():
        pytest.skip(f"real label fixtures not found at {path}")
    return path


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo datasets in all five official layouts, built once per test session."""
    from data.demo import build_demo

    out = tmp_path_factory.mktemp("demo_data")
    build_demo(out, seed=0)
    return out


RANK_TIMEOUT_S = 90  # a hang (ranks whose collectives no longer pair up) fails instead of blocking


def _rank_entry(rank: int, world_size: int, port: int, worker, args: tuple) -> None:
    """One forked rank: torchrun's environment, one thread, the process group, then `worker`."""
    import os

    import torch

    from common.distributed import cleanup, init_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        worker(info, *args)
    finally:
        cleanup(info)


@pytest.fixture
def two_ranks():
    """Run `worker(info, *args)` in 2 forked CPU processes (gloo); fail when they hang."""
    import importlib
    import os
    import signal
    import socket
    import time

    import torch.multiprocessing as mp

    importlib.import_module("torch._dynamo")  # DDP imports it: once here, not in every rank

    def run(worker, *args, timeout: float = RANK_TIMEOUT_S) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        context = mp.start_processes(_rank_entry, args=(2, port, worker, args), nprocs=2,
                                     start_method="fork", join=False)
        deadline = time.monotonic() + timeout
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                for process in context.processes:
                    if process.is_alive():
                        os.kill(process.pid, signal.SIGKILL)
                pytest.fail(f"the two ranks hung: still running after {timeout:.0f} s")

    return run
