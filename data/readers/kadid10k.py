"""KADID-10k: `dmos.csv` (dist_img,ref_img,dmos,var) and images/ with references beside them."""

from __future__ import annotations

import re
from pathlib import Path

from data.readers.common import (
    missing_label_file,
    parse_name,
    parse_score,
    read_csv_records,
    require_dataset_dir,
)
from data.rows import UNASSIGNED, DatasetError, Row

TITLE = "KADID-10k"
IMAGES = 10125  # rows of the release (81 references x 25 types x 5 levels)
LABEL_FILE = "dmos.csv"
IMAGE_DIR = "images"
LAYOUT = (
    "  kadid10k/images/Iaa_dd_ll.png  (10,125 distorted images; references Iaa.png beside them)\n"
    "  kadid10k/dmos.csv              (dist_img,ref_img,dmos,var; dmos 1-5, higher is better)"
)
# The 25 distortion types in KADID-10k's order (type dd of Iaa_dd_ll.png is entry dd - 1), named
# as data.degradations names its implementations.
DISTORTION_TYPES = (
    "gaussian_blur", "lens_blur", "motion_blur", "color_diffusion", "color_shift",
    "color_quantization", "color_saturation", "color_oversaturation", "jpeg2000", "jpeg",
    "gaussian_noise", "color_noise", "impulse_noise", "multiplicative_noise", "denoise",
    "brighten", "darken", "mean_shift", "jitter", "non_eccentricity_patch", "pixelate",
    "quantization", "color_block", "high_sharpen", "contrast_change",
)  # fmt: skip
_DISTORTED_NAME = re.compile(r"^I\d+_(\d+)_\d+\.\w+$")


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


def distortion_type(image_name: str) -> str | None:
    """The distortion type of a KADID-10k image name Iaa_dd_ll.png; None for other names."""
    match = _DISTORTED_NAME.match(Path(image_name).name)
    if not match or not 1 <= int(match.group(1)) <= len(DISTORTION_TYPES):
        return None
    return DISTORTION_TYPES[int(match.group(1)) - 1]


def parse_distortion_types(text: str) -> list[str]:
    """A comma list of KADID-10k type codes (1-25, "03") and/or names -> type names, in order."""
    chosen = []
    for item in (part.strip() for part in text.split(",")):
        if item.isdigit() and 1 <= int(item) <= len(DISTORTION_TYPES):
            name = DISTORTION_TYPES[int(item) - 1]
        elif item in DISTORTION_TYPES:
            name = item
        else:
            raise DatasetError(
                f"unknown KADID-10k distortion type {item!r}: give codes 1-25 or names "
                f"({', '.join(DISTORTION_TYPES)})"
            )
        if name not in chosen:
            chosen.append(name)
    return chosen
