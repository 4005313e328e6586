"""Collapse check and label-free zero-shot validation of Stage 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from data.images import ImageCache, ResizePolicy
from engine.pretrain_monitor import ZeroShotValidation, collapse_message, persistent_collapse


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
    # one figure per held-out image, averaged over its types; their mean is the overall SRCC
    assert len(sharp["val_by_image"]) == 3
    assert sum(sharp["val_by_image"]) / 3 == pytest.approx(sharp["val_srcc"], abs=1e-4)
    assert validation.evaluate(Constant())["val_srcc"] == 0.0


def test_validation_set_is_fixed_by_the_seed(demo_root: Path,
                                             validation: ZeroShotValidation) -> None:
    again = ZeroShotValidation(sorted((demo_root / "koniq10k" / "1024x768").glob("*.jpg"))[:3],
                               ResizePolicy("none"), ImageCache(None),
                               ["gaussian_blur", "pixelate"], crop_size=48, num_levels=4, seed=5,
                               device=torch.device("cpu"))
    torch.testing.assert_close(again.levels, validation.levels, rtol=0, atol=0)


def test_several_crops_per_image_score_one_degraded_picture(demo_root: Path) -> None:
    paths = sorted((demo_root / "koniq10k" / "1024x768").glob("*.jpg"))[:3]
    several = ZeroShotValidation(paths, ResizePolicy("none"), ImageCache(None),
                                 ["brightness", "gaussian_blur"], crop_size=48, num_levels=4,
                                 seed=5, device=torch.device("cpu"), crops_per_image=3)
    assert len(several) == 6 and several.levels.shape == (18, 5, 3, 48, 48)
    # the three crops of an image are brightened or darkened alike (one picture, one choice)
    shift = (several.levels[:, 1:] - several.levels[:, :1]).mean(dim=(1, 2, 3, 4)).view(3, 3, 2)
    assert torch.equal(torch.sign(shift[..., 0]), torch.sign(shift[:1, :, 0]).expand(3, 3))
    # an image's score at a level is the mean of its crops' scores
    per_crop = torch.stack([Sharpness()(level)["score"] for level in several.levels.unbind(1)], 1)
    mean = per_crop.view(3, 6, 5).mean(dim=0)
    expected = float(np.mean([spearmanr(-row, np.arange(5))[0] for row in mean.numpy()]))
    assert several.evaluate(Sharpness())["val_srcc"] == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="crops_per_image must be >= 1"):
        ZeroShotValidation(paths, ResizePolicy("none"), ImageCache(None), ["gaussian_blur"],
                           crop_size=48, num_levels=4, seed=5, device=torch.device("cpu"),
                           crops_per_image=0)


def test_the_stop_waits_for_a_second_flagged_epoch_or_the_last_one() -> None:
    def epoch(n: int, accuracy: float) -> dict:
        return {"epoch": n, "rank_accuracy": accuracy, "level_spread": 0.08}

    # mini at lr 5e-5: chance-level first epoch, then it learns; no stop
    learning = [epoch(1, 0.534), epoch(2, 0.641)]
    assert persistent_collapse(learning[:1], 0.05, last_epoch=10) is None
    assert persistent_collapse(learning, 0.05, last_epoch=10) is None
    stuck = [epoch(1, 0.49), epoch(2, 0.56)]
    assert persistent_collapse(stuck, 0.05, last_epoch=10).startswith("COLLAPSE: epoch 2: ")
    assert persistent_collapse(stuck[:1], 0.05, last_epoch=1).startswith("COLLAPSE: epoch 1: ")
    relapse = [epoch(1, 0.55), epoch(2, 0.70), epoch(3, 0.58)]
    assert persistent_collapse(relapse, 0.05, last_epoch=10) is None
    assert persistent_collapse([], 0.05, last_epoch=10) is None
