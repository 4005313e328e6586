"""KADID-10k: `dmos.csv` (dist_img,ref_img,dmos,var) and images/ with references beside them."""

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

TITLE = "KADID-10k"
LABEL_FILE = "dmos.csv"
IMAGE_DIR = "images"
LAYOUT = (
    "  kadid10k/images/Iaa_dd_ll.png  (10,125 distorted images; references Iaa.png beside them)\n"
    "  kadid10k/dmos.csv              (dist_img,ref_img,dmos,var; dmos 1-5, higher is better)"
)


def read(dataset_dir: Path) -> list[Row]:
    """Rows with DMOS 1-5 grouped by reference image, so splits never share content."""
    require_dataset_dir(dataset_dir, TITLE, LAYOUT)
    label_path = dataset_dir / LABEL_FILE
    if not label_path.is_file():
        raise missing_label_file([label_path], TITLE, LAYOUT)
    images = dataset_dir / IMAGE_DIR
    rows = []
    for line, rec in read_csv_records(label_path, ("dist_img", "ref_img", "dmos")):
        name = parse_name(rec["dist_img"], label_path, line, "dist_img")
        ref = parse_name(rec["ref_img"], label_path, line, "ref_img")
        mos = parse_score(rec["dmos"], label_path, line, "dmos")
        rows.append(Row(images / name, mos, UNASSIGNED, ref, name))
    return rows
