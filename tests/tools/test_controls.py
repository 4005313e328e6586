"""Positive and sham controls: comparisons.json "controls" and the report section, on run folders
whose control runs have known test SRCCs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tools.conftest import write_finetune
from tests.tools.report_checks import assert_no_placeholder
from tools.compare import COMPARISONS_NAME, build_comparisons
from tools.controls import control_comparisons, controls_section
from tools.report import write_report
from tools.rundata import load_run

SCRATCH = (0.60, 0.62, 0.58)
CLEAR_GAIN = (0.70, 0.73, 0.69)
NO_GAIN = (0.601, 0.618, 0.583)


def write_controls(run: Path, positive: tuple, sham: tuple, scratch: tuple = SCRATCH) -> None:
    """Control run folders ctl_<arm>_s<i> with the given test SRCCs, on 25 % of the labels."""
    for arm, values in (("scratch", scratch), ("positive", positive), ("sham", sham)):
        for i, srcc in enumerate(values):
            folder = run / "checkpoints" / f"ctl_{arm}_s{i}"
            write_finetune(folder, srcc, run / "no_data", pretrained=arm != "scratch")
            config = json.loads((folder / "finetune_config.json").read_text())
            config["args"].update(label_fraction=0.25, label_seed=42 + i, seed=42 + i)
            (folder / "finetune_config.json").write_text(json.dumps(config))


def test_clear_positive_and_flat_sham_both_pass(tmp_path: Path) -> None:
    write_controls(tmp_path, CLEAR_GAIN, NO_GAIN)
    ctl = build_comparisons(load_run(tmp_path))["controls"]
    assert ctl["fraction"] == 25 and ctl["seeds"] == 3
    positive, negative = ctl["positive"], ctl["negative"]
    assert positive["verdict"] == "yes" and positive["passed"] and positive["expected"] == "yes"
    assert positive["n"] == 3 and positive["value"] == pytest.approx(0.1067, abs=1e-4)
    assert positive["low"] > 0 and positive["srcc"]["diff"] == pytest.approx([0.10, 0.11, 0.11])
    assert positive["plcc"]["verdict"] == "yes"
    assert negative["verdict"] == "inconclusive" and negative["passed"]
    assert negative["expected"] == "no or inconclusive"
    assert negative["low"] < 0 < negative["high"]


def test_positive_without_gain_fails_and_sham_with_gain_fails(tmp_path: Path) -> None:
    write_controls(tmp_path, NO_GAIN, CLEAR_GAIN)
    ctl = control_comparisons(load_run(tmp_path))
    assert ctl["positive"]["verdict"] == "inconclusive" and ctl["positive"]["passed"] is False
    assert ctl["negative"]["verdict"] == "yes" and ctl["negative"]["passed"] is False


def test_a_control_with_one_finished_seed_is_not_measured(tmp_path: Path) -> None:
    write_controls(tmp_path, CLEAR_GAIN[:1], NO_GAIN)
    ctl = control_comparisons(load_run(tmp_path))
    assert ctl["positive"]["n"] == 1 and ctl["positive"]["passed"] is False
    assert "a paired interval needs 2" in ctl["positive"]["reason"]
    text = controls_section({"controls": ctl})
    assert "this run could not have detected a real gain" in text
    assert "| no: not measured (1 seed(s) with both runs finished" in text
    assert "The sham control passed: the comparison does not invent gains." in text


def test_no_controls_gives_an_empty_entry_and_says_how_to_run_them(tmp_path: Path) -> None:
    assert control_comparisons(load_run(tmp_path)) == {}
    text = controls_section({"controls": {}})
    assert "`bash run_qualiclip_experiments.sh --controls`" in text


def test_section_says_what_the_controls_mean_for_the_main_verdicts(tmp_path: Path) -> None:
    write_controls(tmp_path, CLEAR_GAIN, NO_GAIN)
    passed = controls_section({"controls": control_comparisons(load_run(tmp_path))})
    assert "the pipeline detects a gain of the positive control's size" in passed
    assert "does not invent one; an inconclusive main answer means no detectable gain at this " \
        "power" in passed
    assert "[Could this run have seen the expected gain?]" \
        "(#could-this-run-have-seen-the-expected-gain)" in passed
    assert "| positive control |" in passed and "| yes | yes |" in passed
    assert "| sham control (negative) |" in passed and "| inconclusive | yes |" in passed
    assert "(a mean of +0.1067 SRCC)" in passed
    assert "on 25 % of the KonIQ-10k training labels" in passed
    write_controls(tmp_path, NO_GAIN, CLEAR_GAIN)
    failed = controls_section({"controls": control_comparisons(load_run(tmp_path))})
    assert "this run could not have detected a real gain" in failed
    assert "main 'inconclusive' answers say nothing" in failed
    assert "the comparison invents gains, so the main 'yes' answers are not trustworthy" in failed
    assert "detects a gain of the positive control's size" not in failed


def test_report_states_the_controls_beside_the_verdicts(complete_run: Path) -> None:
    write_controls(complete_run, CLEAR_GAIN, NO_GAIN)
    text = write_report(complete_run).read_text()
    assert_no_placeholder(text)
    comp = json.loads((complete_run / COMPARISONS_NAME).read_text())
    assert comp["controls"]["positive"]["passed"] and comp["controls"]["negative"]["passed"]
    helps = text.split("## Does pretraining help?")[1].split("\n## ")[0]
    assert ("**[Can this experiment detect a gain?](#can-this-experiment-detect-a-gain)** Yes; "
            "positive control (expected yes): yes, passed; sham control (expected no or "
            "inconclusive): ") in helps
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    at = headings.index("## Uncertainty of every difference")  # the detail, with the statistics
    assert headings[at + 1] == "## Can this experiment detect a gain?"
    assert headings[at + 2] == "## Could this run have seen the expected gain?"
