"""comparisons.json and the report's "Does pretraining help?" on run folders with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.tools.conftest import write_eval, write_finetune
from tests.tools.report_checks import assert_no_placeholder, linked_images
from tools.compare import COMPARISONS_NAME
from tools.report import write_report


def _predictions(path: Path, images: list[Path], noise: float, seed: int) -> None:
    """Overwrite a predictions CSV: MOS of the shared images plus noise of the given size."""
    rng = np.random.default_rng(seed)
    mos = np.random.default_rng(99).uniform(0, 100, len(images))
    pred = mos + rng.normal(0, noise, len(images))
    path.write_text("image,mos,prediction\n" + "".join(
        f"{img},{m:.4f},{p:.4f}\n" for img, m, p in zip(images, mos, pred, strict=True)))


def _many_images(tmp_path: Path, n: int = 120) -> list[Path]:
    return [tmp_path / f"img{i:03d}.png" for i in range(n)]  # names only: CSVs are not plotted


def _clear_gain(complete_run: Path, tmp_path: Path) -> None:
    """Predictions where the pretrained model, the zero-shot encoder and the probe clearly win."""
    images = _many_images(tmp_path)
    ev = complete_run / "eval"
    for key in ("spaq", "kadid10k", "agiqa3k", "koniq10k"):
        _predictions(ev / f"baseline_{key}_predictions.csv", images, 60, 1)
        _predictions(ev / f"pretrained_{key}_predictions.csv", images, 5, 2)
        _predictions(ev / f"zero_shot_untrained_{key}_predictions.csv", images, 60, 3)
        _predictions(ev / f"zero_shot_{key}_predictions.csv", images, 5, 4)
    probe = complete_run / "probe"
    probe.mkdir()
    metrics = {"srcc": 0.5, "plcc": 0.5, "alpha": 10.0, "n_train": 80, "n_test": 120}
    (probe / "probe.json").write_text(json.dumps({
        "model_size": "micro", "crop_size": 64, "patches": 2, "cv_folds": 5,
        "encoders": ["random", "qualiclip"], "alphas": [10.0],
        "skipped_encoders": {"imagenet": "not available: the micro model has no ImageNet weights"},
        "skipped_datasets": {},
        "results": {"koniq10k": {e: {"last": metrics, "all": metrics}
                                 for e in ("random", "qualiclip")}}}))
    for kind in ("last", "all"):
        _predictions(probe / f"random_{kind}_koniq10k_predictions.csv", images, 60, 5)
        _predictions(probe / f"qualiclip_{kind}_koniq10k_predictions.csv", images, 5, 6)
    for name, noise in (("baseline", 60), ("pretrained", 5)):
        folder = complete_run / "checkpoints" / f"labels_f25_{name}"
        write_finetune(folder, 0.6, tmp_path / "no_data", pretrained=name == "pretrained")
        write_eval(ev / f"labels_f25_{name}.json", 0.6, images, keys=("koniq10k",))
        _predictions(ev / f"labels_f25_{name}_koniq10k_predictions.csv", images, noise, 7)


def test_clear_gain_everywhere_reads_yes(complete_run: Path, tmp_path: Path) -> None:
    _clear_gain(complete_run, tmp_path)
    text = write_report(complete_run).read_text()
    comp = json.loads((complete_run / COMPARISONS_NAME).read_text())
    assert comp["resamples"] >= 1000
    verdicts = {k: v["verdict"] for k, v in comp["verdicts"].items()}
    # cross-dataset rests on one run: its bootstrap excludes zero, the answer stays inconclusive
    assert verdicts == {"cross_dataset": "inconclusive", "koniq": "yes", "convergence": "yes",
                        "features": "yes"}
    assert comp["verdicts"]["cross_dataset"]["test_interval_verdict"] == "yes"
    assert comp["verdicts"]["cross_dataset"]["basis"].startswith("paired bootstrap")
    assert comp["verdicts"]["koniq"]["basis"] == "paired t interval over 3 seeds"
    assert comp["probe"]["reference"] == "random"
    assert comp["finetuned"]["spaq"]["srcc"]["diff"]["low"] > 0
    assert set(comp["labels"]) == {"25", "100"}
    assert comp["labels"]["25"]["srcc"]["verdict"] == "yes"
    assert_no_placeholder(text)
    helps = text.split("## Does pretraining help?")[1].split("\n## ")[0]
    assert ("| Better cross-dataset? | **inconclusive** (one training run; its test-image "
            "interval alone says yes) |") in helps
    assert "| Better on KonIQ-10k? | **yes** |" in helps  # across the fixture's three seeds
    assert ("The test-image interval for cross-dataset says yes, but it rests on one training "
            "run per model; repeat with `--repeats 5` before starting fine-tuning") in helps
    assert "Starting fine-tuning from the QualiCLIP encoder is supported for KonIQ-10k" in helps
    assert "| Better quality-aware features? | **yes** |" in helps
    assert ("**Caveat:** one training run per model behind the cross-dataset answer. Its "
            "interval is a paired bootstrap over the test images") in helps
    assert "The KonIQ-10k answer rests on a paired t interval over 3 seeds" in helps
    assert "**Next step:**" in helps and "Key findings" not in text
    assert "CONTRIQUE, published figure" in text and "SRCC 0.894" in text
    assert "Re-IQA, published figure" in text and "SRCC 0.914" in text
    assert "## Label efficiency" in text and "| 25 % |" in text
    assert (complete_run / "plots" / "label_efficiency.png") in linked_images(
        complete_run / "QUALICLIP_RESULTS.md")
    stage1 = comp["stage1"]
    assert stage1["status"] == "pass" and stage1["reasons"] == []
    assert stage1["encoder"] == "swin_micro_qualiclip_best.pkl" and stage1["epoch"] == 3
    assert stage1["control"]["verdict"] == "yes" and stage1["control"]["n"] == 8
    assert stage1["control"]["value"] == pytest.approx(0.7)
    assert ("Stage-1 health **pass**: encoder `swin_micro_qualiclip_best.pkl` (best label-free "
            "validation, epoch 3 of 3): rank accuracy 0.850 (collapse at <= 0.6), level spread "
            "5.00e-02 (collapse below 5.00e-03), validation SRCC 0.700 against 0.000 for the "
            "untrained control, a gain of +0.700 (95 % CI") in text


def test_a_collapsed_stage1_cannot_answer_the_feature_question(complete_run: Path,
                                                               tmp_path: Path) -> None:
    _clear_gain(complete_run, tmp_path)
    metrics = complete_run / "checkpoints" / "pretrain" / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    for record in records:  # chance ranking at every epoch; the validation still looks fine
        record["rank_accuracy"] = 0.52
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    text = write_report(complete_run).read_text()
    comp = json.loads((complete_run / COMPARISONS_NAME).read_text())
    assert comp["stage1"]["status"] == "fail"
    assert comp["stage1"]["reasons"][0].startswith(
        "COLLAPSE: epoch 3: it ranks only 52.0% of level pairs correctly")
    features = comp["verdicts"]["features"]
    assert features["evidence_verdict"] == "yes" and features["verdict"] == "inconclusive"
    assert features["stage1_gate"].startswith(
        "the Stage-1 encoder failed its health check (COLLAPSE: epoch 3")
    helps = text.split("## Does pretraining help?")[1].split("\n## ")[0]
    assert ("| Better quality-aware features? | **inconclusive** | not answered: the Stage-1 "
            "encoder failed its health check (COLLAPSE: epoch 3") in helps
    assert "the evidence alone says yes (linear probe (all stages)" in helps
    assert "Fix Stage 1 before reading any answer that rests on its encoder" in helps
    assert "Stage-1 health **fail**: encoder `swin_micro_qualiclip_best.pkl`" in text


def test_stage1_without_its_control_is_not_a_pass(complete_run: Path) -> None:
    import shutil

    shutil.rmtree(complete_run / "checkpoints" / "untrained")
    write_report(complete_run)
    comp = json.loads((complete_run / COMPARISONS_NAME).read_text())
    assert comp["stage1"]["status"] == "fail"
    assert comp["stage1"]["reasons"] == [
        "validation against the untrained control not measured: the untrained control has not "
        "run (checkpoints/untrained absent)"]
    assert comp["verdicts"]["features"]["verdict"] == "inconclusive"


def test_single_run_with_no_difference_reads_inconclusive(complete_run: Path) -> None:
    import shutil

    for name in ("baseline_r1", "pretrained_r1", "baseline_r2", "pretrained_r2"):
        shutil.rmtree(complete_run / "checkpoints" / name)
    text = write_report(complete_run).read_text()
    comp = json.loads((complete_run / COMPARISONS_NAME).read_text())
    # the fixture's baseline and pretrained predictions are identical: nothing is shown
    assert {v["verdict"] for v in comp["verdicts"].values()} == {"inconclusive"}
    assert comp["convergence"]["reason"].startswith("one training run per model")
    assert "Repeat the fine-tuning (`--repeats 5`)" in text
    assert "(95 % CI" in text.split("## Main results")[0]  # the headline carries its interval


def test_repeats_give_seed_tests_on_every_test_set(complete_run: Path, images: list[Path]) -> None:
    ev = complete_run / "eval"
    for i, (base, pre) in enumerate([(0.58, 0.64), (0.61, 0.66)], start=1):
        write_eval(ev / f"baseline_r{i}.json", base, images)
        write_eval(ev / f"pretrained_r{i}.json", pre, images)
    text = write_report(complete_run).read_text()
    comp = json.loads((complete_run / COMPARISONS_NAME).read_text())
    spaq = comp["seeds"]["per_test_set"]["spaq"]["srcc"]
    assert spaq["n"] == 3 and spaq["diff"] == pytest.approx([0.05, 0.06, 0.05])
    assert spaq["verdict"] == "yes" and spaq["median_new"] == pytest.approx(0.55)
    assert comp["seeds"]["cross_mean_srcc"]["verdict"] == "yes"
    cross = comp["verdicts"]["cross_dataset"]
    assert cross["basis"] == "paired t interval over 3 seeds" and not cross.get("one_run")
    assert "| SPAQ SRCC (test_swin.py) | 3 | 0.500/0.550, 0.480/0.540, 0.510/0.560 |" in text
    assert_no_placeholder(text)
