"""AGIQA-3K: `data.csv` (name,...,mos_quality,...) and the AGIQA-3K/ image folder."""

from __future__ import annotations

from pathlib import Path

from data.readers.common import (
    missing_label_file,
    parse_name,
    parse_score,
    read_csv_records,
    require_dataset_dir,
)
from data.rows import UNASSIGNED, Row

TITLE = "AGIQA-3K"
IMAGES = 2982  # rows of the release
LABEL_FILE = "data.csv"
IMAGE_DIR = "AGIQA-3K"
LAYOUT = (
    "  agiqa3k/AGIQA-3K/*.jpg|png  (2,982 images)\n"
    "  agiqa3k/data.csv            (name,prompt,adj1,adj2,style,mos_quality,std_quality,"
    "mos_align,std_align)"
)


def read(dataset_dir: Path) -> list[Row]:
    """Rows with the perceptual-quality MOS `mos_quality` (AGIQA-3K has no official split)."""
    require_dataset_dir(dataset_dir, TITLE, LAYOUT)
    label_path = dataset_dir / LABEL_FILE
    if not label_path.is_file():
        raise missing_label_file([label_path], TITLE, LAYOUT)
    images = dataset_dir / IMAGE_DIR
    rows = []
    for line, rec in read_csv_records(label_path, ("name", "mos_quality")):
        name = parse_name(rec["name"], label_path, line, "name")
        mos = parse_score(rec["mos_quality"], label_path, line, "mos_quality")
        rows.append(Row(images / name, mos, UNASSIGNED, name, name))
    return rows
