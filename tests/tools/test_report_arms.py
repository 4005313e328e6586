"""comparisons.json and the report on the matched-rate arm (pretraining at the baseline's encoder
rate, and the plan's rate alone) and on the variance the intervals over seeds carry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.tools.conftest import write_eval, write_finetune, write_pretrain, write_untrained
from tests.tools.report_checks import assert_no_placeholder
from tools.compare import COMPARISONS_NAME, build_comparisons
from tools.report import write_report
from tools.rundata import load_run

SEEDS = ("", "_r1", "_r2")
SCREEN = 40  # lines a reader sees before scrolling (tests/tools/test_report_first_screen.py)


def _configure(folder: Path, lr_encoder: float, encoder: str | None = None) -> None:
    """Record a run's resolved encoder rate (and the Stage-1 encoder it started from)."""
    path = folder / "finetune_config.json"
    config = json.loads(path.read_text())
    config["lr_encoder"] = lr_encoder
    if encoder is not None:
        config["args"]["pretrained_encoder"] = encoder
    path.write_text(json.dumps(config))


def _rates(run: Path, matched: tuple[float, ...] | None, images: list[Path]) -> None:
    """The fixture's arms at the plan's rates (baseline 5e-6, pretrained 1e-6), and the
    matched-rate arm at 5e-6 with the given KonIQ-10k test SRCC per seed."""
    ckpt = run / "checkpoints"
    for s in SEEDS:
        _configure(ckpt / f"baseline{s}", 5e-6)
        _configure(ckpt / f"pretrained{s}", 1e-6)
    if matched is None:
        return
    for s, srcc in zip(SEEDS, matched, strict=True):
        write_finetune(ckpt / f"pretrained_matched{s}", srcc, run.parent / "no_data",
                       pretrained=True)
        _configure(ckpt / f"pretrained_matched{s}", 5e-6)
    write_eval(run / "eval" / "pretrained_matched.json", 0.66, images)


def _screen(text: str) -> str:
    return "\n".join(text.splitlines()[:SCREEN])


def test_matched_rate_answer_and_rate_effect(complete_run: Path, images: list[Path]) -> None:
    # baseline 0.70 / 0.68 / 0.72, pretrained at 1e-6 0.75 / 0.74 / 0.77 (the fixture)
    _rates(complete_run, (0.78, 0.77, 0.79), images)
    text = write_report(complete_run).read_text()
    comp = json.loads((complete_run / COMPARISONS_NAME).read_text())
    assert comp["encoder_rates"] == {"baseline": 5e-6, "pretrained": 1e-6,
                                     "pretrained_matched": 5e-6, "confounded": True}
    matched, rate = comp["matched_rate"], comp["rate_effect"]
    assert (matched["reference"], matched["new"]) == ("baseline", "pretrained_matched")
    assert (rate["reference"], rate["new"]) == ("pretrained_matched", "pretrained")
    koniq = matched["verdicts"]["koniq"]
    assert koniq["basis"] == "paired t interval over 3 seeds" and koniq["verdict"] == "yes"
    assert koniq["value"] == pytest.approx((0.08 + 0.09 + 0.07) / 3)
    assert matched["seeds"]["koniq10k_srcc"]["diff"] == pytest.approx([0.08, 0.09, 0.07])
    assert rate["verdicts"]["koniq"]["verdict"] == "no"  # the lower rate costs SRCC here
    assert rate["seeds"]["koniq10k_srcc"]["diff"] == pytest.approx([-0.03, -0.03, -0.02])
    # one run per arm scored cross-dataset: the bootstrap, and an inconclusive answer
    assert matched["verdicts"]["cross_dataset"]["one_run"]
    assert set(matched["finetuned"]) == {"spaq", "kadid10k", "agiqa3k", "koniq10k"}

    assert ("**[Pretraining at the baseline's encoder rate](#pretraining-at-the-baselines-"
            "encoder-rate)** Does pretraining help at the baseline's encoder rate? KonIQ-10k "
            "**yes**, cross-dataset **inconclusive**. Does the pretrained runs' encoder rate "
            "(1e-06 instead of 5e-06) help? KonIQ-10k **no**, cross-dataset **inconclusive**."
            ) in _screen(text)
    body = text.split("## Pretraining at the baseline's encoder rate")[1].split("\n## ")[0]
    assert ("Encoder learning rates: baseline 5e-06, pretrained 1e-06, matched-rate arm 5e-06."
            ) in body
    assert ("| Does pretraining help at the baseline's encoder rate? | matched-rate arm minus "
            "baseline | **yes**: gain +0.0800 (95 % CI ") in body
    assert ("| Does the pretrained runs' encoder rate (1e-06 instead of 5e-06) help? | pretrained "
            "minus matched-rate arm | **no**: gain -0.0267 (95 % CI ") in body
    assert "| Both at once (the main answers) | pretrained minus baseline | **yes**: " in body
    assert "Swin-HyperIQA, QualiCLIP-pretrained encoder at the baseline's encoder rate" in text
    assert_no_placeholder(text)


def test_without_the_matched_arm_the_rate_confound_is_named(complete_run: Path,
                                                            images: list[Path]) -> None:
    _rates(complete_run, None, images)
    text = write_report(complete_run).read_text()
    comp = json.loads((complete_run / COMPARISONS_NAME).read_text())
    assert comp["encoder_rates"]["confounded"] is True
    assert comp["matched_rate"] == comp["rate_effect"] == {"reason": (
        "the matched-rate arm did not run (MATCHED_RATE: auto runs it from 3 repeats, "
        "`--matched_rate 1` at any number), so the main answers mix pretraining with the lower "
        "encoder rate")}
    assert ("The pretrained runs fine-tuned the encoder at 1e-06, the baseline at 5e-06: the "
            "answers above mix pretraining with the encoder rate (`--matched_rate 1` separates "
            "them).") in _screen(text)
    body = text.split("## Pretraining at the baseline's encoder rate")[1].split("\n## ")[0]
    assert "No matched-rate answer: the matched-rate arm did not run" in body
    assert_no_placeholder(text)


def _stage1_runs(run: Path, sources: tuple[str, ...]) -> None:
    """Pretraining runs pretrain_r<j> (seed 42 + j) with their controls, and pretrained seed i
    started from sources[i]."""
    ckpt = run / "checkpoints"
    for name in sorted(set(sources) - {"pretrain"}):
        j = int(name.rsplit("_r", 1)[1])
        for folder, write in ((name, write_pretrain), (f"untrained_r{j}", write_untrained)):
            write(ckpt / folder)
            config = json.loads((ckpt / folder / "pretrain_config.json").read_text())
            config["args"]["seed"] = 42 + j
            (ckpt / folder / "pretrain_config.json").write_text(json.dumps(config))
    for s, source in zip(SEEDS, sources, strict=True):
        _configure(ckpt / f"pretrained{s}", 1e-6, f"{ckpt / source}/swin_micro_qualiclip_best.pkl")


@pytest.mark.parametrize(("sources", "kind", "statement"), [
    (("pretrain",) * 3, "excluded",
     "fine-tuning variance only: one pretraining run, pretrain, served all 3 seeds, so Stage-1 "
     "variance is not in them; `--pretrain_repeats 3` gives each seed its own"),
    (("pretrain", "pretrain_r1", "pretrain"), "partly",
     "fine-tuning variance and only part of Stage-1's: 2 pretraining runs served 3 seeds, and "
     "seeds that share a run understate Stage-1 variance; `--pretrain_repeats 3` gives each seed "
     "its own"),
    (("pretrain", "pretrain_r1", "pretrain_r2"), "included",
     "fine-tuning and Stage-1 variance: each of the 3 pretrained seeds started from its own "
     "pretraining run"),
])
def test_the_variance_statement_follows_the_stage1_runs(complete_run: Path, sources: tuple,
                                                        kind: str, statement: str) -> None:
    _stage1_runs(complete_run, sources)
    text = write_report(complete_run).read_text()
    variance = json.loads((complete_run / COMPARISONS_NAME).read_text())["variance"]
    assert variance["stage1_variance"] == kind and variance["statement"] == statement
    assert variance["stage1_of_seed"] == dict(zip(("0", "1", "2"), sources, strict=True))
    assert ("The KonIQ-10k answer rests on a paired t interval over 3 seeds. Intervals over "
            f"seeds carry {statement}.") in _screen(text)
    repeats = text.split("## Repeated fine-tuning (median and spread)")[1].split("\n## ")[0]
    assert f"The intervals over seeds carry {statement}." in repeats
    runs = {r["name"]: r for r in variance["stage1_runs"]}
    assert sorted(runs) == sorted(set(sources))
    if len(runs) > 1:
        assert runs["pretrain_r1"]["seed"] == 43 and runs["pretrain_r1"]["seeds_served"] == [1]
        assert runs["pretrain_r1"]["status"] == runs["pretrain"]["status"] == "pass"
        assert "| pretrain_r1 | 43 | 1 | pass |" in repeats
    else:
        assert "| Stage-1 run |" not in repeats
    assert_no_placeholder(text)


def test_a_failed_later_stage1_run_is_warned_on_the_first_screen(complete_run: Path) -> None:
    _stage1_runs(complete_run, ("pretrain", "pretrain_r1", "pretrain_r2"))
    shutil.rmtree(complete_run / "checkpoints" / "untrained_r2")
    variance = build_comparisons(load_run(complete_run), resamples=200)["variance"]
    runs = {r["name"]: r for r in variance["stage1_runs"]}
    assert runs["pretrain_r1"]["status"] == "pass" and runs["pretrain_r2"]["status"] == "fail"
    assert "untrained control has not run" in runs["pretrain_r2"]["reasons"][0]
    screen = _screen(write_report(complete_run).read_text())
    assert "**Stage-1 run pretrain_r2 failed its health check** (validation against the " \
        "untrained control not measured: " in screen
    assert "fine-tuning seeds started from it: 2." in screen
    assert "Stage-1 run pretrain_r1 failed" not in screen
