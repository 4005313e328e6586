"""Demo label files (CSV, xlsx, mat) written so that the same content gives the same bytes."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FIXED_TIME = "2000-01-01T00:00:00Z"  # stands in for the creation time stamped into xlsx and mat
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_MAT_HEADER_BYTES = 116


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A CSV with a header row and '\\n' line endings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_xlsx(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """An .xlsx workbook (openpyxl) with one sheet; time stamps fixed so the bytes repeat."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    buffer = io.BytesIO()
    workbook.save(buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_fixed_zip(buffer.getvalue()))


def _fixed_zip(data: bytes) -> bytes:
    """Re-pack an xlsx archive with fixed entry times and document created/modified dates."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            payload = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                payload = re.sub(
                    rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*",
                    rb"\g<1>" + FIXED_TIME.encode(),
                    payload,
                )
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            dst.writestr(entry, payload, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def write_mat(path: Path, variables: dict[str, np.ndarray]) -> None:
    """A MATLAB 5 .mat file (scipy.io.savemat) whose header carries a fixed date."""
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, variables)
    data = bytearray(buffer.getvalue())
    text = f"MATLAB 5.0 MAT-file, Platform: posix, Created on: {FIXED_TIME}".encode()
    data[:_MAT_HEADER_BYTES] = text.ljust(_MAT_HEADER_BYTES, b" ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
