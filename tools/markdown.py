"""Markdown building blocks for the report: tables and number cells that never stay empty."""

from __future__ import annotations

import math
from collections.abc import Sequence


def is_number(value: object) -> bool:
    """True for a finite int or float (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def num(value: object, digits: int = 4, missing: str = "not recorded") -> str:
    """Format a number with `digits` decimals, or say in words why there is none."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if is_number(value):
        return f"{value:.{digits}f}"
    if isinstance(value, float):
        return "undefined (non-finite value)"
    return missing


def sci(value: object, missing: str = "not recorded") -> str:
    """Format a small number such as a learning rate in scientific notation (5.00e-05)."""
    return f"{value:.2e}" if is_number(value) else missing


def signed(value: object, digits: int = 4, missing: str = "not computable") -> str:
    """Format a difference with an explicit sign."""
    return f"{value:+.{digits}f}" if is_number(value) else missing


def duration(seconds: object, missing: str = "not measured") -> str:
    """Human wall time: 42.1 s, 3 min 05 s, 2 h 04 min."""
    if not is_number(seconds):
        return missing
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def size_bytes(n: object, missing: str = "file not found") -> str:
    """Human file size in KiB/MiB/GiB."""
    if not is_number(n):
        return missing
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def count(n: object, missing: str = "not counted") -> str:
    """Integer with thousands separators, e.g. 27,519,354."""
    return f"{int(n):,}" if is_number(n) else missing


def escape(text: object) -> str:
    """Make a value safe inside a table cell (pipes and newlines)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; every cell is converted with str()."""
    lines = ["| " + " | ".join(escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table row has {len(row)} cells, header has {len(header)}: {row!r}")
        lines.append("| " + " | ".join(escape(c) for c in row) + " |")
    return "\n".join(lines)


def section(title: str, *parts: str, level: int = 2) -> str:
    """A heading followed by its non-empty parts, separated by blank lines."""
    body = "\n\n".join(p for p in parts if p)
    return f"{'#' * level} {title}\n\n{body}\n"
