"""Fixtures of the data tests: the real label files in official layouts, tiny placeholder images."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.registry import DATASET_KEYS, read_rows
from data.rows import Row

SPAQ_COLUMNS = [
    "Image name",
    "MOS",
    "Brightness",
    "Colorfulness",
    "Contrast",
    "Noisiness",
    "Sharpness",
]
SPAQ_XLSX = "Annotations/MOS and Image attribute scores.xlsx"


def read_csv(path: Path) -> list[list[str]]:
    """All rows of a CSV file, header included."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def write_csv(path: Path, rows: list[list[object]]) -> None:
    """Write rows (header first) to a CSV file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def write_spaq_xlsx(path: Path, rows: list[list[object]]) -> None:
    """SPAQ's official workbook: one sheet, header row, then one row per image."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    for row in rows:
        sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)


def spaq_table(fixtures_dir: Path) -> list[list[object]]:
    """The official SPAQ columns from the fixture's CSV export (which has extra columns)."""
    rows = read_csv(fixtures_dir / "pyiqa_meta_info" / "meta_info_SPAQDataset.csv")
    assert rows[0][:7] == SPAQ_COLUMNS
    return [SPAQ_COLUMNS] + [[r[0], *(float(v) for v in r[1:7])] for r in rows[1:]]


def kadid_table(fixtures_dir: Path) -> list[list[object]]:
    """KADID-10k's official dmos.csv (dist_img,ref_img,dmos,var) from the fixture's columns."""
    rows = read_csv(fixtures_dir / "pyiqa_meta_info" / "meta_info_KADID10kDataset.csv")
    assert rows[0] == ["ref_name", "dist_name", "dmos", "std"]
    body = [[dist, ref, dmos, f"{float(std) ** 2:.6f}"] for ref, dist, dmos, std in rows[1:]]
    return [["dist_img", "ref_img", "dmos", "var"], *body]


@pytest.fixture(scope="session")
def real_root(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DATA_ROOT holding the real label files of all five datasets in their official layouts."""
    root = tmp_path_factory.mktemp("real_labels")
    koniq = root / "koniq10k"
    koniq.mkdir()
    shutil.copy(fixtures_dir / "koniq10k" / "koniq10k_distributions_sets.csv", koniq)
    write_spaq_xlsx(root / "spaq" / SPAQ_XLSX, spaq_table(fixtures_dir))
    write_csv(root / "kadid10k" / "dmos.csv", kadid_table(fixtures_dir))
    (root / "agiqa3k").mkdir()
    shutil.copy(fixtures_dir / "agiqa3k" / "data.csv", root / "agiqa3k")
    shutil.copytree(fixtures_dir / "livec" / "Data", root / "livec" / "Data")
    return root


@pytest.fixture(scope="session")
def real_rows(real_root: Path) -> dict[str, list[Row]]:
    """The rows of every dataset read once from the real label files (official split)."""
    return {key: read_rows(key, real_root) for key in DATASET_KEYS}


def make_image(path: Path, size: tuple[int, int] = (16, 12), seed: int = 0) -> Path:
    """A small random RGB image at `path` (format from the suffix); returns the path."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path
