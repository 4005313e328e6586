"""Loader benchmark: decoding source JPEGs versus reading the resized-image cache."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import IQACropDataset
from data.rows import Row

SOURCE_SIZE = (1024, 768)  # (W, H): the size of KonIQ-10k's source JPEGs
KONIQ_POLICY = ResizePolicy("fixed", (512, 384))


def make_jpegs(folder: Path, n: int, size: tuple[int, int] = SOURCE_SIZE, seed: int = 0
               ) -> list[Path]:
    """Write `n` photo-like JPEGs (smooth colour fields with texture) of `size` (W, H)."""
    rng = np.random.default_rng(seed)
    w, h = size
    paths = []
    for i in range(n):
        coarse = rng.integers(0, 256, size=(h // 64, w // 64, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
        texture = rng.normal(0, 12, size=(h, w, 1))
        pixels = np.clip(smooth + texture, 0, 255).astype(np.uint8)
        path = folder / f"img_{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def _images_per_s(dataset: IQACropDataset, passes: int) -> float:
    """Items per second of `dataset[i]` over `passes` full passes (epochs 1..passes)."""
    start = time.perf_counter()
    for epoch in range(1, passes + 1):
        dataset.set_epoch(epoch)
        for i in range(len(dataset)):
            dataset[i]
    return passes * len(dataset) / (time.perf_counter() - start)


def bench_loader(n_images: int, patches: int, crop_size: int, passes: int = 1) -> dict:
    """Images per second through IQACropDataset without cache (decode) and with the ImageCache."""
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        paths = make_jpegs(root / "images", n_images)
        rows = [Row(path=p, mos=50.0, split="train", group=p.name, name=p.name) for p in paths]

        def dataset(cache: ImageCache) -> IQACropDataset:
            return IQACropDataset(rows, KONIQ_POLICY, cache, crop_size=crop_size,
                                  patches=patches, train=True, seed=0)

        cold = _images_per_s(dataset(ImageCache(None)), passes)
        cached_set = dataset(ImageCache(root / "cache"))
        _images_per_s(cached_set, 1)  # fills the cache; later epochs only read it
        cached = _images_per_s(cached_set, passes)
    return {
        "loader_images_per_s_cold": cold,
        "loader_images_per_s_cached": cached,
        "loader_cache_speedup": cached / cold,
        "loader_settings": {"n_images": n_images, "source_size": list(SOURCE_SIZE),
                            "resize": "fixed 512x384", "patches": patches,
                            "crop_size": crop_size, "passes": passes, "workers": 0},
    }
