"""Colour family: colour diffusion, shift, quantisation and (de)saturation."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from data.degradations.ops import (
    gaussian_filter,
    luma,
    pad_edges,
    resample,
    rgb_to_ycbcr,
    shift_grid,
    ycbcr_to_rgb,
)
from data.degradations.randomness import RandomSource

# Blur of the gradient map that decides where the shifted channel shows (KADID: sigma 4).
_EDGE_SIGMA = 4.0
# Pixels per image that fit the palette, and Lloyd iterations; the final assignment uses all
# pixels. Distances for at most this many (pixel, colour) pairs are held at once.
_PALETTE_SAMPLES = 4096
_KMEANS_ITERATIONS = 8
_ASSIGN_CHUNK = 2**24


def _scale_chroma(x: Tensor, factor: float) -> Tensor:
    y = luma(x)
    return y + factor * (x - y)


def color_saturation(x: Tensor, factor: float, rng: RandomSource) -> Tensor:
    """Scale the chroma by `factor` < 1 (0 = grey, negative = complementary hues)."""
    return _scale_chroma(x, factor)


def color_oversaturation(x: Tensor, factor: float, rng: RandomSource) -> Tensor:
    """Scale the chroma by `factor` > 1 (garish, clipped colours)."""
    return _scale_chroma(x, factor)


def color_diffusion(x: Tensor, amount: float, rng: RandomSource) -> Tensor:
    """Colours bleed across edges: chroma blurred with sigma 1.5 * amount + 2 pixels."""
    ycc = rgb_to_ycbcr(x)
    chroma = gaussian_filter(ycc[:, 1:], 1.5 * amount + 2.0)
    return ycbcr_to_rgb(torch.cat([ycc[:, :1], chroma], dim=1))


def _edge_strength(x: Tensor) -> Tensor:
    # Smoothed gradient magnitude of luma, scaled to [0, 1] per image: (N, 1, H, W).
    g = pad_edges(luma(x), 1, 1, 1, 1)
    gx = (g[..., 1:-1, 2:] - g[..., 1:-1, :-2]) / 2
    gy = (g[..., 2:, 1:-1] - g[..., :-2, 1:-1]) / 2
    e = gaussian_filter(torch.hypot(gx, gy), _EDGE_SIGMA)
    lo = e.amin(dim=(2, 3), keepdim=True)
    hi = e.amax(dim=(2, 3), keepdim=True)
    return (e - lo) / (hi - lo).clamp(min=1e-8)


def color_shift(x: Tensor, amount: float, rng: RandomSource) -> Tensor:
    """Green channel misregistered by `amount` pixels in a random direction, mostly at edges."""
    _, _, h, w = x.shape
    angle = rng.per_image() * (2 * math.pi)
    offsets = amount * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (N, 2)
    green = x[:, 1:2]
    shifted = resample(green, shift_grid(offsets, h, w))
    e = _edge_strength(x)
    mixed = e * shifted + (1.0 - e) * green
    return torch.cat([x[:, :1], mixed, x[:, 2:]], dim=1)


def _nearest_colour(pixels: Tensor, palette: Tensor) -> Tensor:
    # pixels (N, P, 3), palette (N, K, 3) -> index (N, P) of the closest palette colour.
    # |p - c|^2 up to the |p|^2 term, which does not change the closest colour.
    sq = (palette * palette).sum(-1).unsqueeze(1)  # (N, 1, K)
    return torch.baddbmm(sq, pixels, palette.transpose(1, 2), alpha=-2.0).argmin(dim=-1)


def color_quantization(x: Tensor, colours: int, rng: RandomSource) -> Tensor:
    """Reduce each image to a palette of `colours` colours fitted by k-means (no dithering)."""
    n, c, h, w = x.shape
    pixels = x.flatten(2).transpose(1, 2)  # (N, HW, 3)
    pick = (rng.uniform(_PALETTE_SAMPLES) * (h * w)).long().clamp(max=h * w - 1)
    samples = torch.gather(pixels, 1, pick.unsqueeze(-1).expand(-1, -1, c))
    palette = samples[:, :colours].clone()  # the same seed gives nested starting palettes
    for _ in range(_KMEANS_ITERATIONS):
        index = _nearest_colour(samples, palette)
        sums = torch.zeros_like(palette).scatter_add_(1, index.unsqueeze(-1).expand(-1, -1, c),
                                                      samples)
        counts = torch.zeros(n, colours, 1, dtype=x.dtype, device=x.device)
        counts.scatter_add_(1, index.unsqueeze(-1), torch.ones_like(samples[..., :1]))
        palette = torch.where(counts > 0, sums / counts.clamp(min=1), palette)
    step = max(1, _ASSIGN_CHUNK // (h * w * colours))
    quantized = [
        torch.gather(pal, 1, _nearest_colour(pix, pal).unsqueeze(-1).expand(-1, -1, c))
        for pix, pal in zip(pixels.split(step), palette.split(step), strict=True)
    ]
    return torch.cat(quantized).transpose(1, 2).reshape(n, c, h, w)

