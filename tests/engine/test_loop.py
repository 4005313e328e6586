"""train_one_epoch: accumulation, scheduler steps, skipped batches, stop requests, outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from common.runtime import make_grad_scaler
from engine.loop import StepOutput, to_device_images, train_one_epoch
from engine.optim import build_optimizer, build_scheduler, param_groups
from engine.train_state import NonFiniteGuard, NonFiniteLossError

CPU = torch.device("cpu")


class TinyScorer(nn.Module):
    """Mean pixel value times a learned scale: enough to see the optimizer act."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)) * self.scale + self.bias


def make_batches(n: int, size: int = 4, poison: int | None = None) -> list[dict | None]:
    """n batches of `size` uint8 images (1 crop each) with MOS = mean pixel / 255."""
    gen = torch.Generator().manual_seed(0)
    batches = []
    for b in range(n):
        image = torch.randint(0, 256, (size, 1, 3, 8, 8), generator=gen, dtype=torch.uint8)
        mos = image.float().mean(dim=(1, 2, 3, 4)) / 255
        if b == poison:
            mos = torch.full_like(mos, float("nan"))
        batches.append({"image": image, "mos": mos, "index": torch.arange(size),
                        "name": [f"b{b}_{i}.png" for i in range(size)], "n_skipped": 0})
    return batches


def l1_step(model: nn.Module, batch: dict) -> StepOutput:
    x = to_device_images(batch["image"].flatten(0, 1), CPU)
    pred = model(x)
    loss = (pred - batch["mos"]).abs().mean()
    return StepOutput(loss, {"double": 2 * loss.detach()}, pred.detach(), batch["mos"])


def setup(steps_per_epoch: int = 10, lr: float = 0.1):
    model = TinyScorer()
    optimizer = build_optimizer(param_groups({"all": (model, lr)}, 0.0), CPU)
    scheduler = build_scheduler(optimizer, "cosine", 2, steps_per_epoch)
    return model, optimizer, scheduler, make_grad_scaler(CPU, "off")


def run(batches, accum_steps=1, max_steps=None, guard=None, stop=None, **kw):
    model, optimizer, scheduler, scaler = setup(**kw)
    out = train_one_epoch(model, batches, optimizer, scheduler, scaler, l1_step, device=CPU,
                          amp="off", accum_steps=accum_steps, guard=guard, stop=stop, epoch=1,
                          desc="test", is_main=False, max_steps=max_steps)
    return out, model, scheduler


def test_to_device_images_scales_and_uses_channels_last() -> None:
    x = to_device_images(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8), CPU)
    assert x.dtype == torch.float32 and float(x.max()) == 1.0
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_epoch_trains_and_reports_averages() -> None:
    out, model, scheduler = run(make_batches(6))
    assert out["steps"] == 6 and scheduler.last_epoch == 6
    assert out["images"] == 24 and not out["stopped"] and out["skipped_batches"] == 0
    assert out["double"] == pytest.approx(2 * out["loss"], rel=1e-5)
    assert out["predictions"].shape == (24,) and out["targets"].shape == (24,)
    assert float(model.bias.detach()) != 0.0


def test_predictions_stay_aligned_with_targets() -> None:
    out, _, _ = run(make_batches(5), lr=0.0)  # TinyScorer starts as the exact MOS function
    np.testing.assert_allclose(out["predictions"], out["targets"], rtol=1e-5)


def test_accumulation_steps_once_per_group_and_on_the_last_batch() -> None:
    out, _, scheduler = run(make_batches(7), accum_steps=3)
    assert out["steps"] == 3 and scheduler.last_epoch == 3  # 3 + 3 + 1 batches


def test_max_steps_and_none_batches() -> None:
    batches = make_batches(6)
    batches[1] = None
    out, _, _ = run(batches, max_steps=3)
    assert out["steps"] == 3 and out["skipped_batches"] == 1 and out["images"] == 12


def test_stop_request_ends_the_epoch_before_the_next_step() -> None:
    class Stop:
        requested = True

    out, model, _ = run(make_batches(4), stop=Stop())
    assert out["stopped"] and out["steps"] == 0 and float(model.bias.detach()) == 0.0
    assert np.isnan(out["loss"])


def test_non_finite_loss_raises_or_is_skipped() -> None:
    with pytest.raises(NonFiniteLossError, match="b2_"):
        run(make_batches(4, poison=2), guard=NonFiniteGuard(check_every=2))
    out, model, _ = run(make_batches(4, poison=2), guard=NonFiniteGuard(2, skip=True))
    assert out["skipped_batches"] == 1 and torch.isfinite(model.bias).all()


def test_scheduler_skips_the_steps_fp16_skipped() -> None:
    """An overflowing fp16 step is skipped by the scaler, and the schedule does not advance."""
    model, optimizer, scheduler, _ = setup()
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    batches = make_batches(2)

    def overflowing(model: nn.Module, batch: dict) -> StepOutput:
        out = l1_step(model, batch)
        return StepOutput(out.loss * 1e38, {})  # times the scale: inf gradients

    out = train_one_epoch(model, batches, optimizer, scheduler, scaler, overflowing, device=CPU,
                          amp="off", accum_steps=1, guard=None, stop=None, epoch=1, desc="t",
                          is_main=False)
    assert out["steps"] == 2
    assert scheduler.last_epoch == 0 and scaler.get_scale() < 65536.0
    assert model.scale.item() == 1.0
