"""Degradations on the training device: no host copies per step, full float32 precision."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmarks.device_checks import host_tensor_creations, unsanctioned_degradation_copies
from data.degradations import degrade_levels
from data.degradations.registry import DISTORTIONS


def _batch(seed: int, n: int) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_no_host_to_device_tensor_after_the_first_call() -> None:
    """After a warm-up call, a call with other types and pairs builds no tensor from host values
    except the per-batch indices of `host_index` (pinned, non-blocking on a GPU): on a GPU each
    such tensor would be a blocking copy inside every pretraining step."""
    assert unsanctioned_degradation_copies(torch.device("cpu")) == []


def test_host_tensor_spy_sees_creations() -> None:
    """The spy behind the check above records where tensors are built from host values."""
    with host_tensor_creations() as calls:
        torch.tensor([1.0])
        torch.as_tensor([2.0])
    assert [name for _, name in calls] == ["test_host_tensor_spy_sees_creations"] * 2
    assert torch.tensor.__name__ == "tensor"  # put back


def test_degradations_run_without_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    """With TF32 enabled globally (as training does on GPUs), every distortion runs without it,
    and the global setting is back afterwards."""
    seen: list[tuple[bool, bool]] = []
    jpeg = DISTORTIONS["jpeg"]

    def recording(x, parameter, rng):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return jpeg.fn(x, parameter, rng)

    monkeypatch.setitem(DISTORTIONS, "jpeg", dataclasses.replace(jpeg, fn=recording))
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        degrade_levels(_batch(0, 2), ["jpeg", "jpeg"], 5)
        after = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert seen == [(False, False)] * 5
    assert after == (True, True)
