"""Readers on the real label files in their official layouts: counts, splits, MOS ranges."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import pytest

from data.degradations.registry import DISTORTION_NAMES
from data.images import ResizePolicy
from data.readers import kadid10k, spaq
from data.registry import DATASET_KEYS, canonical_key, read_rows, release_sizes, resize_policy
from data.rows import DatasetError, split_counts
from tests.data.conftest import read_csv, spaq_table, write_csv


def test_koniq_official_split_from_the_sets_file_alone(real_rows, real_root):
    rows = real_rows["koniq10k"]
    assert len(rows) == 10_073
    assert split_counts(rows) == {"train": 7_058, "val": 1_000, "test": 2_015}
    assert 0 < min(r.mos for r in rows) < 5 and 85 < max(r.mos for r in rows) < 100
    first = rows[0]
    assert first.name == "10004473376.jpg" and first.split == "train"
    assert first.path == real_root / "koniq10k" / "1024x768" / "10004473376.jpg"
    assert first.mos == pytest.approx(77.3836206897)
    assert len({r.group for r in rows}) == 10_073


def test_kadid_rows_keep_the_reference_as_group(real_rows, real_root):
    rows = real_rows["kadid10k"]
    assert len(rows) == 10_125
    assert len({r.group for r in rows}) == 81
    assert min(r.mos for r in rows) >= 1.0 and max(r.mos for r in rows) <= 5.0
    assert rows[0].name == "I01_01_01.png" and rows[0].group == "I01.png"
    assert rows[0].path == real_root / "kadid10k" / "images" / "I01_01_01.png"
    assert sum(split_counts(rows).values()) == 10_125


def test_every_real_kadid_image_has_one_of_25_types_405_each(real_rows):
    types = Counter(kadid10k.distortion_type(row.name) for row in real_rows["kadid10k"])
    assert list(types) == list(kadid10k.DISTORTION_TYPES)  # label order is KADID's type order
    assert set(types.values()) == {81 * 5}
    assert set(kadid10k.DISTORTION_TYPES) <= set(DISTORTION_NAMES)  # same names as the pretraining
    assert kadid10k.distortion_type("I01.png") is None
    assert kadid10k.distortion_type("I01_26_01.png") is None


def test_kadid_type_lists_take_codes_and_names():
    assert kadid10k.parse_distortion_types("3, 21,contrast_change,03") == [
        "motion_blur", "pixelate", "contrast_change"]
    with pytest.raises(DatasetError, match=r"unknown KADID-10k distortion type 'smear'.*1-25"):
        kadid10k.parse_distortion_types("3,smear")
    with pytest.raises(DatasetError, match=r"unknown KADID-10k distortion type '26'"):
        kadid10k.parse_distortion_types("26")


def test_agiqa_uses_mos_quality(real_rows, real_root):
    rows = real_rows["agiqa3k"]
    assert len(rows) == 2_982
    assert rows[0].name == "AttnGAN_normal_000.jpg"
    assert rows[0].mos == pytest.approx(0.965602553)
    assert rows[0].path.parent == real_root / "agiqa3k" / "AGIQA-3K"
    assert min(r.mos for r in rows) >= 0.0 and max(r.mos for r in rows) < 5.0


def test_spaq_xlsx(real_rows, real_root):
    rows = real_rows["spaq"]
    assert len(rows) == 11_125
    assert rows[0].name == "00001.jpg" and rows[0].mos == pytest.approx(48.86)
    assert rows[0].path == real_root / "spaq" / "TestImage" / "00001.jpg"
    assert min(r.mos for r in rows) == pytest.approx(2.0)
    assert max(r.mos for r in rows) == pytest.approx(96.0)


def test_spaq_csv_export_beside_the_workbook(fixtures_dir, tmp_path, real_rows):
    table = spaq_table(fixtures_dir)
    write_csv(tmp_path / "spaq" / f"{spaq.LABEL_STEM}.csv", table)
    rows = read_rows("spaq", tmp_path)
    assert [(r.name, r.mos) for r in rows] == [(r.name, r.mos) for r in real_rows["spaq"]]


def test_livec_drops_the_seven_training_images(real_rows, real_root):
    rows = real_rows["livec"]
    assert len(rows) == 1_162
    assert not any(r.name.startswith("t") for r in rows)
    assert rows[0].name == "100.bmp" and rows[0].mos == pytest.approx(32.56107532)
    assert rows[0].path == real_root / "livec" / "Images" / "100.bmp"
    assert min(r.mos for r in rows) > 3.0 and max(r.mos for r in rows) < 93.0


def test_release_sizes_equal_the_real_label_files(real_rows):
    for key in DATASET_KEYS:
        known = release_sizes(key)
        assert known["n_images"] == len(real_rows[key]), key
        if key == "koniq10k":
            assert known["splits"] == split_counts(real_rows[key]) == {
                "train": 7058, "val": 1000, "test": 2015}
        else:  # the same ratios; the real split moves whole content groups (KADID-10k: 125)
            assert known["splits"] == pytest.approx(split_counts(real_rows[key]), abs=125), key


def test_datasets_without_official_split_are_split_at_random(real_rows):
    for key in ("spaq", "kadid10k", "agiqa3k", "livec"):
        counts = split_counts(real_rows[key])
        total = sum(counts.values())
        assert total == len(real_rows[key])
        assert counts["train"] / total == pytest.approx(0.7, abs=0.05), key
        assert counts["test"] / total == pytest.approx(0.2, abs=0.05), key


def test_koniq_scores_file_alone_falls_back_to_a_random_split(fixtures_dir, tmp_path, caplog):
    sets = read_csv(fixtures_dir / "koniq10k" / "koniq10k_distributions_sets.csv")
    header = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]
    body = [[*r[:7], f"{1 + float(r[7]) / 25:.4f}", r[8], r[7]] for r in sets[1:201]]
    write_csv(tmp_path / "koniq10k" / "koniq10k_scores_and_distributions.csv", [header, *body])
    with caplog.at_level(logging.WARNING):
        rows = read_rows("koniq-10k", tmp_path, split="official", split_seed=1)
    assert "koniq10k_distributions_sets.csv not found" in caplog.text
    assert len(rows) == 200
    assert rows[0].mos == pytest.approx(77.3836206897)  # MOS_zscore, 0-100
    counts = split_counts(rows)
    assert counts == {"train": 140, "val": 20, "test": 40}


def test_sets_file_wins_over_the_scores_file(fixtures_dir, tmp_path):
    koniq = tmp_path / "koniq10k"
    koniq.mkdir()
    shutil.copy(fixtures_dir / "koniq10k" / "koniq10k_distributions_sets.csv", koniq)
    write_csv(koniq / "koniq10k_scores_and_distributions.csv", [["image_name", "MOS_zscore"]])
    rows = read_rows("koniq", tmp_path)
    assert split_counts(rows) == {"train": 7_058, "val": 1_000, "test": 2_015}


def test_koniq_512x384_folder_is_used_when_it_is_the_only_one(fixtures_dir, tmp_path):
    koniq = tmp_path / "koniq10k"
    (koniq / "512x384").mkdir(parents=True)
    shutil.copy(fixtures_dir / "koniq10k" / "koniq10k_distributions_sets.csv", koniq)
    assert read_rows("koniq", tmp_path)[0].path.parent == koniq / "512x384"


def test_csv_dataset_with_and_without_split_column(tmp_path):
    rows = [["image", "mos", "split"]]
    rows += [[f"img/{i}.png", i, ("train", "validation", "test")[i % 3]] for i in range(9)]
    write_csv(tmp_path / "labels.csv", rows)
    listed = read_rows(f"csv:{tmp_path / 'labels.csv'}", tmp_path / "unused")
    assert split_counts(listed) == {"train": 3, "val": 3, "test": 3}
    assert listed[1].path == tmp_path / "img" / "1.png" and listed[1].mos == 1.0

    write_csv(tmp_path / "plain.csv", [["image", "mos"]] + [[f"{i}.png", i] for i in range(10)])
    plain = read_rows("csv:plain.csv", tmp_path, split_seed=3)  # relative to --data_root
    assert sum(split_counts(plain).values()) == 10
    assert plain[0].path == tmp_path / "0.png"


def test_aliases_and_resize_policies():
    assert canonical_key("KonIQ-10k") == "koniq10k"
    assert canonical_key("kadid") == "kadid10k"
    assert canonical_key("AGIQA-3K") == "agiqa3k"
    assert canonical_key("live-c") == "livec"
    assert canonical_key("LIVEChallenge") == "livec"
    assert canonical_key("csv:/x/y.csv") == "csv:/x/y.csv"
    assert resize_policy("koniq") == ResizePolicy("fixed", (512, 384))  # width 512, height 384
    assert resize_policy("spaq") == ResizePolicy("short_side", 512)
    assert resize_policy("agiqa3k") == ResizePolicy("short_side", 512)
    assert resize_policy("kadid10k").kind == "none"
    squash = ResizePolicy("fixed", (384, 512))  # torchvision Resize((512, 384)): 512 high
    assert all(resize_policy(k, "squash") == squash for k in ("koniq", "spaq", "kadid", "agiqa"))
    assert resize_policy("livec", "squash").kind == "none"
    with pytest.raises(ValueError, match="geometry"):
        resize_policy("koniq", "stretch")
    assert resize_policy("livec").kind == "none"
    assert resize_policy("csv:a.csv").kind == "none"


def test_official_split_is_the_same_with_any_seed(real_root: Path):
    a = read_rows("koniq10k", real_root, split_seed=1)
    b = read_rows("koniq10k", real_root, split_seed=2)
    assert [r.split for r in a] == [r.split for r in b]
