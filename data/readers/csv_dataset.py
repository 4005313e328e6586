"""A user's own data: `csv:PATH`, a CSV with columns image,mos (optional split, group)."""

from __future__ import annotations

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


def read(csv_path: Path) -> list[Row]:
    """Rows of a generic image,mos CSV; an empty split column leaves the split to the registry."""
    if not csv_path.is_file():
        raise DatasetError(f"CSV dataset not found: expected a file at {csv_path} with:\n{LAYOUT}")
    root = csv_path.parent
    rows = []
    for line, rec in read_csv_records(csv_path, ("image", "mos")):
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
