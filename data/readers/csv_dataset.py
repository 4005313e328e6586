"""A user's own data: `csv:PATH`, a CSV with columns image,mos (optional split, group)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from data.readers.common import parse_name, parse_score, read_csv_records
from data.rows import SPLITS, UNASSIGNED, DatasetError, Row

TITLE = "CSV dataset"
LAYOUT = (
    "  a CSV file with a header row and columns image,mos (higher is better); optional columns\n"
    "  split (train/val/test) and group (content id kept on one side of a random split);\n"
    "  image paths are relative to the CSV's folder (or absolute)"
)
SPLIT_NAMES = {
    **{s: s for s in SPLITS},
    "training": "train",
    "validation": "val",
    "valid": "val",
    "testing": "test",
}


# Column names other files use for what this reader calls image and mos (lower case, no
# separators); DMOS-like names are left out: there lower is better, which mos must not be.
SYNONYMS = {
    "image": ("image", "img", "file", "filename", "imagename", "name", "path", "imagepath",
              "picture", "photo"),
    "mos": ("mos", "score", "quality", "mosquality", "rating", "meanscore", "meanopinionscore",
            "label", "target", "moszscore"),
}

ROLES = {"image": "the column of image paths", "mos": "the column of quality scores"}


def column_advice(missing: list[str], found: Sequence[str]) -> str:
    """What a CSV with other column names should do: the columns expected and a renaming."""
    renames = []
    for column in missing:
        match = next((name for name in found if name not in SYNONYMS
                      and re.sub(r"[^a-z]", "", name.lower()) in SYNONYMS[column]), None)
        renames.append(f"{match!r} to {column!r}" if match else f"{ROLES[column]} to {column!r}")
    return (f"A csv: dataset needs the columns image,mos (higher = better; optional split: "
            f"train/val/test, and group): rename {' and '.join(renames)} in the header line "
            "(other columns may stay)")


def read(csv_path: Path) -> list[Row]:
    """Rows of a generic image,mos CSV; an empty split column leaves the split to the registry."""
    if not csv_path.is_file():
        raise DatasetError(f"CSV dataset not found: expected a file at {csv_path} with:\n{LAYOUT}")
    root = csv_path.parent
    rows = []
    for line, rec in read_csv_records(csv_path, ("image", "mos"), column_advice):
        name = parse_name(rec["image"], csv_path, line, "image")
        mos = parse_score(rec["mos"], csv_path, line, "mos")
        raw_split = rec.get("split", "").lower()
        split = SPLIT_NAMES.get(raw_split, UNASSIGNED if not raw_split else None)
        if split is None:
            raise DatasetError(
                f"{csv_path}, row at line {line}, column 'split': expected one of "
                f"train, val, test (or empty), found {rec['split']!r}."
            )
        rows.append(Row(root / name, mos, split, rec.get("group") or name, name))
    return rows
