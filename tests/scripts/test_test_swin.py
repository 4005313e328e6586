"""test_swin.py: reproduces the training run's test score, cross-dataset JSON, image scoring."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from data.registry import read_rows
from data.rows import DatasetError
from engine.checkpoint import atomic_save
from models.pretrain_heads import ScalarQualityHead
from models.pretrain_model import QualityPretrainModel, make_encoder_checkpoint
from models.swin_encoder import SwinEncoder
from test_swin import get_args_parser, main


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_defaults() -> None:
    args = get_args_parser().parse_args(["--model_path", "m.pkl"])
    assert args.test_datasets is None and args.test_patches is None and args.model_size is None


def test_reproduces_the_training_test_score(trained_run: dict, script_argv, tmp_path: Path,
                                            demo_root: Path) -> None:
    best = trained_run["run_dir"] / "best_model.pkl"
    output = tmp_path / "cross.json"
    key = trained_run["results"]["dataset"]
    argv = script_argv(tmp_path, "--model_path", str(best), "--output", str(output),
                       "--test_datasets", key, "agiqa-3k", training=False)
    assert main(argv) == 0
    report = json.loads(output.read_text())
    expected = trained_run["results"]["test"]
    assert report["mode"] == "finetuned" and report["subsets"][key] == "test split"
    assert report["results"][key]["srcc"] == pytest.approx(expected["srcc"], abs=1e-6)
    assert report["results"][key]["n"] == expected["n"]
    assert report["results"]["agiqa3k"]["n"] == 30 and report["subsets"]["agiqa3k"] == "all images"
    rows = read_csv(tmp_path / "cross_agiqa3k_predictions.csv")
    assert len(rows) == 30 and set(rows[0]) == {"image", "mos", "prediction"}


def test_images_are_scored_to_csv(trained_run: dict, script_argv, tmp_path: Path,
                                  demo_root: Path) -> None:
    folder = demo_root / "livec" / "Images" / "trainingImages"
    scores = tmp_path / "scores.csv"
    argv = script_argv(tmp_path, "--model_path", str(trained_run["run_dir"] / "best_model.pkl"),
                       "--images", str(folder), "--scores_csv", str(scores),
                       "--test_patches", "1", training=False)
    assert main(argv) == 0
    rows = read_csv(scores)
    assert len(rows) == 7 and all(float(r["score"]) > 0 for r in rows)
    assert "higher = better" in (tmp_path / "logs" / "test_swin.log").read_text()


def test_encoder_checkpoint_runs_zero_shot(script_argv, tmp_path: Path, demo_root: Path) -> None:
    encoder = SwinEncoder("micro")
    path = tmp_path / "swin_micro_qualiclip_pretrained.pkl"
    pretrained = QualityPretrainModel(encoder, ScalarQualityHead(encoder.num_features))
    atomic_save(make_encoder_checkpoint(pretrained, {}, 1, {}), path)
    argv = script_argv(tmp_path, "--model_path", str(path), "--test_datasets", "livec",
                       "--test_patches", "1", training=False)
    assert main(argv) == 0
    report = json.loads((tmp_path / "cross_dataset_results.json").read_text())
    assert report["mode"] == "zero_shot"
    assert report["results"]["livec"]["n"] == len(read_rows("livec", demo_root))


def test_missing_datasets_are_named_or_skipped(trained_run: dict, script_argv,
                                               tmp_path: Path) -> None:
    best = str(trained_run["run_dir"] / "best_model.pkl")
    argv = script_argv(tmp_path, "--model_path", best, "--output", str(tmp_path / "r.json"),
                       "--test_patches", "1", "--test_datasets", "livec", "spaq", training=False)
    empty = tmp_path / "empty_root"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"empty_root/livec in the official layout"):
        main([*argv, "--data_root", str(empty)])
    argv[argv.index("spaq")] = f"csv:{tmp_path / 'absent.csv'}"
    assert main([*argv, "--skip_missing_datasets"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["results"]) == ["livec"] and list(report["skipped"]) == [
        f"csv:{tmp_path / 'absent.csv'}"]
