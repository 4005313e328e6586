"""Sharpness and contrast family: over-sharpening and contrast reduction."""

from __future__ import annotations

import torch
from torch import Tensor

from data.degradations.ops import gaussian_filter, rgb_to_ycbcr, ycbcr_to_rgb
from data.degradations.randomness import RandomSource

# Width of the unsharp mask's blur: wide enough for visible halos at 224 pixels.
_UNSHARP_SIGMA = 2.0


def high_sharpen(x: Tensor, amount: float, rng: RandomSource) -> Tensor:
    """Unsharp masking of luma with gain `amount`: overshoot and halos along edges."""
    ycc = rgb_to_ycbcr(x)
    y = ycc[:, :1]
    sharpened = y + amount * (y - gaussian_filter(y, _UNSHARP_SIGMA))
    return ycbcr_to_rgb(torch.cat([sharpened, ycc[:, 1:]], dim=1))


def contrast_change(x: Tensor, half_range: float, rng: RandomSource) -> Tensor:
    """Compress the value range [0, 1] linearly into [0.5 - half_range, 0.5 + half_range]."""
    return 0.5 + 2.0 * half_range * (x - 0.5)
