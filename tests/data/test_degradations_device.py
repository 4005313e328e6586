"""Degradations on the training device: no host copies per step, full float32 precision."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

from data.degradations import DISTORTION_NAMES, degrade_levels
from data.degradations.registry import DISTORTIONS


def _batch(seed: int, n: int) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_no_host_to_device_tensor_after_the_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a warm-up call, a call with other types and pairs builds no tensor from host values
    except the per-batch indices of `host_index` (pinned, non-blocking on a GPU): on a GPU each
    such tensor would be a blocking copy inside every pretraining step."""
    names = list(DISTORTION_NAMES)
    degrade_levels(_batch(0, len(names)), names, 5, generator=torch.Generator().manual_seed(0))
    created: list[tuple[str, str, bool]] = []

    def spy(original):
        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_code
            created.append((caller.co_filename, caller.co_name, "device" in kwargs))
            return original(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(torch, "tensor", spy(torch.tensor))
    monkeypatch.setattr(torch, "as_tensor", spy(torch.as_tensor))
    shuffled = names[::-1] + names[:3]
    pair_ids = [i // 2 for i in range(len(shuffled))]
    degrade_levels(_batch(1, len(shuffled)), shuffled, 5,
                   generator=torch.Generator().manual_seed(1), pair_ids=pair_ids)
    monkeypatch.undo()
    from_degradations = [c for c in created if "degradations" in c[0]]
    assert from_degradations, "the spy saw no tensor creation at all"
    assert {name for _, name, _ in from_degradations} == {"host_index"}
    assert not any(with_device for _, _, with_device in from_degradations)


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
