"""Label-file parsing shared by the readers: clear errors on missing files, columns and values."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from data.rows import DatasetError

Record = dict[str, str]


def require_dataset_dir(dataset_dir: Path, title: str, layout: str) -> None:
    """Raise a DatasetError describing the expected layout when `dataset_dir` is missing."""
    if not dataset_dir.is_dir():
        raise DatasetError(
            f"{title} dataset folder not found: expected {dataset_dir} in the official layout:\n"
            f"{layout}\n"
            f"Point --data_root (or IQA_DATA_ROOT) at the folder that holds {dataset_dir.name}/."
        )


def missing_label_file(paths: Sequence[Path], title: str, layout: str) -> DatasetError:
    """DatasetError for a dataset folder that lacks every accepted label file."""
    wanted = " or ".join(str(p) for p in paths)
    return DatasetError(
        f"{title} labels not found: expected {wanted}. The official layout is:\n{layout}\n"
        f"Check --data_root (or IQA_DATA_ROOT) and that the archive was extracted unchanged."
    )


OFFICIAL_FILE_ADVICE = "Use the dataset's official label file unchanged."


def check_columns(path: Path, found: Sequence[str], required: Iterable[str],
                  advice: Callable[[list[str], Sequence[str]], str] | None = None) -> None:
    """Raise a DatasetError naming the file, the missing columns and the columns found, then
    what to do: `advice(missing, found)`, or to use the official label file unchanged."""
    missing = [c for c in required if c not in found]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found columns {', '.join(repr(c) for c in found)}. "
            f"{advice(missing, found) if advice else OFFICIAL_FILE_ADVICE}"
        )


def _is_blank(values: Iterable[object]) -> bool:
    return all(v is None or str(v).strip() == "" for v in values)


def _record(header: Sequence[str], values: Sequence[object]) -> Record:
    """Column -> text; a short row gets empty cells, a repeated column keeps its first value."""
    record: Record = {}
    for i, column in enumerate(header):
        if column not in record:
            value = values[i] if i < len(values) else None
            record[column] = "" if value is None else str(value).strip()
    return record


def read_csv_records(path: Path, required: Iterable[str],
                     advice: Callable[[list[str], Sequence[str]], str] | None = None
                     ) -> list[tuple[int, Record]]:
    """Read a CSV with a header row; return (file line number, record) for non-blank rows
    (`advice`: what check_columns tells a file that lacks a required column)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        check_columns(path, header, required, advice)
        records = []
        for values in reader:
            if _is_blank(values):
                continue
            records.append((reader.line_num, _record(header, values)))
    return records


def read_xlsx_records(path: Path, required: Iterable[str]) -> list[tuple[int, Record]]:
    """Read the first sheet of an .xlsx workbook with a header row (openpyxl, read-only)."""
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds of errors on damaged files
        raise DatasetError(f"cannot read the Excel workbook {path}: {exc}") from exc
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        header = ["" if h is None else str(h).strip() for h in next(rows, ())]
        check_columns(path, header, required)
        records = []
        for line, values in enumerate(rows, start=2):
            if _is_blank(values):
                continue
            records.append((line, _record(header, values)))
    finally:
        workbook.close()
    return records


def parse_score(value: str, path: Path, line: int, column: str) -> float:
    """Parse a finite number from a label file, naming file, row and column when it is not one."""
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise DatasetError(
            f"{path}, row at line {line}, column {column!r}: expected a finite number, "
            f"found {value!r}. Fix or remove that row."
        )
    return score


def parse_name(value: str, path: Path, line: int, column: str) -> str:
    """Return a non-empty image name, naming file, row and column when it is empty."""
    if not value:
        raise DatasetError(
            f"{path}, row at line {line}, column {column!r}: expected an image file name, "
            f"found an empty cell."
        )
    return value
