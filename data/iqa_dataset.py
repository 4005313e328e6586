"""Crop datasets: labelled multi-crop items for fine-tuning, overlapping pairs for pretraining."""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common.errors import InvalidValueError
from data.images import ImageCache, ImageDecodeError, ResizePolicy
from data.rows import DatasetError, Row

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_TRAIN_STREAM, _EVAL_STREAM, _PAIR_STREAM = 1, 2, 3


def _rng(*entropy: int) -> np.random.Generator:
    return np.random.default_rng([int(v) % 2**32 for v in entropy])


def content_seed(image: np.ndarray) -> int:
    """A 32-bit seed from an image's pixels: the same image gets the same evaluation crops
    wherever it sits in a list, in a dataset or a folder, and on every rank."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=8)
    digest.update(str(image.shape).encode())
    return int.from_bytes(digest.digest()[:4], "little")


def _to_tensor(crops: list[np.ndarray]) -> torch.Tensor:
    """(P, H, W, 3) uint8 crops -> contiguous uint8 tensor (P, 3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2)))


class _CropSource(Dataset, ABC):
    """Shared parts: decode through the cache once per item, epoch and bad-image bookkeeping.

    The epoch and the bad-image flags live in shared-memory tensors, so DataLoader workers
    (persistent or not) see `set_epoch` and each unreadable file is logged once per run.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        policy: ResizePolicy,
        cache: ImageCache | None,
        crop_size: int,
        seed: int,
    ) -> None:
        if crop_size <= 0:
            raise InvalidValueError(f"crop_size must be positive, got {crop_size}")
        self.paths = [Path(p) for p in paths]
        self.policy = policy
        self.cache = cache if cache is not None else ImageCache(None)
        self.crop_size = crop_size
        self.seed = seed
        self._epoch = torch.zeros(1, dtype=torch.long).share_memory_()
        self._bad = torch.zeros(len(self.paths), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        """Number of images."""
        return len(self.paths)

    @property
    def epoch(self) -> int:
        """The epoch whose random crops are drawn."""
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch for training crops (call before iterating the DataLoader)."""
        self._epoch.fill_(int(epoch))

    def bad_images(self) -> list[Path]:
        """Images that failed to decode so far (in this process or any DataLoader worker)."""
        return [self.paths[i] for i in torch.nonzero(self._bad).flatten().tolist()]

    def _decode(self, index: int) -> np.ndarray | None:
        """(H, W, 3) uint8 with short side >= crop_size, or None for an undecodable file."""
        try:
            return self.cache.load(self.paths[index], self.policy, min_side=self.crop_size)
        except ImageDecodeError as exc:
            if not bool(self._bad[index]):
                self._bad[index] = True
                logger.warning("skipping an unreadable image: %s", exc)
            return None

    def placeholder(self) -> dict:
        """A zero item shaped like a real one, standing in for a batch with no readable image."""
        return {"image": torch.zeros(self.item_shape, dtype=torch.uint8), "index": -1, "name": ""}

    @property
    @abstractmethod
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one item's crops (crops, 3, crop, crop)."""

    def _crop(self, image: np.ndarray, top: int, left: int, flip: bool) -> np.ndarray:
        crop = image[top : top + self.crop_size, left : left + self.crop_size]
        return crop[:, ::-1] if flip else crop


class IQACropDataset(_CropSource):
    """Labelled images as P crops each: random crops and flips in training, fixed crops in eval."""

    def __init__(
        self,
        rows: Sequence[Row],
        policy: ResizePolicy,
        cache: ImageCache | None,
        crop_size: int = 224,
        patches: int = 1,
        train: bool = True,
        seed: int = 0,
    ) -> None:
        """Crops of `crop_size` from images resized by `policy` (through `cache`)."""
        if patches <= 0:
            raise InvalidValueError(f"patches must be positive, got {patches}")
        self.rows = list(rows)
        super().__init__([row.path for row in self.rows], policy, cache, crop_size, seed)
        self.patches = patches
        self.train = train

    @property
    def item_shape(self) -> tuple[int, ...]:
        """(P, 3, crop, crop)."""
        return (self.patches, 3, self.crop_size, self.crop_size)

    def placeholder(self) -> dict:
        """A zero item with MOS 0, shaped like a real one."""
        return {**super().placeholder(), "mos": torch.zeros((), dtype=torch.float32)}

    def _positions(self, index: int, image: np.ndarray) -> list[tuple[int, int, bool]]:
        """(top, left, flip) of the image's `patches` crops: the epoch's (training), or fixed by
        the image's content alone (evaluation), so its position in the list does not matter."""
        if self.train:
            rng = _rng(self.seed, index, self.epoch, _TRAIN_STREAM)
        else:
            rng = _rng(self.seed, content_seed(image), _EVAL_STREAM)
        height, width = image.shape[:2]
        tops = rng.integers(0, height - self.crop_size + 1, size=self.patches)
        lefts = rng.integers(0, width - self.crop_size + 1, size=self.patches)
        flips = rng.random(self.patches) < 0.5 if self.train else np.zeros(self.patches, bool)
        return list(zip(tops, lefts, flips, strict=True))

    def __getitem__(self, index: int) -> dict | None:
        """dict(image (P, 3, crop, crop) uint8, mos float32 scalar, index, name) or None."""
        image = self._decode(index)
        if image is None:
            return None
        positions = self._positions(index, image)
        return self._item(index, [self._crop(image, *where) for where in positions])

    def _item(self, index: int, crops: list[np.ndarray]) -> dict:
        row = self.rows[index]
        return {
            "image": _to_tensor(crops),
            "mos": torch.tensor(row.mos, dtype=torch.float32),
            "index": index,
            "name": row.name,
        }


class IQACropSamples(IQACropDataset):
    """Training crops as separate samples, as HyperIQA: item k is crop k % P of image k // P.

    Shuffled, a batch then mixes crops of many images and its size counts crops; the crops of
    an image in an epoch are those IQACropDataset would give it, one per item.
    """

    def __len__(self) -> int:
        """Number of crops: images x patches."""
        return len(self.rows) * self.patches

    @property
    def item_shape(self) -> tuple[int, ...]:
        """(1, 3, crop, crop): one crop per item."""
        return (1, 3, self.crop_size, self.crop_size)

    def __getitem__(self, sample: int) -> dict | None:
        """dict(image (1, 3, crop, crop) uint8, mos, index of the image, name) or None."""
        index, which = divmod(sample, self.patches)
        image = self._decode(index)
        if image is None:
            return None
        where = self._positions(index, image)[which]
        return self._item(index, [self._crop(image, *where)])


class UnlabeledPairDataset(_CropSource):
    """Unlabelled images as two overlapping random crops each (QualiCLIP pretraining).

    With `views` > 1 every image gives that many independent crop pairs per epoch (item i is
    view i // len(paths) of image i % len(paths)); view 0 is the pair of `views` = 1.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        policy: ResizePolicy,
        cache: ImageCache | None,
        crop_size: int = 224,
        seed: int = 0,
        views: int = 1,
    ) -> None:
        """Pairs of `crop_size` crops from images resized by `policy` (through `cache`)."""
        super().__init__(paths, policy, cache, crop_size, seed)
        if views <= 0:
            raise InvalidValueError(f"views must be positive, got {views}")
        self.views = views

    def __len__(self) -> int:
        """Number of crop pairs per epoch: images x views."""
        return len(self.paths) * self.views

    @property
    def item_shape(self) -> tuple[int, ...]:
        """(2, 3, crop, crop)."""
        return (2, 3, self.crop_size, self.crop_size)

    def __getitem__(self, index: int) -> dict | None:
        """dict(image (2, 3, crop, crop) uint8, index, name) or None for an unreadable image."""
        view, index = divmod(index, len(self.paths))
        image = self._decode(index)
        if image is None:
            return None
        extra = (view,) if view else ()  # view 0 keeps the crops of a single-view run
        rng = _rng(self.seed, index, self.epoch, _PAIR_STREAM, *extra)
        height, width = image.shape[:2]
        size = self.crop_size
        top = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
        # the second crop is shifted by at most half a crop, so the two always overlap
        shift = size // 2
        top2 = int(np.clip(top + rng.integers(-shift, shift + 1), 0, height - size))
        left2 = int(np.clip(left + rng.integers(-shift, shift + 1), 0, width - size))
        flip = bool(rng.random() < 0.5)
        crops = [self._crop(image, top, left, flip), self._crop(image, top2, left2, flip)]
        return {"image": _to_tensor(crops), "index": index, "name": self.paths[index].name}


def collate_crops(batch: Sequence[dict | None]) -> dict | None:
    """Stack items, dropping unreadable ones (None); None when the whole batch was unreadable."""
    items = [item for item in batch if item is not None]
    if not items:
        return None
    out = {
        "image": torch.stack([item["image"] for item in items]),  # (B, P, 3, H, W) uint8
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
        "name": [item["name"] for item in items],
        "n_skipped": len(batch) - len(items),
    }
    if "mos" in items[0]:
        out["mos"] = torch.stack([item["mos"] for item in items])
    return out


class FixedSizeCollate:
    """Training collate that keeps every batch at the size the sampler gave it.

    Unreadable items (None) are replaced by repeats of the batch's readable ones, so a partly
    unreadable batch has the usual shape (no recompile under --compile). A batch with no readable
    item becomes `placeholder` items marked "empty": True, which the training loop steps with a
    zero loss under DDP so every rank's collectives still pair up. "n_skipped" counts the
    unreadable items either way.
    """

    def __init__(self, placeholder: dict) -> None:
        self.placeholder = placeholder

    def __call__(self, batch: Sequence[dict | None]) -> dict:
        """Stack `batch` into one dict of len(batch) items (see the class docstring)."""
        items = [item for item in batch if item is not None]
        n_bad = len(batch) - len(items)
        if items:
            filled = items + [items[i % len(items)] for i in range(n_bad)]
        else:
            filled = [self.placeholder] * len(batch)
        out = collate_crops(filled)
        out.update(n_skipped=n_bad, empty=not items)
        return out


def list_images(folder: str | Path) -> list[Path]:
    """All image files under `folder` (recursive, sorted); DatasetError when there are none."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root} (expected a folder of images)")
    paths = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not paths:
        raise DatasetError(
            f"no images found under {root}: expected files ending in {', '.join(IMAGE_SUFFIXES)}"
        )
    return paths
