"""Scenes for the demo datasets: photos shipped in installed packages, degraded synthetically.

Independent of `data/degradations` (the training-time, batched tensor degradations): the demo
only needs simple PIL/numpy distortions whose severity in [0, 1] sets the demo MOS.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from data.rows import DatasetError

# (package, file inside the package): colour photographs
COLOR_PHOTOS = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/rocket.jpg"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/ihc.png"),
    ("skimage", "data/retina.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
# grayscale photographs and textures, tinted into colour scenes
GRAY_PHOTOS = (
    ("skimage", "data/camera.png"),
    ("skimage", "data/moon.png"),
    ("skimage", "data/brick.png"),
    ("skimage", "data/grass.png"),
    ("skimage", "data/gravel.png"),
)
MIN_SOURCES = 4

Degradation = Callable[[Image.Image, float, np.random.Generator], Image.Image]


def _package_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def load_sources() -> list[Image.Image]:
    """Source photos (RGB) found in the installed packages; grayscale ones are tinted."""
    tints = [((20, 10, 40), (250, 230, 190)), ((0, 30, 20), (200, 250, 220))]
    sources = []
    for i, (package, relative) in enumerate(COLOR_PHOTOS + GRAY_PHOTOS):
        path = _package_file(package, relative)
        if path is None:
            continue
        with Image.open(path) as img:
            if (package, relative) in GRAY_PHOTOS:
                dark, light = tints[i % len(tints)]
                sources.append(ImageOps.colorize(img.convert("L"), dark, light))
            else:
                sources.append(img.convert("RGB"))
    if len(sources) < MIN_SOURCES:
        raise DatasetError(
            f"demo data needs at least {MIN_SOURCES} sample photos from scikit-image, "
            f"scikit-learn or matplotlib, found {len(sources)}; install requirements_qualiclip.txt"
        )
    return sources


def make_scene(
    sources: list[Image.Image], size: tuple[int, int], rng: np.random.Generator
) -> Image.Image:
    """A random crop (position, scale, mirror) of a random source photo resized to `size`."""
    source = sources[int(rng.integers(len(sources)))]
    width, height = size
    aspect = width / height
    box_w = min(source.width, source.height * aspect)
    scale = rng.uniform(0.45, 1.0)
    box_w, box_h = box_w * scale, box_w * scale / aspect
    left = rng.uniform(0, source.width - box_w)
    top = rng.uniform(0, source.height - box_h)
    scene = source.resize(
        size, Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h), reducing_gap=2
    )
    return ImageOps.mirror(scene) if rng.random() < 0.5 else scene


def _gaussian_blur(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius=0.2 + 5.0 * s))


def _motion_blur(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    length = 1 + round(24 * s)
    x = np.asarray(img, dtype=np.float32)
    padded = np.pad(x, ((0, 0), (length, length), (0, 0)), mode="edge")
    cumulative = np.cumsum(padded, axis=1)  # running sum gives a box average along rows
    half = length // 2
    start = length - half - 1
    window = cumulative[:, start + length : start + length + x.shape[1]]
    window = window - cumulative[:, start : start + x.shape[1]]
    return _to_image(window / length)


def _gaussian_noise(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    x = np.asarray(img, dtype=np.float32)
    return _to_image(x + rng.standard_normal(x.shape, dtype=np.float32) * (50.0 * s))


def _impulse_noise(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    x = np.array(img)
    hit = rng.random(x.shape[:2]) < 0.12 * s
    x[hit] = np.where(rng.random((int(hit.sum()), 1)) < 0.5, 0, 255)
    return Image.fromarray(x)


def _jpeg(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=max(2, round(95 - 92 * s)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def _contrast_change(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Contrast(img).enhance(1.0 - 0.85 * s)


def _color_saturation(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Color(img).enhance(1.0 - s)


def _pixelate(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    factor = 1.0 + 15.0 * s
    small = (max(1, round(img.width / factor)), max(1, round(img.height / factor)))
    return img.resize(small, Image.Resampling.BOX).resize(img.size, Image.Resampling.NEAREST)


def _quantization(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    levels = max(2, round(48 - 45 * s))
    return _apply_curve(img, np.round(np.linspace(0.0, 1.0, 256) * (levels - 1)) / (levels - 1))


def _brighten(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    return _apply_curve(img, np.linspace(0.0, 1.0, 256) ** (1.0 / (1.0 + 3.0 * s)))


def _darken(img: Image.Image, s: float, rng: np.random.Generator) -> Image.Image:
    return _apply_curve(img, np.linspace(0.0, 1.0, 256) ** (1.0 + 3.0 * s))


def _apply_curve(img: Image.Image, curve: np.ndarray) -> Image.Image:
    """Map every channel through a tone curve given on [0, 1] at the 256 input levels."""
    table = np.clip(np.round(curve * 255.0), 0, 255).astype(int).tolist()
    return img.point(table * 3)


def _to_image(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(x), 0, 255, out=x).astype(np.uint8))


DEGRADATIONS: dict[str, Degradation] = {
    "gaussian_blur": _gaussian_blur,
    "motion_blur": _motion_blur,
    "gaussian_noise": _gaussian_noise,
    "impulse_noise": _impulse_noise,
    "jpeg": _jpeg,
    "contrast_change": _contrast_change,
    "color_saturation": _color_saturation,
    "pixelate": _pixelate,
    "quantization": _quantization,
    "brighten": _brighten,
    "darken": _darken,
}
# how much a fully severe distortion of each kind lowers quality (1 = to the bottom)
IMPACT = {name: 1.0 for name in DEGRADATIONS} | {
    "color_saturation": 0.6,
    "contrast_change": 0.8,
    "brighten": 0.8,
}


def degrade(
    img: Image.Image, name: str, severity: float, rng: np.random.Generator
) -> tuple[Image.Image, float]:
    """Apply one named distortion at `severity` in [0, 1]; return it and its quality in [0, 1]."""
    severity = float(np.clip(severity, 0.0, 1.0))
    return DEGRADATIONS[name](img, severity, rng), 1.0 - IMPACT[name] * severity
