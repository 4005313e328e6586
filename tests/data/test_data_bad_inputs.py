"""Bad dataset folders and label files stop with errors naming what was expected and found."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from data.registry import canonical_key, check_images, describe_missing, read_rows, summarize
from data.rows import DatasetError
from tests.data.conftest import make_image, write_csv, write_spaq_xlsx


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("koniq10k", ["koniq10k_distributions_sets.csv", "1024x768/"]),
        ("spaq", ["MOS and Image attribute scores.xlsx", "TestImage/"]),
        ("kadid10k", ["dmos.csv", "images/"]),
        ("agiqa3k", ["data.csv", "AGIQA-3K/"]),
        ("livec", ["AllImages_release.mat", "AllMOS_release.mat", "Images/"]),
    ],
)
def test_missing_dataset_folder_names_the_layout_and_the_flag(tmp_path, key, expected):
    with pytest.raises(DatasetError) as err:
        read_rows(key, tmp_path)
    message = str(err.value)
    assert str(tmp_path / key) in message and "--data_root" in message
    for part in expected:
        assert part in message


def test_missing_label_file_in_an_existing_folder(tmp_path):
    (tmp_path / "kadid10k" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"KADID-10k labels not found: expected .*dmos\.csv"):
        read_rows("kadid10k", tmp_path)


def test_missing_columns_are_named_with_the_file_and_the_columns_found(tmp_path):
    write_csv(tmp_path / "kadid10k" / "dmos.csv", [["dist_img", "ref", "score"], ["a", "b", 1]])
    with pytest.raises(DatasetError) as err:
        read_rows("kadid10k", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "kadid10k" / "dmos.csv") in message
    assert "'ref_img'" in message and "'dmos'" in message
    assert "found columns 'dist_img', 'ref', 'score'" in message


def test_missing_column_in_the_spaq_workbook(tmp_path):
    path = tmp_path / "spaq" / "Annotations" / "MOS and Image attribute scores.xlsx"
    write_spaq_xlsx(path, [["Image name", "Score"], ["00001.jpg", 50.0]])
    with pytest.raises(DatasetError, match=r"missing column\(s\) 'MOS'"):
        read_rows("spaq", tmp_path)


def test_non_numeric_mos_names_file_row_and_column(tmp_path):
    rows = [["name", "prompt", "mos_quality"], ["a.jpg", "x", "2.5"], ["b.jpg", "y", "n/a"]]
    write_csv(tmp_path / "agiqa3k" / "data.csv", rows)
    with pytest.raises(DatasetError) as err:
        read_rows("agiqa3k", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "agiqa3k" / "data.csv") in message
    assert "line 3" in message and "'mos_quality'" in message and "'n/a'" in message


def test_non_finite_mos_and_empty_names_are_refused(tmp_path):
    labels = tmp_path / "kadid10k" / "dmos.csv"
    write_csv(labels, [["dist_img", "ref_img", "dmos"], ["a", "r", "nan"]])
    with pytest.raises(DatasetError, match="column 'dmos': expected a finite number"):
        read_rows("kadid10k", tmp_path)
    write_csv(labels, [["dist_img", "ref_img", "dmos"], ["", "r", "1"]])
    with pytest.raises(DatasetError, match="column 'dist_img': expected an image file name"):
        read_rows("kadid10k", tmp_path)


def test_short_row_is_reported_as_an_empty_cell(tmp_path):
    write_csv(tmp_path / "livec_like.csv", [["image", "mos"], ["a.png", "3"], ["b.png"]])
    with pytest.raises(DatasetError, match=r"line 3, column 'mos'.*found ''"):
        read_rows(f"csv:{tmp_path / 'livec_like.csv'}", tmp_path)


def test_unknown_koniq_set_value(tmp_path):
    write_csv(
        tmp_path / "koniq10k" / "koniq10k_distributions_sets.csv",
        [["image_name", "MOS", "set"], ["1.jpg", "50", "holdout"]],
    )
    with pytest.raises(DatasetError, match="column 'set': expected one of training, validation"):
        read_rows("koniq10k", tmp_path)


def test_livec_files_of_different_lengths(tmp_path):
    data = tmp_path / "livec" / "Data"
    data.mkdir(parents=True)
    names = np.empty((9, 1), dtype=object)
    names[:, 0] = [f"{i}.bmp" for i in range(9)]
    savemat(data / "AllImages_release.mat", {"AllImages_release": names})
    savemat(data / "AllMOS_release.mat", {"AllMOS_release": np.ones((1, 8))})
    with pytest.raises(DatasetError, match=r"lists 9 images but .* holds 8 MOS"):
        read_rows("livec", tmp_path)


def test_unknown_dataset_name_lists_the_keys():
    with pytest.raises(DatasetError, match="koniq10k, spaq, kadid10k, agiqa3k, livec"):
        canonical_key("tid2013")


def test_bad_split_arguments(demo_root):
    with pytest.raises(ValueError, match="split must be one of"):
        read_rows("agiqa3k", demo_root, split="holdout")
    with pytest.raises(ValueError, match="three non-negative numbers"):
        read_rows("agiqa3k", demo_root, split="random", split_ratios=(0.8, -0.1, 0.3))


def test_missing_images_are_counted_and_named(tmp_path):
    body = [[f"I01_01_0{i}.png", "I01.png", 4 - i * 0.5] for i in range(1, 6)]
    write_csv(tmp_path / "kadid10k" / "dmos.csv", [["dist_img", "ref_img", "dmos"], *body])
    for name in ("I01_01_01.png", "I01_01_03.png"):
        make_image(tmp_path / "kadid10k" / "images" / name)
    rows = read_rows("kadid10k", tmp_path)
    missing = check_images(rows)
    assert [r.name for r in missing] == ["I01_01_02.png", "I01_01_04.png", "I01_01_05.png"]
    message = describe_missing(missing, len(rows))
    assert message.startswith("3 of 5 images") and "I01_01_02.png" in message
    assert "--skip_missing" in message
    summary = summarize("kadid", tmp_path)
    assert summary["missing"] == 3 and summary["n_images"] == 5
    assert summary["missing_examples"] == ["I01_01_02.png", "I01_01_04.png", "I01_01_05.png"]
