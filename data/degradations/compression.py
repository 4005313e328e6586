"""Compression family: baseline JPEG and a JPEG 2000-like wavelet coder, batched in torch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from data.degradations.ops import device_constant, pad_edges, rgb_to_ycbcr, ycbcr_to_rgb
from data.degradations.randomness import RandomSource

# ITU-T T.81 Annex K quantisation tables (quality 50).
_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)
# Wavelet coder: the quantiser step (8-bit units) is _STEP_PER_RATIO * compression ratio. With
# 1.3, PSNR on 224-pixel photo crops is within 0.3 dB of OpenJPEG's on average at every KADID
# ratio (0.8 dB per image).
_STEP_PER_RATIO = 1.3
_MAX_WAVELET_LEVELS = 5
_MCU = 16  # JPEG 4:2:0 minimum coded unit: 16 x 16 luma pixels


def quantization_table(base: tuple[tuple[int, ...], ...], quality: float, like: Tensor) -> Tensor:
    """The libjpeg scaling of a quality-50 table to `quality` in [1, 100]."""
    q = min(max(quality, 1.0), 100.0)
    scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    scaled = tuple(tuple(min(max(math.floor((v * scale + 50.0) / 100.0), 1), 255) for v in row)
                   for row in base)
    return device_constant(scaled, like.dtype, like.device)


def _dct_2d(like: Tensor) -> Tensor:
    # Orthonormal 8-point DCT-II D; the 2-D transform D @ B @ D.T of a row-major flattened
    # 8 x 8 block is a product with kron(D, D), so whole images go through one matrix product.
    n = torch.arange(8, dtype=like.dtype, device=like.device)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return torch.kron(d, d)


def _code_plane(plane: Tensor, table: Tensor, dct: Tensor) -> Tensor:
    # plane (N, C, H, W) with H, W multiples of 8, level-shifted to [-128, 127].
    n, c, h, w = plane.shape
    blocks = plane.reshape(n, c, h // 8, 8, w // 8, 8).transpose(3, 4)  # (N, C, h/8, w/8, 8, 8)
    coef = blocks.reshape(-1, 64) @ dct.T
    step = table.reshape(64)
    coef = torch.round(coef / step) * step
    blocks = (coef @ dct).view(n, c, h // 8, w // 8, 8, 8)
    return blocks.transpose(3, 4).reshape(n, c, h, w)


def _shift_grid(x: Tensor, top: Tensor, left: Tensor, height: int, width: int) -> Tensor:
    # Per-image window of `height` x `width` starting at row -top, column -left of x (N, C, H, W);
    # pixels outside x repeat its edge. Index arithmetic only: no host synchronisation.
    n, c, h, w = x.shape
    rows = (torch.arange(height, device=x.device) - top[:, None]).clamp(0, h - 1)  # (N, height)
    cols = (torch.arange(width, device=x.device) - left[:, None]).clamp(0, w - 1)  # (N, width)
    x = x.gather(2, rows[:, None, :, None].expand(n, c, height, w))
    return x.gather(3, cols[:, None, None, :].expand(n, c, height, width))


def jpeg(x: Tensor, quality: float, rng: RandomSource) -> Tensor:
    """Baseline JPEG at `quality`: YCbCr 4:2:0, 8 x 8 DCT, scaled standard tables, 8-bit output.

    The 16-pixel coding grid starts at a random offset per image, as in a crop of a JPEG photo:
    a grid always aligned with the crop's corner (and with the encoder's patch grid) would teach
    a detector of blocks at fixed positions that misses them at every other phase.
    """
    h, w = x.shape[-2:]
    offsets = torch.floor(rng.per_image(2) * _MCU).long()  # (N, 2): top, left in 0..15
    top, left = offsets[:, 0], offsets[:, 1]
    canvas_h, canvas_w = -(-(h + _MCU - 1) // _MCU) * _MCU, -(-(w + _MCU - 1) // _MCU) * _MCU
    ycc = _shift_grid(rgb_to_ycbcr(x) * 255.0 - 128.0, top, left, canvas_h, canvas_w)
    dct = _dct_2d(x)
    y = _code_plane(ycc[:, :1], quantization_table(_LUMA_TABLE, quality, x), dct)
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    chroma = _code_plane(chroma, quantization_table(_CHROMA_TABLE, quality, x), dct)
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    coded = torch.cat([y, chroma], dim=1)
    coded = _shift_grid(coded, -top, -left, h, w)  # back to the image's own pixels
    rgb = ycbcr_to_rgb((coded + 128.0) / 255.0)
    return torch.round(rgb.clamp(0.0, 1.0) * 255.0) / 255.0


def _lift(x: Tensor) -> tuple[Tensor, Tensor]:
    # One LeGall 5/3 analysis step along the last axis (even length), symmetric extension.
    even, odd = x[..., 0::2], x[..., 1::2]
    detail = odd - 0.5 * (even + torch.cat([even[..., 1:], even[..., -1:]], dim=-1))
    smooth = even + 0.25 * (torch.cat([detail[..., :1], detail[..., :-1]], dim=-1) + detail)
    return smooth, detail


def _unlift(smooth: Tensor, detail: Tensor) -> Tensor:
    even = smooth - 0.25 * (torch.cat([detail[..., :1], detail[..., :-1]], dim=-1) + detail)
    odd = detail + 0.5 * (even + torch.cat([even[..., 1:], even[..., -1:]], dim=-1))
    return torch.stack([even, odd], dim=-1).flatten(-2)


def _dwt2(x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    low, high = _lift(x)
    ll, lh = _lift(low.transpose(-1, -2))
    hl, hh = _lift(high.transpose(-1, -2))
    return ll.transpose(-1, -2), (lh.transpose(-1, -2), hl.transpose(-1, -2), hh.transpose(-1, -2))


def _idwt2(ll: Tensor, bands: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    lh, hl, hh = (b.transpose(-1, -2) for b in bands)
    low = _unlift(ll.transpose(-1, -2), lh).transpose(-1, -2)
    high = _unlift(hl, hh).transpose(-1, -2)
    return _unlift(low, high)


def _deadzone(c: Tensor, step: float) -> Tensor:
    # Dead-zone scalar quantiser with mid-point reconstruction, as in JPEG 2000 part 1.
    mag = torch.floor(c.abs() / step)
    return torch.where(mag > 0, torch.sign(c) * (mag + 0.5) * step, torch.zeros_like(c))


def jpeg2000(x: Tensor, ratio: float, rng: RandomSource) -> Tensor:
    """JPEG 2000-like coding at compression `ratio`: 5/3 wavelet, dead-zone quantisation.

    Blur and ringing grow with the ratio; the coarser subbands get finer steps, as an
    MSE-optimal rate allocation would give them.
    """
    _, _, h, w = x.shape
    levels = max(1, min(_MAX_WAVELET_LEVELS, int(math.log2(max(min(h, w), 16) / 8))))
    m = 2**levels
    xp = pad_edges(x, 0, (-h) % m, 0, (-w) % m)
    ll = rgb_to_ycbcr(xp) * 255.0 - 128.0
    step = _STEP_PER_RATIO * ratio
    pyramid = []
    for j in range(levels):
        ll, bands = _dwt2(ll)
        pyramid.append(tuple(_deadzone(b, step / 2**j) for b in bands))
    ll = _deadzone(ll, step / 2**levels)
    for bands in reversed(pyramid):
        ll = _idwt2(ll, bands)
    return ycbcr_to_rgb((ll + 128.0) / 255.0)[..., :h, :w]
