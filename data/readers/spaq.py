"""SPAQ: `Annotations/MOS and Image attribute scores.xlsx` (or its CSV export) and TestImage/."""

from __future__ import annotations

from pathlib import Path

from data.readers.common import (
    missing_label_file,
    parse_name,
    parse_score,
    read_csv_records,
    read_xlsx_records,
    require_dataset_dir,
)
from data.rows import UNASSIGNED, Row

TITLE = "SPAQ"
IMAGES = 11125  # rows of the release
LABEL_STEM = "Annotations/MOS and Image attribute scores"
IMAGE_DIR = "TestImage"
LAYOUT = (
    "  spaq/TestImage/*.jpg                                   (11,125 images)\n"
    f"  spaq/{LABEL_STEM}.xlsx  (Image name,MOS,Brightness,Colorfulness,Contrast,"
    "Noisiness,Sharpness; MOS 0-100)\n"
    f"  (or spaq/{LABEL_STEM}.csv, a CSV export with the same columns)"
)
COLUMNS = ("Image name", "MOS")


def read(dataset_dir: Path) -> list[Row]:
    """Rows with MOS 0-100 (SPAQ has no official split)."""
    require_dataset_dir(dataset_dir, TITLE, LAYOUT)
    xlsx = dataset_dir / f"{LABEL_STEM}.xlsx"
    export = dataset_dir / f"{LABEL_STEM}.csv"
    if xlsx.is_file():
        label_path, records = xlsx, read_xlsx_records(xlsx, COLUMNS)
    elif export.is_file():
        label_path, records = export, read_csv_records(export, COLUMNS)
    else:
        raise missing_label_file([xlsx, export], TITLE, LAYOUT)
    images = dataset_dir / IMAGE_DIR
    rows = []
    for line, rec in records:
        name = parse_name(rec["Image name"], label_path, line, "Image name")
        mos = parse_score(rec["MOS"], label_path, line, "MOS")
        rows.append(Row(images / name, mos, UNASSIGNED, name, name))
    return rows
