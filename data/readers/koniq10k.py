"""KonIQ-10k: `koniq10k_distributions_sets.csv` (official split) or the scores file alone."""

from __future__ import annotations

import logging
from pathlib import Path

from data.readers.common import (
    missing_label_file,
    parse_name,
    parse_score,
    read_csv_records,
    require_dataset_dir,
)
from data.rows import UNASSIGNED, DatasetError, Row

TITLE = "KonIQ-10k"
IMAGES = 10073  # rows of the release
OFFICIAL_SPLIT = {"train": 7058, "val": 1000, "test": 2015}  # the sets file's split
SETS_FILE = "koniq10k_distributions_sets.csv"
SCORES_FILE = "koniq10k_scores_and_distributions.csv"
IMAGE_DIRS = ("1024x768", "512x384")
LAYOUT = (
    "  koniq10k/1024x768/*.jpg                        (10,073 images; 512x384/ is accepted too)\n"
    f"  koniq10k/{SETS_FILE}       (image_name,c1..c5,c_total,MOS,SD,set: "
    "MOS 0-100, set training/validation/test)\n"
    f"  koniq10k/{SCORES_FILE}  (optional: image_name,...,MOS,SD,MOS_zscore)"
)
SET_NAMES = {"training": "train", "validation": "val", "test": "test"}

logger = logging.getLogger(__name__)


def image_dir(dataset_dir: Path) -> Path:
    """The image folder: 1024x768/ as released, or 512x384/ when only that one exists."""
    for name in IMAGE_DIRS:
        if (dataset_dir / name).is_dir():
            return dataset_dir / name
    return dataset_dir / IMAGE_DIRS[0]


def read(dataset_dir: Path) -> list[Row]:
    """Rows with MOS on 0-100; official training/validation/test split when the sets file exists."""
    require_dataset_dir(dataset_dir, TITLE, LAYOUT)
    images = image_dir(dataset_dir)
    sets_path, scores_path = dataset_dir / SETS_FILE, dataset_dir / SCORES_FILE
    if sets_path.is_file():
        rows = []
        for line, rec in read_csv_records(sets_path, ("image_name", "MOS", "set")):
            name = parse_name(rec["image_name"], sets_path, line, "image_name")
            split = SET_NAMES.get(rec["set"].lower())
            if split is None:
                raise DatasetError(
                    f"{sets_path}, row at line {line}, column 'set': expected one of "
                    f"{', '.join(SET_NAMES)}, found {rec['set']!r}."
                )
            mos = parse_score(rec["MOS"], sets_path, line, "MOS")
            rows.append(Row(images / name, mos, split, name, name))
        return rows
    if scores_path.is_file():
        logger.warning(
            "%s not found in %s: using MOS_zscore from %s and a seeded random split instead of "
            "the official one",
            SETS_FILE,
            dataset_dir,
            SCORES_FILE,
        )
        rows = []
        for line, rec in read_csv_records(scores_path, ("image_name", "MOS_zscore")):
            name = parse_name(rec["image_name"], scores_path, line, "image_name")
            mos = parse_score(rec["MOS_zscore"], scores_path, line, "MOS_zscore")
            rows.append(Row(images / name, mos, UNASSIGNED, name, name))
        return rows
    raise missing_label_file([sets_path, scores_path], TITLE, LAYOUT)
