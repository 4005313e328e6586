"""Demo datasets: the five official layouts, readable by the readers, deterministic for a seed."""

from __future__ import annotations

import csv
import itertools
import re
from pathlib import Path

import numpy as np
from openpyxl import load_workbook
from scipy.io import loadmat

from data.demo import BUILDERS, KADID_DEMO_TYPES, build_demo, build_koniq, koniq_sizes
from data.demo_photos import load_sources
from data.images import ImageCache
from data.registry import check_images, read_rows, resize_policy
from data.rows import split_counts

DEMO_COUNTS = {"koniq10k": 160, "spaq": 40, "kadid10k": 180, "agiqa3k": 30, "livec": 30}


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return next(csv.reader(f))


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_official_label_files_and_columns(demo_root):
    koniq = demo_root / "koniq10k"
    assert _header(koniq / "koniq10k_distributions_sets.csv") == [
        "image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "set",
    ]
    assert _header(koniq / "koniq10k_scores_and_distributions.csv")[-1] == "MOS_zscore"
    assert len(list((koniq / "1024x768").glob("*.jpg"))) == 160

    workbook = load_workbook(demo_root / "spaq/Annotations/MOS and Image attribute scores.xlsx")
    header = [cell.value for cell in next(workbook.active.iter_rows(max_row=1))]
    assert header == [
        "Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness",
    ]
    assert len(list((demo_root / "spaq" / "TestImage").glob("*.jpg"))) == 40

    assert _header(demo_root / "kadid10k" / "dmos.csv") == ["dist_img", "ref_img", "dmos", "var"]
    assert _header(demo_root / "agiqa3k" / "data.csv") == [
        "name", "prompt", "adj1", "adj2", "style", "mos_quality", "std_quality", "mos_align",
        "std_align",
    ]

    names = loadmat(demo_root / "livec/Data/AllImages_release.mat")["AllImages_release"]
    mos = loadmat(demo_root / "livec/Data/AllMOS_release.mat")["AllMOS_release"]
    assert names.shape == (37, 1) and mos.shape == (1, 37)
    assert [str(n[0]) for n in names[:7, 0]] == [f"t{i}.bmp" for i in range(1, 8)]
    for i in range(1, 8):
        assert (demo_root / "livec" / "Images" / "trainingImages" / f"t{i}.bmp").is_file()
    assert (demo_root / "livec" / "Data" / "AllStdDev_release.mat").is_file()


def test_kadid_naming_and_held_out_types(demo_root):
    images = demo_root / "kadid10k" / "images"
    names = sorted(p.name for p in images.glob("*.png"))
    references = [n for n in names if re.fullmatch(r"I\d\d\.png", n)]
    distorted = [n for n in names if re.fullmatch(r"I\d\d_\d\d_0[1-5]\.png", n)]
    assert len(references) == 6 and len(distorted) == 180
    types = {int(n.split("_")[1]) for n in distorted}
    assert types == set(KADID_DEMO_TYPES)
    pretraining_defaults = {1, 10, 11, 16, 17}  # blur, jpeg, white noise, brighten, darken
    assert len(types - pretraining_defaults) >= 3


def test_demo_layouts_parse_through_the_readers(demo_root):
    for key, count in DEMO_COUNTS.items():
        rows = read_rows(key, demo_root)
        assert len(rows) == count, key
        assert not check_images(rows), key
    assert split_counts(read_rows("koniq10k", demo_root)) == {"train": 112, "val": 16, "test": 32}
    kadid = read_rows("kadid10k", demo_root)
    assert len({r.group for r in kadid}) == 6


def test_demo_images_decode_with_the_dataset_policies(demo_root, tmp_path):
    cache = ImageCache(tmp_path / "cache")
    expected = {
        "koniq10k": (384, 512, 3),
        "spaq": (512, 683, 3),
        "kadid10k": (288, 384, 3),
        "agiqa3k": (512, 512, 3),
        "livec": (500, 500, 3),
    }
    for key, shape in expected.items():
        row = read_rows(key, demo_root)[-1]
        assert cache.load(row.path, resize_policy(key), min_side=224).shape == shape, key


def test_mos_follows_the_severity(demo_root):
    rows = read_rows("kadid10k", demo_root)
    by_level: dict[int, list[float]] = {}
    for row in rows:
        by_level.setdefault(int(row.name[-6:-4]), []).append(row.mos)
    means = [np.mean(by_level[level]) for level in range(1, 6)]
    assert all(a > b for a, b in itertools.pairwise(means))
    assert means[0] > 3.5 and means[-1] < 2.0
    koniq = [r.mos for r in read_rows("koniq10k", demo_root)]
    assert 1 <= min(koniq) < 20 and 75 < max(koniq) <= 99


def test_same_seed_gives_identical_files(demo_root, tmp_path):
    counts = build_demo(tmp_path / "again", seed=0)
    assert counts == DEMO_COUNTS
    again, first = _files(tmp_path / "again"), _files(demo_root)
    assert again.keys() == first.keys()
    assert [name for name in first if first[name] != again[name]] == []


def test_another_seed_gives_other_labels(demo_root, tmp_path):
    rng = np.random.default_rng([1, 3])
    BUILDERS["agiqa3k"](tmp_path / "agiqa3k", load_sources(), rng)
    other = (tmp_path / "agiqa3k" / "data.csv").read_bytes()
    assert other != (demo_root / "agiqa3k" / "data.csv").read_bytes()


def test_koniq_mixture_set_in_the_official_ratio(tmp_path):
    """--koniq_images / --koniq_mix: an independent KonIQ-layout set of distortion mixtures."""
    assert koniq_sizes(190) == {"training": 133, "validation": 19, "test": 38}
    mixed, single = tmp_path / "mixed", tmp_path / "single"
    build_koniq(mixed / "koniq10k", load_sources(), np.random.default_rng(7),
                sizes=koniq_sizes(30), mix=2)
    rows = read_rows("koniq10k", mixed)
    assert split_counts(rows) == {"train": 21, "val": 3, "test": 6}
    build_koniq(single / "koniq10k", load_sources(), np.random.default_rng(7),
                sizes=koniq_sizes(30))
    # two distortions lower quality more than one: the mixture set's MOS sits lower
    assert np.mean([r.mos for r in rows]) < np.mean([r.mos for r in read_rows("koniq10k", single)])
