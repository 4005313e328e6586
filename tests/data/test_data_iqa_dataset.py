"""Crop datasets: one decode per item, seeded crops, skipped unreadable images, collation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import (
    FixedSizeCollate,
    IQACropDataset,
    IQACropSamples,
    UnlabeledPairDataset,
    collate_crops,
    list_images,
)
from data.rows import DatasetError, Row
from tests.data.conftest import make_image

POLICY = ResizePolicy("fixed", (128, 96))
CROP = 64


@pytest.fixture
def rows(tmp_path: Path) -> list[Row]:
    made = []
    for i in range(6):
        path = make_image(tmp_path / "img" / f"{i}.png", size=(150, 110), seed=i)
        made.append(Row(path, float(i * 10), "train", path.name, path.name))
    return made


def _dataset(rows: list[Row], cache_dir: Path | None, **kwargs: object) -> IQACropDataset:
    return IQACropDataset(rows, POLICY, ImageCache(cache_dir), crop_size=CROP, **kwargs)


def test_item_shapes_and_types(rows):
    item = _dataset(rows, None, patches=3)[2]
    assert item["image"].shape == (3, 3, CROP, CROP) and item["image"].dtype == torch.uint8
    assert item["image"].is_contiguous()
    assert item["mos"].dtype == torch.float32 and item["mos"].ndim == 0 and item["mos"] == 20.0
    assert item["index"] == 2 and item["name"] == "2.png"


def test_each_item_is_decoded_once_for_all_its_crops(rows, monkeypatch):
    dataset = _dataset(rows, None, patches=8)
    calls = []
    original = dataset.cache.load
    monkeypatch.setattr(dataset.cache, "load", lambda *a, **k: calls.append(1) or original(*a, **k))
    for i in range(len(rows)):
        dataset[i]
    assert len(calls) == len(rows)


def test_eval_crops_are_fixed(rows, tmp_path):
    a = _dataset(rows, tmp_path / "cache", patches=4, train=False, seed=5)
    b = _dataset(rows, None, patches=4, train=False, seed=5)
    first = a[1]["image"]
    a.set_epoch(3)
    assert torch.equal(first, a[1]["image"])  # cached and uncached, any epoch: same crops
    assert torch.equal(first, b[1]["image"])
    crops = first.reshape(4, -1)
    assert not all(torch.equal(crops[0], c) for c in crops[1:])  # P different positions


def test_train_crops_are_seeded_by_seed_epoch_and_index(rows):
    a = _dataset(rows, None, patches=4, train=True, seed=1)
    b = _dataset(rows, None, patches=4, train=True, seed=1)
    epoch0 = a[0]["image"]
    assert torch.equal(epoch0, b[0]["image"])
    a.set_epoch(1)
    assert a.epoch == 1
    assert not torch.equal(epoch0, a[0]["image"])
    c = _dataset(rows, None, patches=4, train=True, seed=2)
    assert not torch.equal(epoch0, c[0]["image"])


def test_unreadable_image_is_skipped_and_logged_once(rows, tmp_path, caplog):
    broken = tmp_path / "img" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    bad_rows = [*rows[:2], Row(broken, 1.0, "train", "broken.jpg", "broken.jpg"), rows[2]]
    dataset = _dataset(bad_rows, tmp_path / "cache", patches=2)
    with caplog.at_level(logging.WARNING):
        assert dataset[2] is None
        assert dataset[2] is None
    assert caplog.text.count("broken.jpg") == 1
    assert dataset.bad_images() == [broken]

    batch = collate_crops([dataset[i] for i in range(len(dataset))])
    assert batch["image"].shape == (3, 2, 3, CROP, CROP)
    assert batch["mos"].tolist() == [0.0, 10.0, 20.0]
    assert batch["index"].tolist() == [0, 1, 3] and batch["index"].dtype == torch.long
    assert batch["name"] == ["0.png", "1.png", "2.png"] and batch["n_skipped"] == 1
    assert collate_crops([None, None]) is None


def test_small_images_are_upscaled_to_the_crop(tmp_path):
    path = make_image(tmp_path / "tiny.png", size=(20, 10))
    row = Row(path, 3.0, "test", "tiny.png", "tiny.png")
    dataset = IQACropDataset([row], ResizePolicy("none"), None, crop_size=CROP, train=False)
    assert dataset[0]["image"].shape == (1, 3, CROP, CROP)


def test_loader_workers_follow_set_epoch(rows):
    dataset = _dataset(rows, None, patches=1, train=True)
    expected = {epoch: _dataset(rows, None, patches=1, train=True) for epoch in (0, 1)}
    expected[1].set_epoch(1)
    loader = DataLoader(
        dataset, batch_size=3, num_workers=1, persistent_workers=True, collate_fn=collate_crops
    )
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        images = torch.cat([batch["image"] for batch in loader])
        want = torch.stack([expected[epoch][i]["image"] for i in range(len(rows))])
        assert torch.equal(images, want)


def test_unlabeled_pairs_overlap(tmp_path):
    paths = [make_image(tmp_path / f"{i}.png", size=(200, 160), seed=i) for i in range(3)]
    dataset = UnlabeledPairDataset(paths, ResizePolicy("none"), None, crop_size=CROP, seed=0)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        for i in range(len(paths)):
            item = dataset[i]
            assert item["image"].shape == (2, 3, CROP, CROP) and item["image"].dtype == torch.uint8
            assert item["name"] == f"{i}.png" and "mos" not in item
    batch = collate_crops([dataset[0], None, dataset[2]])
    assert batch["image"].shape == (2, 2, 3, CROP, CROP) and "mos" not in batch
    assert batch["n_skipped"] == 1


def test_views_per_image_add_independent_pairs(tmp_path):
    """views=3: three pairs of every image per epoch; view 0 is the single-view pair."""
    paths = [make_image(tmp_path / f"{i}.png", size=(200, 160), seed=i) for i in range(2)]
    single = UnlabeledPairDataset(paths, ResizePolicy("none"), None, crop_size=CROP, seed=0)
    multi = UnlabeledPairDataset(paths, ResizePolicy("none"), None, crop_size=CROP, seed=0,
                                 views=3)
    assert len(multi) == 6
    items = [multi[i] for i in range(len(multi))]
    assert [item["index"] for item in items] == [0, 1, 0, 1, 0, 1]
    for i in range(2):
        assert torch.equal(items[i]["image"], single[i]["image"])
        views = [items[i + 2 * v]["image"] for v in range(3)]
        assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])
    with pytest.raises(ValueError, match="views must be positive"):
        UnlabeledPairDataset(paths, ResizePolicy("none"), None, crop_size=CROP, views=0)


def test_pair_crops_share_content(tmp_path):
    # a gradient image: each pixel's value encodes its position, so overlap is visible
    yy, xx = np.mgrid[0:160, 0:200]
    pixels = np.stack([xx, yy, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "grid.png")
    dataset = UnlabeledPairDataset([tmp_path / "grid.png"], ResizePolicy("none"), None, CROP)
    for epoch in range(5):
        dataset.set_epoch(epoch)
        a, b = dataset[0]["image"]
        shared = set(map(tuple, a[:2].reshape(2, -1).T.tolist()))
        assert shared & set(map(tuple, b[:2].reshape(2, -1).T.tolist()))


def test_list_images(tmp_path):
    for name in ("b.JPG", "a.png", "sub/c.bmp", "notes.txt"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.png",
        "b.JPG",
        "sub/c.bmp",
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found under"):
        list_images(tmp_path / "empty")
    with pytest.raises(DatasetError, match="image folder not found"):
        list_images(tmp_path / "absent")


def test_training_batches_keep_their_size(tmp_path):
    """FixedSizeCollate: unreadable items become repeats of readable ones (the batch shape never
    changes, so --compile never recompiles); a batch with none readable becomes placeholders
    marked empty, with the dataset's item shape."""
    paths = [make_image(tmp_path / f"{i}.png", size=(200, 160), seed=i) for i in range(2)]
    dataset = UnlabeledPairDataset(paths, ResizePolicy("none"), None, crop_size=CROP, seed=0)
    collate = FixedSizeCollate(dataset.placeholder())
    batch = collate([dataset[0], None, dataset[1], None])
    assert batch["image"].shape == (4, 2, 3, CROP, CROP) and not batch["empty"]
    assert batch["n_skipped"] == 2 and batch["index"].tolist() == [0, 1, 0, 1]
    empty = collate([None, None, None, None])
    assert empty["image"].shape == (4, 2, 3, CROP, CROP) and empty["empty"]
    assert empty["n_skipped"] == 4 and not empty["image"].any()
    rows = [Row(paths[0], 5.0, "train", "0.png", "0.png")]
    labelled = IQACropDataset(rows, ResizePolicy("none"), None, crop_size=CROP, patches=3)
    empty = FixedSizeCollate(labelled.placeholder())([None, None])
    assert empty["image"].shape == (2, 3, 3, CROP, CROP) and empty["mos"].tolist() == [0.0, 0.0]
    samples = IQACropSamples(rows, ResizePolicy("none"), None, crop_size=CROP, patches=3)
    assert FixedSizeCollate(samples.placeholder())([None])["image"].shape == (1, 1, 3, CROP, CROP)


def test_crop_samples_are_the_image_crops_one_per_item(rows):
    images = _dataset(rows, None, patches=4, train=True, seed=3)
    samples = IQACropSamples(rows, POLICY, ImageCache(None), crop_size=CROP, patches=4,
                             train=True, seed=3)
    images.set_epoch(2)
    samples.set_epoch(2)
    assert len(samples) == 4 * len(rows)
    for k in (0, 5, 23):
        item = samples[k]
        index, which = divmod(k, 4)
        assert item["image"].shape == (1, 3, CROP, CROP) and item["index"] == index
        assert item["mos"] == rows[index].mos
        assert torch.equal(item["image"][0], images[index]["image"][which])
