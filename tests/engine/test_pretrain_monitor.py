"""Collapse check and label-free zero-shot validation of Stage 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from data.images import ImageCache, ResizePolicy
from engine.pretrain_monitor import ZeroShotValidation, collapse_message


def test_collapse_message_flags_chance_ranking_and_no_spread() -> None:
    healthy = {"epoch": 3, "rank_accuracy": 0.85, "level_spread": 0.2}
    assert collapse_message(healthy, margin=0.05) is None
    chance = collapse_message({**healthy, "rank_accuracy": 0.52}, margin=0.05)
    assert chance.startswith("COLLAPSE: epoch 3") and "52.0% of level pairs" in chance
    flat = collapse_message({**healthy, "level_spread": 1e-4}, margin=0.05)
    assert "spread by 1.00e-04" in flat and "ranks only" not in flat


class Sharpness(nn.Module):
    """Zero-shot scorer that rewards detail: mean absolute horizontal gradient."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"score": (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))}


class Constant(nn.Module):
    """A collapsed scorer: the same score for every input."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"score": torch.zeros(x.shape[0])}


@pytest.fixture(scope="module")
def validation(demo_root: Path) -> ZeroShotValidation:
    paths = sorted((demo_root / "koniq10k" / "1024x768").glob("*.jpg"))[:3]
    return ZeroShotValidation(paths, ResizePolicy("none"), ImageCache(None),
                              ["gaussian_blur", "pixelate"], crop_size=48, num_levels=4, seed=5,
                              device=torch.device("cpu"))


def test_validation_ranks_levels_within_each_image(validation: ZeroShotValidation) -> None:
    assert len(validation) == 6 and validation.levels.shape == (6, 5, 3, 48, 48)
    sharp = validation.evaluate(Sharpness())
    assert sharp["val_srcc"] > 0.9  # blur and pixelation remove detail at every level
    assert set(sharp["val_by_type"]) == {"gaussian_blur", "pixelate"}
    assert validation.evaluate(Constant())["val_srcc"] == 0.0


def test_validation_set_is_fixed_by_the_seed(demo_root: Path,
                                             validation: ZeroShotValidation) -> None:
    again = ZeroShotValidation(sorted((demo_root / "koniq10k" / "1024x768").glob("*.jpg"))[:3],
                               ResizePolicy("none"), ImageCache(None),
                               ["gaussian_blur", "pixelate"], crop_size=48, num_levels=4, seed=5,
                               device=torch.device("cpu"))
    torch.testing.assert_close(again.levels, validation.levels, rtol=0, atol=0)
