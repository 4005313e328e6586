"""Brightness family: brighten, darken, mean shift and a random brighten-or-darken change."""

from __future__ import annotations

import torch
from torch import Tensor

from data.degradations.ops import rgb_to_ycbcr, ycbcr_to_rgb
from data.degradations.randomness import RandomSource


def _tone_curve(x: Tensor, amount: float) -> Tensor:
    # The parabola through (0, 0), (0.5, 0.5 + amount / 2) and (1, 1): lifts (amount > 0) or
    # lowers (amount < 0) the mid-tones while keeping black and white.
    return (x + 2.0 * amount * x * (1.0 - x)).clamp(0.0, 1.0)


def brighten(x: Tensor, amount: float, rng: RandomSource) -> Tensor:
    """Lift the mid-tones: two thirds tone curve per RGB channel, one third on luma only."""
    per_channel = _tone_curve(x, amount)
    ycc = rgb_to_ycbcr(x)
    ycc = torch.cat([_tone_curve(ycc[:, :1], amount), ycc[:, 1:]], dim=1)
    on_luma = ycbcr_to_rgb(ycc).clamp(0.0, 1.0)
    return (2.0 * per_channel + on_luma) / 3.0


def darken(x: Tensor, amount: float, rng: RandomSource) -> Tensor:
    """Lower the mid-tones with a tone curve on every RGB channel."""
    return _tone_curve(x, -amount)


def mean_shift(x: Tensor, shift: float, rng: RandomSource) -> Tensor:
    """Add `shift` to every value, upwards or downwards at random per image."""
    sign = torch.where(rng.per_image() < 0.5, -1.0, 1.0).to(x.dtype)
    return x + shift * sign.view(-1, 1, 1, 1)


def brightness(x: Tensor, amounts: tuple[float, float], rng: RandomSource) -> Tensor:
    """Brighten or darken, chosen at random per image; `amounts` = (brighten, darken)."""
    up = (rng.per_image() < 0.5).view(-1, 1, 1, 1)
    return torch.where(up, brighten(x, amounts[0], rng), darken(x, amounts[1], rng))
