"""Classical baselines in the report and comparisons.json: their rows beside the zero-shot ones."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tools.conftest import write_eval
from tests.tools.report_checks import assert_no_placeholder
from tools.report import write_report

NIQE = {"name": "niqe", "method": "NIQE", "package": "iqa-torch", "pinned_version": "1.2.1",
        "installed_version": "1.2.1", "direction": "lower raw score = better image; "
        "predictions are minus the raw score"}
NIQE_LABEL = "NIQE, classical opinion-unaware baseline (iqa-torch 1.2.1)"


def _section(text: str, heading: str) -> str:
    return text.split(f"## {heading}")[1].split("\n## ")[0]


def test_classical_rows_join_every_zero_shot_table(complete_run: Path, images: list[Path]) -> None:
    write_eval(complete_run / "eval" / "classical_niqe.json", 0.3, images, mode="classical",
               extra={"baseline": NIQE})
    text = write_report(complete_run).read_text()
    assert_no_placeholder(text)
    main = _section(text, "Main results: KonIQ-10k")
    assert (f"| {NIQE_LABEL} | 0.3000 | 0.3100 | 0.2000 | not comparable (not on the MOS "
            "scale) |") in main
    cross = _section(text, "Cross-dataset results")
    assert f"| {NIQE_LABEL} | 0.200 / 0.210 (n=10) | 0.100 / 0.110 (n=10) |" in cross
    assert "their raw scores fall as quality rises, so they are used as minus the raw score" \
        in cross
    kadid = _section(text, "KADID-10k by distortion type")
    assert f"| {NIQE_LABEL} | 0.300 (n=405) | 0.310 (n=405) | 0.320 (n=405) |" in kadid
    assert ("**Zero-shot: QualiCLIP-pretrained encoder minus NIQE (classical, iqa-torch 1.2.1; "
            "minus its raw score)**") in text
    comp = json.loads((complete_run / "comparisons.json").read_text())["classical"]["niqe"]
    assert comp["package"] == "iqa-torch" and comp["results"]["koniq10k"]["srcc"] == 0.3
    assert set(comp["zero_shot_minus"]) == {"koniq10k", "spaq", "kadid10k", "agiqa3k"}
    assert comp["zero_shot_minus"]["spaq"]["srcc"]["diff"]["value"] == 0.0  # same CSV values
    assert comp["zero_shot_minus_mean"]["srcc"]["sets"] == 4
    assert set(comp["by_distortion"]["kadid10k"]) == {"gaussian_blur", "motion_blur", "pixelate"}


def test_without_classical_files_the_report_has_no_classical_rows(complete_run: Path) -> None:
    text = write_report(complete_run).read_text()
    assert "classical opinion-unaware baseline" not in text
    assert json.loads((complete_run / "comparisons.json").read_text())["classical"] == {}
