"""Tensor helpers shared by the degradation families: colour spaces, padding and linear filters."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from common.errors import InvalidValueError

# Full-range BT.601 YCbCr, the JPEG/JFIF convention; chroma is centred on 0.5.
_RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)
_YCBCR_TO_RGB = (
    (1.0, 0.0, 1.402),
    (1.0, -0.344136, -0.714136),
    (1.0, 1.772, 0.0),
)
_CHROMA_OFFSET = (((0.0,),), ((0.5,),), ((0.5,),))  # (3, 1, 1): added to YCbCr's chroma
# Kernels up to this width are applied by direct convolution, wider ones through the FFT, whose
# cost does not grow with the kernel.
_DIRECT_MAX_WIDTH = 9
# Separable Gaussians up to this radius stay in the spatial domain.
_SEPARABLE_MAX_RADIUS = 24


@functools.lru_cache(maxsize=512)
def device_constant(values: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A constant tensor of `values`, copied to `device` once and then reused (never modify it).

    A tensor built from host values on a GPU is a blocking copy; per step that stalls the host.
    """
    with torch.inference_mode(False):  # usable later outside inference mode too
        return torch.tensor(values, dtype=dtype, device=device)


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """Float32 matrix products and convolutions at full precision (no TF32) inside the block.

    Training enables TF32 globally; its 10-bit mantissa would move JPEG coefficients across
    quantisation steps and change the colour transforms, so the degradations opt out.
    """
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _mix(x: Tensor, matrix: tuple[tuple[float, ...], ...]) -> Tensor:
    # (rows, 3) @ (N, 3, H * W): one thin matrix product, faster than einsum or a 1x1 conv.
    m = device_constant(matrix, x.dtype, x.device)
    n, _, h, w = x.shape
    return (m @ x.reshape(n, 3, h * w)).view(n, len(matrix), h, w)


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    """RGB (N, 3, H, W) in [0, 1] to full-range YCbCr with chroma centred on 0.5."""
    out = _mix(x, _RGB_TO_YCBCR)
    return out + device_constant(_CHROMA_OFFSET, x.dtype, x.device)


def ycbcr_to_rgb(x: Tensor) -> Tensor:
    """Inverse of `rgb_to_ycbcr` (no clamping)."""
    centred = x - device_constant(_CHROMA_OFFSET, x.dtype, x.device)
    return _mix(centred, _YCBCR_TO_RGB)


def luma(x: Tensor) -> Tensor:
    """BT.601 luma (N, 1, H, W) of RGB images (N, 3, H, W)."""
    return _mix(x, _RGB_TO_YCBCR[:1])


def pad_edges(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Mirror padding, or edge replication where the image is too small to mirror."""
    h, w = x.shape[-2:]
    mirror = max(top, bottom) < h and max(left, right) < w
    return F.pad(x, (left, right, top, bottom), mode="reflect" if mirror else "replicate")


def gaussian_kernel1d(sigma: float, radius: int, like: Tensor) -> Tensor:
    """Normalised 1-D Gaussian of 2 * radius + 1 taps, on `like`'s device and dtype."""
    t = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_filter(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of every channel with standard deviation `sigma` pixels (mirrored edges)."""
    h, w = x.shape[-2:]
    radius = max(1, min(math.ceil(3.0 * sigma), min(h, w) - 1))
    k = gaussian_kernel1d(sigma, radius, x)
    if radius > _SEPARABLE_MAX_RADIUS:
        return filter2d(x, torch.outer(k, k))
    return _separable(x, k)


def _separable(x: Tensor, k: Tensor) -> Tensor:
    # The same symmetric 1-D kernel along rows, then along columns (mirrored edges).
    c = x.shape[1]
    r = k.shape[0] // 2
    xp = pad_edges(x, r, r, r, r)
    xp = F.conv2d(xp, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(xp, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def filter2d(x: Tensor, kernel: Tensor) -> Tensor:
    """Convolve (N, C, H, W) with one (k, k) kernel or one (N, k, k) kernel per image (odd k)."""
    n, c, h, w = x.shape
    k = kernel.shape[-1]
    if kernel.shape[-2] != k or k % 2 == 0:
        raise InvalidValueError(
            f"filter2d expects a square kernel of odd width, got {kernel.shape}")
    r = k // 2
    xp = pad_edges(x, r, r, r, r)
    if k > _DIRECT_MAX_WIDTH:
        return _fft_filter(xp, kernel, h, w)
    flipped = kernel.flip(-1, -2)  # conv2d correlates; flipping makes it a true convolution
    if kernel.dim() == 2:
        return F.conv2d(xp, flipped.expand(c, 1, k, k), groups=c)
    weight = flipped.repeat_interleave(c, dim=0).unsqueeze(1)  # (N * C, 1, k, k)
    out = F.conv2d(xp.reshape(1, n * c, h + 2 * r, w + 2 * r), weight, groups=n * c)
    return out.view(n, c, h, w)


def _fft_filter(xp: Tensor, kernel: Tensor, h: int, w: int) -> Tensor:
    hp, wp = xp.shape[-2:]
    k = kernel.shape[-1]
    kf = torch.fft.rfft2(kernel, s=(hp, wp))
    if kernel.dim() == 3:
        kf = kf.unsqueeze(1)  # (N, 1, hp, wp // 2 + 1)
    y = torch.fft.irfft2(torch.fft.rfft2(xp) * kf, s=(hp, wp))
    # The circular wrap-around only reaches the first k - 1 rows and columns, which are padding.
    return y[..., k - 1 : k - 1 + h, k - 1 : k - 1 + w].contiguous()


def box_mean(x: Tensor, radius: int) -> Tensor:
    """Mean over a (2r + 1)-square window around every pixel (mirrored edges)."""
    # Summing shifted views is several times faster than a depthwise convolution on the CPU.
    h, w = x.shape[-2:]
    width = 2 * radius + 1
    xp = pad_edges(x, radius, radius, radius, radius)
    rows = xp[..., :w].clone()
    for i in range(1, width):
        rows += xp[..., i : i + w]
    out = rows[..., :h, :].clone()
    for i in range(1, width):
        out += rows[..., i : i + h, :]
    return out / (width * width)


def shift_grid(offsets: Tensor, h: int, w: int) -> Tensor:
    """Sampling grid for `grid_sample` that reads each pixel from pixel + offset.

    `offsets` is (N, 2) for one (dx, dy) per image or (N, H, W, 2) per pixel, in pixels.
    """
    ys = torch.arange(h, dtype=offsets.dtype, device=offsets.device)
    xs = torch.arange(w, dtype=offsets.dtype, device=offsets.device)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
    if offsets.dim() == 2:
        offsets = offsets[:, None, None, :]
    pos = base + offsets
    scale = device_constant((2.0 / w, 2.0 / h), offsets.dtype, offsets.device)
    return (pos + 0.5) * scale - 1.0  # pixel centres for align_corners=False


def resample(x: Tensor, grid: Tensor) -> Tensor:
    """Bilinear resampling with edge replication outside the image."""
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
