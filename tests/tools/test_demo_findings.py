"""The demo-run block of docs/DEMO_FINDINGS.md is rebuilt from a run's own files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.demo_findings import BEGIN, END, FindingsError, main, render_block, report_section
from tools.report import write_report

REPO = Path(__file__).resolve().parents[2]


def test_block_quotes_the_runs_report_and_timings(complete_run: Path, tmp_path: Path) -> None:
    report = write_report(complete_run).read_text()
    doc = tmp_path / "FINDINGS.md"
    doc.write_text(f"# Findings\n\nkept above\n\n{BEGIN}\nold numbers 0.999\n{END}\n\nkept below\n")
    assert main(["--run_dir", str(complete_run), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "old numbers 0.999" not in text
    assert text.startswith("# Findings\n\nkept above\n\n") and text.endswith("\n\nkept below\n")
    block = text.split(BEGIN)[1].split(END)[0]
    pretrain_table = report_section(report, "Pretraining loss, collapse signals and validation "
                                    "per epoch")
    assert pretrain_table.startswith("Stage-1 health **pass**: encoder ")
    assert "\n\n| Epoch |" in pretrain_table and pretrain_table in block
    assert report_section(report, "Does pretraining help?") in block
    assert "| pretrain |" in block and "Total wall time of the stages" in block
    assert "![" not in block  # figures stay in the report


def test_missing_markers_and_unfinished_runs_are_refused(complete_run: Path,
                                                         tmp_path: Path) -> None:
    doc = tmp_path / "FINDINGS.md"
    doc.write_text("no markers here\n")
    write_report(complete_run)
    assert main(["--run_dir", str(complete_run), "--doc", str(doc)]) == 2
    assert doc.read_text() == "no markers here\n"
    with pytest.raises(FindingsError, match="run `make demo`"):
        render_block(tmp_path / "empty_run")


def test_project_document_holds_the_markers_once() -> None:
    text = (REPO / "docs" / "DEMO_FINDINGS.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index(BEGIN) < text.index(END)
