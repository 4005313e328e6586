"""Noise family: white, colour-component, impulse and multiplicative noise, and denoising."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from data.degradations.ops import box_mean, rgb_to_ycbcr, ycbcr_to_rgb
from data.degradations.randomness import RandomSource

# Window radius (5 x 5) of the adaptive Wiener filter used by `denoise`.
_WIENER_RADIUS = 2


def gaussian_noise(x: Tensor, variance: float, rng: RandomSource) -> Tensor:
    """Additive white Gaussian noise of `variance` on every RGB channel."""
    return x + math.sqrt(variance) * rng.normal(*x.shape[1:])


def color_noise(x: Tensor, variance: float, rng: RandomSource) -> Tensor:
    """White Gaussian noise of `variance` added in YCbCr, so it is coloured in RGB."""
    noisy = rgb_to_ycbcr(x) + math.sqrt(variance) * rng.normal(*x.shape[1:])
    return ycbcr_to_rgb(noisy)


def impulse_noise(x: Tensor, density: float, rng: RandomSource) -> Tensor:
    """Salt and pepper: a `density` fraction of the values set to 0 or 1 with equal odds."""
    hit = rng.uniform(*x.shape[1:]) < density
    salt = (rng.uniform(*x.shape[1:]) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


def multiplicative_noise(x: Tensor, variance: float, rng: RandomSource) -> Tensor:
    """Speckle: x + x * n with n Gaussian of `variance`."""
    return x * (1.0 + math.sqrt(variance) * rng.normal(*x.shape[1:]))


def denoise(x: Tensor, variance: float, rng: RandomSource) -> Tensor:
    """White noise of `variance`, then removed by an adaptive Wiener filter (residual + blur)."""
    noisy = (x + math.sqrt(variance) * rng.normal(*x.shape[1:])).clamp(0.0, 1.0)
    mean = box_mean(noisy, _WIENER_RADIUS)
    local_var = (box_mean(noisy * noisy, _WIENER_RADIUS) - mean * mean).clamp(min=0.0)
    gain = (local_var - variance).clamp(min=0.0) / local_var.clamp(min=variance)
    return mean + gain * (noisy - mean)
