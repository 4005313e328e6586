"""Robust image decoding, protocol resizing and the on-disk cache of resized images."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from common.errors import InvalidValueError

logger = logging.getLogger(__name__)

CACHE_VERSION = "1"  # bump when the decode or resize code changes what is stored
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


class ImageDecodeError(RuntimeError):
    """An image file is missing, truncated or not an image PIL can decode."""


@dataclass(frozen=True)
class ResizePolicy:
    """How a dataset's images are resized once before cropping.

    kind "fixed": size = (width, height); "short_side": size = short side in pixels (aspect kept);
    "none": the image is used at its own resolution (size ignored).
    """

    kind: str
    size: tuple[int, int] | int = 0

    def __post_init__(self) -> None:
        """Reject sizes that do not fit the kind."""
        if self.kind == "fixed":
            ok = isinstance(self.size, tuple) and len(self.size) == 2 and min(self.size) > 0
        elif self.kind == "short_side":
            ok = isinstance(self.size, int) and self.size > 0
        else:
            ok = self.kind == "none"
        if not ok:
            raise InvalidValueError(
                f"invalid ResizePolicy({self.kind!r}, {self.size!r}): expected "
                f"('fixed', (width, height)), ('short_side', pixels) or ('none',)"
            )

    def key(self) -> str:
        """Stable text naming the policy (used in cache keys)."""
        if self.kind == "fixed":
            return f"fixed-{self.size[0]}x{self.size[1]}"
        if self.kind == "short_side":
            return f"short-{self.size}"
        return "none"

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """Output (width, height) for an input of (width, height)."""
        if self.kind == "fixed":
            return self.size[0], self.size[1]
        if self.kind == "short_side":
            scale = self.size / min(width, height)
            return max(1, round(width * scale)), max(1, round(height * scale))
        return width, height


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in _WIDE_MODES:
        # 16-bit samples (PNG 'I;16' or 'I'): scale 0..65535 to 0..255
        wide = np.asarray(img, dtype=np.float64)
        gray = np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if img.mode == "F":
        gray = np.clip(np.round(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return img.convert("RGB")


def _draft_target(
    size: tuple[int, int], draft_size: int | tuple[int, int], rotated: bool
) -> tuple[int, int]:
    """Minimum stored (width, height) that still gives `draft_size` after orientation."""
    if isinstance(draft_size, int):
        scale = draft_size / min(size)
        return math.ceil(size[0] * scale), math.ceil(size[1] * scale)
    width, height = draft_size
    return (height, width) if rotated else (width, height)


def load_rgb(path: str | Path, draft_size: int | tuple[int, int] | None = None) -> Image.Image:
    """Decode an image as 8-bit RGB with EXIF orientation applied.

    `draft_size` lets large JPEGs decode at a reduced scale (PIL draft) that is still at least
    that big: an int is a minimum short side, a tuple a minimum (width, height) as displayed.
    Raises ImageDecodeError naming the file when it is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as img:
            if draft_size is not None and img.format == "JPEG":
                rotated = img.getexif().get(0x0112, 1) in _ROTATED
                img.draft(None, _draft_target(img.size, draft_size, rotated))
            img.load()
            return _to_rgb(ImageOps.exif_transpose(img))
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"image file not found: {path}") from exc
    except Exception as exc:  # PIL's format plugins raise many error types on damaged files
        raise ImageDecodeError(
            f"cannot decode image {path}: {exc}. The file is truncated, damaged or not an image; "
            f"replace it or remove it from the labels."
        ) from exc


def resize_for(img: Image.Image, policy: ResizePolicy, min_side: int = 0) -> Image.Image:
    """Resize by the policy, then upscale (aspect kept) when the short side is below `min_side`."""
    width, height = policy.target_size(*img.size)
    if min(width, height) < min_side:
        scale = min_side / min(width, height)
        width = max(min_side, math.ceil(width * scale))
        height = max(min_side, math.ceil(height * scale))
    if (width, height) == img.size:
        return img
    return img.resize((width, height), Image.Resampling.BILINEAR)


def load_resized(path: str | Path, policy: ResizePolicy, min_side: int = 0) -> np.ndarray:
    """Decode and resize one image without any cache; (H, W, 3) uint8."""
    img = load_rgb(path, draft_size=None if policy.kind == "none" else policy.size)
    return np.asarray(resize_for(img, policy, min_side), dtype=np.uint8)


class ImageCache:
    """Resized images stored as .npy under `cache_dir`, keyed by source path, mtime, size, policy.

    A later call (any epoch, any run, any DataLoader worker) reads the .npy instead of decoding
    the source again. `cache_dir=None` decodes every time. Writes are atomic (temp file + rename),
    and a cache folder that cannot be written only disables caching, with one warning.
    """

    def __init__(self, cache_dir: str | Path | None) -> None:
        """Use `cache_dir` (created on first write) or no disk cache when None."""
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self.hits = 0
        self.misses = 0
        self._write_failed = False

    def entry_path(self, path: str | Path, policy: ResizePolicy, min_side: int = 0) -> Path:
        """Where the cached array for this source file and policy lives (the file may not exist)."""
        if self.cache_dir is None:
            raise InvalidValueError("this ImageCache has no cache_dir")
        source = Path(path).resolve()
        st = _stat(source)
        text = f"v{CACHE_VERSION}|{source}|{st.st_mtime_ns}|{st.st_size}|{policy.key()}|{min_side}"
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.npy"

    def load(self, path: str | Path, policy: ResizePolicy, min_side: int = 0) -> np.ndarray:
        """(H, W, 3) uint8 of the resized image, from the cache when present."""
        if self.cache_dir is None:
            _stat(Path(path))
            self.misses += 1
            return load_resized(path, policy, min_side)
        entry = self.entry_path(path, policy, min_side)
        cached = _read_entry(entry)
        if cached is not None:
            self.hits += 1
            return cached
        array = load_resized(path, policy, min_side)
        self.misses += 1
        self._store(entry, array)
        return array

    def _store(self, entry: Path, array: np.ndarray) -> None:
        if self._write_failed:
            return
        tmp = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".", suffix=".npy.tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, entry)
        except OSError as exc:
            self._write_failed = True
            logger.warning(
                "image cache disabled: cannot write to %s (%s); images will be decoded every "
                "epoch. Pass a writable --cache_dir to cache them.",
                self.cache_dir,
                exc,
            )
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"image file not found: {path}") from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot read image {path}: {exc}") from exc


def _read_entry(entry: Path) -> np.ndarray | None:
    """The cached array, or None when absent or unreadable (it is then rebuilt)."""
    try:
        array = np.load(entry, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError):
        logger.warning("ignoring a damaged image-cache file %s; rebuilding it", entry)
        return None
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        return None
    return array
