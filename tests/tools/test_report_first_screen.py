"""The report's first screen: the four answers, their evidence and the caveat once; warnings of
degenerate models; every flag and config in the appendix, not on top."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tests.tools.report_checks import assert_no_placeholder
from tools.report import write_report
from tools.verdicts import QUESTIONS

SCREEN = 40  # lines a reader sees before scrolling


def _one_run(run: Path) -> Path:
    """The fixture's run folder with one training run per model (no repeats)."""
    for name in ("baseline_r1", "pretrained_r1", "baseline_r2", "pretrained_r2"):
        shutil.rmtree(run / "checkpoints" / name)
    return run


def test_first_screen_holds_each_answer_and_the_caveat_once(complete_run: Path) -> None:
    text = write_report(_one_run(complete_run)).read_text()
    screen = "\n".join(text.splitlines()[:SCREEN])
    for question in QUESTIONS.values():
        assert screen.count(question) == 1, question
    assert screen.count("**Caveat:**") == 1
    assert screen.count("seed-to-seed") == 1
    assert "basis:" not in text and "Key findings" not in text
    assert ("**Caveat:** one training run per model behind the KonIQ-10k and cross-dataset "
            "answers.") in screen
    assert ("| Better on KonIQ-10k? | **inconclusive** (one training run) | test SRCC 0.7000 "
            "without, 0.7500 with pretraining: gain") in screen
    assert "| mean over 3 test sets: gain " in screen
    assert ("**[Can this experiment detect a gain?](#can-this-experiment-detect-a-gain)** Not "
            "tested: the controls were not run") in screen
    assert ("**[Could this run have seen the expected gain?]"
            "(#could-this-run-have-seen-the-expected-gain)** ") in screen
    assert "**Next step:** Repeat the fine-tuning (`--repeats 5`)" in screen
    # the detail stays available below, flags and configs at the end
    assert "## Can this experiment detect a gain?" in text.split(screen)[1]
    appendix = text.split("## Appendix: every flag and the saved configs")[1]
    assert "| `lr` | 5e-06 | 5e-06 |" in appendix and "<details><summary>" in appendix
    assert "<details>" not in text.split("## Appendix")[0]
    assert_no_placeholder(text)


def _constant_predictions(path: Path, low: float, high: float) -> None:
    """Overwrite a predictions CSV with predictions between low and high whatever the MOS."""
    rng = np.random.default_rng(0)
    lines = ["image,mos,prediction"]
    for i in range(20):
        lines.append(f"img{i}.png,{rng.uniform(0, 100):.3f},{rng.uniform(low, high):.3f}")
    path.write_text("\n".join(lines) + "\n")


def test_a_degenerate_model_is_warned_on_the_first_screen(complete_run: Path) -> None:
    ev = complete_run / "eval"
    record = json.loads((ev / "baseline.json").read_text())
    record["config"] = {"dataset": "koniq10k", "mos_range": [0.0, 100.0], "score_scale": 28.0}
    record["results"]["spaq"]["srcc"] = None  # written as null when the predictions are constant
    (ev / "baseline.json").write_text(json.dumps(record))
    _constant_predictions(ev / "baseline_koniq10k_predictions.csv", 50.2, 51.0)
    _constant_predictions(ev / "pretrained_koniq10k_predictions.csv", 10.0, 90.0)
    text = write_report(_one_run(complete_run)).read_text()
    screen = "\n".join(text.splitlines()[:SCREEN])
    assert "**Degenerate model**: the baseline predicts almost one score on KonIQ-10k " in screen
    assert "% of the MOS SD" in screen and "predictions 50.2" in screen
    assert "SPAQ (SRCC undefined: the predictions do not vary)" in screen
    assert "the QualiCLIP-pretrained model predicts almost one score" not in text
