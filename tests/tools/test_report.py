"""The results report on synthetic run folders: every table filled, no placeholder, plots exist."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.tools.report_checks import assert_no_placeholder, linked_images
from tools.report import REPORT_NAME, main, write_report


def test_complete_run_fills_every_table(complete_run: Path) -> None:
    report = write_report(complete_run)
    text = report.read_text()
    assert_no_placeholder(text)
    for heading in ("Setup and hyperparameters", "Hardware and software", "Datasets",
                    "Main results: KonIQ-10k", "Cross-dataset results", "Repeated fine-tuning",
                    "Pretraining loss, collapse signals and validation per epoch",
                    "Fine-tuning curves per epoch",
                    "Computational cost", "Ablation: Pretraining epochs",
                    "Ablation: Distortion types", "Ablation: Pretraining loss",
                    "Appendix: every flag and the saved configs"):
        assert f"## {heading}" in text, heading
    assert "+0.0500" in text  # improvement of pretrained (0.75) over baseline (0.70)
    assert "- baseline: protocol plan; overrides: --epochs 3 (preset 50)" in text
    assert "0.906" in text and "published figure" in text
    assert "0 (no pretraining: the baseline run)" in text
    assert "| Rank accuracy | Level spread | Validation SRCC (held-out types) |" in text
    assert "| simplified (the main pretrained run) | 0.2500 | 0.7500" in text
    assert "| blur,jpeg,noise,brightness (the main pretrained run) |" in text
    assert "not measured (CPU run)" in text
    assert "skipped: error: LIVE-C labels not found" in text
    baseline = "| Swin-HyperIQA without QualiCLIP pretraining (baseline) |"
    assert f"{baseline} 3 | 0.7000" in text  # median of the three repeats
    plots = linked_images(report)
    assert len(plots) >= 4
    assert all(p.is_file() and p.stat().st_size > 0 for p in plots)
    assert (complete_run / "plots" / "ranking_strip.png").is_file()
    kadid = text.split("## KADID-10k by distortion type")[1].split("\n## ")[0]
    assert "| Model | gaussian_blur * | motion_blur | pixelate |" in kadid  # * = pretraining type
    assert ("| The same encoder before pretraining, zero-shot (control) | 0.100 (n=405) | "
            "0.110 (n=405) | 0.120 (n=405) |") in kadid
    cross = text.split("## Cross-dataset results")[1].split("\n## ")[0]
    control = "| The same encoder before pretraining, zero-shot (control) |"
    assert f"{control} 0.000 / 0.010 (n=10)" in cross


def test_missing_pieces_are_explained_in_words(complete_run: Path) -> None:
    for name in ("pretrained", "baseline_r1", "pretrained_r1", "baseline_r2", "pretrained_r2"):
        shutil.rmtree(complete_run / "checkpoints" / name)
    for name in ("zero_shot", "zero_shot_untrained"):
        (complete_run / "eval" / f"{name}.json").unlink()
    (complete_run / "model_info.json").unlink()
    text = write_report(complete_run).read_text()
    assert_no_placeholder(text)
    assert "not available: the pretrained run has not finished in this folder" in text
    assert "not tested: eval/zero_shot.json absent" in text
    assert "not tested: eval/zero_shot_untrained.json absent" in text
    assert "Parameter counts: not measured" in text
    assert "t-SNE of encoder features coloured by MOS: not drawn (" in text


def test_empty_run_folder_gives_a_report_of_reasons(tmp_path: Path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    text = write_report(run).read_text()
    assert_no_placeholder(text)
    assert "Pretraining has not run in this folder" in text
    assert "Wall time per stage: not measured" in text
    assert "not drawn (" in text


def test_cli_copies_report(complete_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "copy.md"
    main(["--runs_dir", str(complete_run), "--out", str(out)])
    assert out.read_text() == (complete_run / REPORT_NAME).read_text()
    assert "report written" in capsys.readouterr().out
