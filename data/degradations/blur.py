"""Blur family: Gaussian, lens (disk) and motion (line) blur."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from data.degradations.ops import filter2d, gaussian_filter
from data.degradations.randomness import RandomSource

# Sub-pixel samples per axis used to measure how much of a kernel pixel the disk covers.
_DISK_SUPERSAMPLING = 8


def gaussian_blur(x: Tensor, sigma: float, rng: RandomSource) -> Tensor:
    """Gaussian blur with standard deviation `sigma` pixels."""
    return gaussian_filter(x, sigma)


def disk_kernel(radius: float, like: Tensor) -> Tensor:
    """Normalised disk of `radius` pixels, edge pixels weighted by the area the disk covers."""
    half = math.ceil(radius)
    s = _DISK_SUPERSAMPLING
    sub = (torch.arange(s, dtype=like.dtype, device=like.device) + 0.5) / s - 0.5
    centres = torch.arange(-half, half + 1, dtype=like.dtype, device=like.device)
    pos = (centres[:, None] + sub[None, :]).reshape(-1)  # (k * s,) sample coordinates
    inside = (pos[:, None] ** 2 + pos[None, :] ** 2 <= radius**2).to(like.dtype)
    k = 2 * half + 1
    cover = inside.view(k, s, k, s).mean(dim=(1, 3))
    return cover / cover.sum()


def lens_blur(x: Tensor, radius: float, rng: RandomSource) -> Tensor:
    """Out-of-focus blur: convolution with a disk of `radius` pixels."""
    return filter2d(x, disk_kernel(radius, x))


def line_kernels(length: float, angles: Tensor) -> Tensor:
    """One normalised line kernel (N, k, k) of `length` pixels per angle (N,) in radians.

    Each tap weighs 1 - its distance to the centred segment, so short lines still blur.
    """
    half = math.ceil(length / 2) + 1
    t = torch.arange(-half, half + 1, dtype=angles.dtype, device=angles.device)
    py, px = torch.meshgrid(t, t, indexing="ij")  # (k, k)
    ux = torch.cos(angles)[:, None, None]
    uy = torch.sin(angles)[:, None, None]
    along = (px * ux + py * uy).clamp(-length / 2, length / 2)  # projection onto the segment
    dist = torch.hypot(px - along * ux, py - along * uy)
    w = (1.0 - dist).clamp(min=0.0)
    return w / w.sum(dim=(1, 2), keepdim=True)


def motion_blur(x: Tensor, length: float, rng: RandomSource) -> Tensor:
    """Linear motion blur over `length` pixels in a random direction per image."""
    angles = rng.per_image() * math.pi
    return filter2d(x, line_kernels(length, angles))
