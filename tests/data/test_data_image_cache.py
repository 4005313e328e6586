"""The on-disk cache of resized images: hits never decode, keys follow the source and policy."""

from __future__ import annotations

import os

import numpy as np
import pytest

import data.images
from data.images import ImageCache, ImageDecodeError, ResizePolicy
from tests.data.conftest import make_image

POLICY = ResizePolicy("short_side", 256)


def _refuse_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the source image was decoded again")

    monkeypatch.setattr(data.images, "load_rgb", refuse)


def test_second_load_reads_the_cache_not_the_source(tmp_path, monkeypatch):
    source = make_image(tmp_path / "photo.jpg", size=(640, 480))
    first = ImageCache(tmp_path / "cache").load(source, POLICY, min_side=224)
    assert first.shape == (256, 341, 3) and first.dtype == np.uint8
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1

    _refuse_decoding(monkeypatch)
    later_run = ImageCache(tmp_path / "cache")  # a new process or a new run
    again = later_run.load(source, POLICY, min_side=224)
    assert np.array_equal(first, again)
    assert (later_run.hits, later_run.misses) == (1, 0)


def test_changed_source_or_policy_is_decoded_again(tmp_path):
    source = make_image(tmp_path / "photo.png", size=(300, 300), seed=1)
    cache = ImageCache(tmp_path / "cache")
    before = cache.load(source, POLICY)
    cache.load(source, ResizePolicy("fixed", (256, 192)))
    assert cache.misses == 2

    make_image(source, size=(320, 300), seed=2)  # rewritten: new size and mtime
    os.utime(source, ns=(1, 1))
    after = cache.load(source, POLICY)
    assert cache.misses == 3 and after.shape != before.shape


def test_no_cache_dir_decodes_every_time(tmp_path):
    source = make_image(tmp_path / "photo.png", size=(300, 260))
    cache = ImageCache(None)
    assert np.array_equal(cache.load(source, POLICY), cache.load(source, POLICY))
    assert (cache.hits, cache.misses) == (0, 2)


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    source = make_image(tmp_path / "photo.png", size=(300, 260))
    cache = ImageCache(tmp_path / "cache")
    good = cache.load(source, POLICY)
    entry = cache.entry_path(source, POLICY)
    entry.write_bytes(b"\x93NUMPY broken")
    assert np.array_equal(cache.load(source, POLICY), good)
    assert np.array_equal(np.load(entry), good)


def test_unwritable_cache_folder_only_disables_caching(tmp_path, caplog):
    source = make_image(tmp_path / "photo.png", size=(300, 260))
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    cache = ImageCache(blocker)
    assert cache.load(source, POLICY).shape == (256, 295, 3)
    assert cache.load(source, POLICY).shape == (256, 295, 3)
    assert caplog.text.count("image cache disabled") == 1


def test_missing_and_damaged_sources_raise_decode_errors(tmp_path):
    cache = ImageCache(tmp_path / "cache")
    with pytest.raises(ImageDecodeError, match=r"not found: .*gone\.jpg"):
        cache.load(tmp_path / "gone.jpg", POLICY)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ImageDecodeError, match=r"bad\.jpg"):
        cache.load(tmp_path / "bad.jpg", POLICY)
    assert not list((tmp_path / "cache").rglob("*.npy"))


def test_no_temporary_files_are_left_behind(tmp_path):
    cache = ImageCache(tmp_path / "cache")
    for i in range(3):
        cache.load(make_image(tmp_path / f"{i}.png", size=(260, 260), seed=i), POLICY)
    files = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(files) == 3 and all(name.endswith(".npy") for name in files)
