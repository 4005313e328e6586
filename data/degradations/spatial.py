"""Spatial family: jitter, non-eccentricity patches, pixelation, quantisation, colour blocks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from data.degradations.ops import resample, shift_grid
from data.degradations.randomness import RandomSource

# KADID images are 512 x 384; patch and block sizes scale with the image's side so their share
# of the picture matches at any crop size.
_KADID_AREA = 512 * 384
_PATCH_SIZE = 16
_BLOCK_SIZE = 32
# Most patches / blocks of the level table; the random draws always cover this many so that a
# higher level adds squares on top of the lower level's ones.
_MAX_PATCHES = 100
_MAX_BLOCKS = 10
# The KADID jitter scatters pixels in five passes of `amount` pixels each; one pass of
# sqrt(5) * amount gives the same spread.
_JITTER_PASSES = 5


def _scaled_size(base: int, h: int, w: int) -> int:
    return min(h, w, max(2, round(base * math.sqrt(h * w / _KADID_AREA))))


def _first_cover(top: Tensor, left: Tensor, size: int, h: int, w: int) -> Tensor:
    """(N, H * W) index of the first of K squares (N, K) covering each pixel; K where none.

    Earlier squares stay on top, so adding squares never repaints pixels already changed.
    """
    n, k = top.shape
    d = torch.arange(size, device=top.device)
    rows = (top[..., None] + d) * w  # (N, K, size)
    cols = left[..., None] + d
    index = (rows[..., :, None] + cols[..., None, :]).reshape(n, -1)  # (N, K * size * size)
    square = torch.arange(k, device=top.device).repeat_interleave(size * size).expand(n, -1)
    owner = torch.full((n, h * w), k, dtype=torch.long, device=top.device)
    return owner.scatter_reduce_(1, index, square, reduce="amin")


def _start(u: Tensor, room: int) -> Tensor:
    # Uniform integer start in [0, room] from uniform [0, 1) values.
    return (u * (room + 1)).long().clamp(max=room)


def jitter(x: Tensor, amount: float, rng: RandomSource) -> Tensor:
    """Every pixel read from a random nearby position (Gaussian offsets, bilinear)."""
    _, _, h, w = x.shape
    spread = amount * math.sqrt(_JITTER_PASSES)
    offsets = spread * rng.normal(h, w, 2)  # (N, H, W, 2)
    return resample(x, shift_grid(offsets, h, w))


def non_eccentricity_patch(x: Tensor, count: int, rng: RandomSource) -> Tensor:
    """`count` small patches copied over their neighbourhood (offsets up to half a patch)."""
    n, c, h, w = x.shape
    size = _scaled_size(_PATCH_SIZE, h, w)
    u = rng.uniform(max(count, _MAX_PATCHES), 4)[:, :count]
    src_y = _start(u[..., 0], h - size)
    src_x = _start(u[..., 1], w - size)
    dst_y = (src_y + ((u[..., 2] - 0.5) * size).round().long()).clamp(0, h - size)
    dst_x = (src_x + ((u[..., 3] - 0.5) * size).round().long()).clamp(0, w - size)
    owner = _first_cover(dst_y, dst_x, size, h, w)
    moved = (dst_y - src_y) * w + (dst_x - src_x)  # linear offset, source to destination
    shift = torch.cat([moved, torch.zeros_like(moved[:, :1])], dim=1)  # uncovered pixels: 0
    source = torch.arange(h * w, device=x.device) - torch.gather(shift, 1, owner)
    out = torch.gather(x.flatten(2), 2, source.unsqueeze(1).expand(-1, c, -1))
    return out.view(n, c, h, w)


def pixelate(x: Tensor, strength: float, rng: RandomSource) -> Tensor:
    """Downscale by 0.95 - strength ** 0.6 (area) and upscale back with nearest neighbours."""
    _, _, h, w = x.shape
    z = 0.95 - strength**0.6
    small = F.interpolate(x, size=(max(1, int(h * z)), max(1, int(w * z))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


def quantization(x: Tensor, levels: float, rng: RandomSource) -> Tensor:
    """Uniform quantisation of every channel to `levels` grey levels."""
    steps = levels - 1.0
    return torch.round(x * steps) / steps


def color_block(x: Tensor, count: int, rng: RandomSource) -> Tensor:
    """`count` opaque squares of random colours at random places."""
    n, c, h, w = x.shape
    size = _scaled_size(_BLOCK_SIZE, h, w)
    u = rng.uniform(max(count, _MAX_BLOCKS), 5)[:, :count]
    owner = _first_cover(_start(u[..., 0], h - size), _start(u[..., 1], w - size), size, h, w)
    palette = torch.cat([u[..., 2:], torch.zeros(n, 1, c, dtype=x.dtype, device=x.device)], 1)
    colour = torch.gather(palette, 1, owner.unsqueeze(-1).expand(-1, -1, c))  # (N, HW, 3)
    colour = colour.transpose(1, 2).reshape(n, c, h, w)
    return torch.where((owner < count).view(n, 1, h, w), colour, x)
