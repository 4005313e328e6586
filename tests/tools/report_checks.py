"""Checks shared by the report tests: no placeholder survives, linked plots exist."""

from __future__ import annotations

import re
from pathlib import Path

PLACEHOLDER = re.compile(r"\[TO BE FILLED\]|\bTBD\b|\bTODO\b|\|\s*N/A\s*\||\bnan\b|\bNone\b"
                         r"|\|[ \t]*\|")


def assert_no_placeholder(text: str) -> None:
    """No template placeholder, empty cell, NaN or None survives in the report."""
    found = PLACEHOLDER.findall(text)
    assert not found, f"placeholders in report: {found[:5]}"


def linked_images(report: Path) -> list[Path]:
    """Image files the report links to, resolved against its folder."""
    return [report.parent / m for m in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())]
