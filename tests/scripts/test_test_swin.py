"""test_swin.py: reproduces the training run's test score, cross-dataset JSON, image scoring."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from common.checkpoint import atomic_save
from common.cli import run_script
from data.images import load_resized
from data.registry import read_rows, resize_policy
from data.rows import DatasetError
from models.classical_iqa import load_scorer, raw_score
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


@pytest.fixture(scope="module")
def encoder_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Stage-1 encoder checkpoint (random micro encoder, scalar head)."""
    encoder = SwinEncoder("micro")
    path = tmp_path_factory.mktemp("encoder") / "swin_micro_qualiclip_pretrained.pkl"
    pretrained = QualityPretrainModel(encoder, ScalarQualityHead(encoder.num_features))
    atomic_save(make_encoder_checkpoint(pretrained, {}, 1, {}), path)
    return path


def test_encoder_checkpoint_runs_zero_shot(encoder_checkpoint: Path, script_argv, tmp_path: Path,
                                           demo_root: Path) -> None:
    argv = script_argv(tmp_path, "--model_path", str(encoder_checkpoint), "--output",
                       str(tmp_path / "cross_dataset_results.json"), "--test_datasets", "livec",
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


def test_kadid_is_reported_per_distortion_type_and_can_be_restricted(
        encoder_checkpoint: Path, script_argv, tmp_path: Path) -> None:
    output = tmp_path / "kadid.json"
    argv = script_argv(tmp_path, "--model_path", str(encoder_checkpoint), "--output", str(output),
                       "--test_datasets", "kadid", "--test_patches", "1", "--overwrite",
                       training=False)
    assert main(argv) == 0
    per_type = json.loads(output.read_text())["by_distortion"]["kadid10k"]
    assert list(per_type) == ["gaussian_blur", "motion_blur", "jpeg", "gaussian_noise",
                              "pixelate", "contrast_change"]  # the demo's six, in KADID order
    assert {m["n"] for m in per_type.values()} == {30}

    assert main([*argv, "--kadid_types", "3,pixelate"]) == 0
    report = json.loads(output.read_text())
    assert report["results"]["kadid10k"]["n"] == 60 and report["subsets"]["kadid10k"] == "2 types"
    assert list(report["by_distortion"]["kadid10k"]) == ["motion_blur", "pixelate"]
    names = {row["image"] for row in read_csv(tmp_path / "kadid_kadid10k_predictions.csv")}
    assert len(names) == 60 and all(n.split("_")[1] in ("03", "21") for n in names)
    with pytest.raises(DatasetError, match="kadid10k has no images of the types denoise"):
        main([*argv, "--kadid_types", "denoise"])
    argv[argv.index("kadid")] = "livec"
    with pytest.raises(DatasetError, match="not among --test_datasets; add kadid10k"):
        main([*argv, "--kadid_types", "3"])


def test_a_squash_trained_model_is_tested_on_squashed_images(script_argv, tmp_path: Path) -> None:
    from train_swin import main as train_main

    argv = script_argv(tmp_path, "--dataset", "koniq10k", "--model_name", "squash", "--epochs",
                       "1", "--batch_size", "8", "--max_steps_per_epoch", "1", "--test_patches",
                       "2", "--val_patches", "1", "--resize", "squash")
    assert train_main(argv) == 0
    run_dir = tmp_path / "runs" / "squash"
    results = json.loads((run_dir / "results.json").read_text())
    output = tmp_path / "cross.json"
    assert main(script_argv(tmp_path, "--model_path", str(run_dir / "best_model.pkl"), "--output",
                            str(output), "--test_datasets", "koniq10k", training=False)) == 0
    report = json.loads(output.read_text())
    assert report["config"]["resize"] == "squash"
    assert report["results"]["koniq10k"]["srcc"] == pytest.approx(results["test"]["srcc"],
                                                                  abs=1e-6)


def test_baselines_write_their_rows_where_a_model_writes_its_own(script_argv, tmp_path: Path,
                                                                 demo_root: Path) -> None:
    output = tmp_path / "eval" / "classical.json"
    argv = script_argv(tmp_path, "--baselines", "piqe", "brisque", "--output", str(output),
                       "--test_datasets", "kadid10k", "livec", "--kadid_types", "1,25",
                       training=False)
    assert main(argv) == 0
    assert not output.exists()  # no model: only the baselines' files
    for name in ("piqe", "brisque"):
        report = json.loads((tmp_path / "eval" / f"classical_{name}.json").read_text())
        assert report["mode"] == "classical" and report["baseline"]["name"] == name
        assert report["baseline"]["direction"].startswith("lower raw score = better image")
        assert report["results"]["kadid10k"]["n"] == 60 and report["results"]["livec"]["n"] == 30
        by_type = report["by_distortion"]["kadid10k"]
        assert set(by_type) == {"gaussian_blur", "contrast_change"}
        assert by_type["gaussian_blur"]["srcc"] > 0.5  # blurrier: higher raw, lower prediction
    rows = read_csv(tmp_path / "eval" / "classical_piqe_livec_predictions.csv")
    first = read_rows("livec", demo_root)[0]
    image = load_resized(first.path, resize_policy("livec"))
    assert rows[0]["image"] == first.name
    assert float(rows[0]["prediction"]) == pytest.approx(-raw_score("piqe", image), abs=1e-6)


def test_a_model_and_baselines_in_one_call(encoder_checkpoint: Path, script_argv,
                                           tmp_path: Path, demo_root: Path) -> None:
    argv = script_argv(tmp_path, "--model_path", str(encoder_checkpoint), "--output",
                       str(tmp_path / "zero_shot.json"), "--baselines", "piqe",
                       "--test_datasets", "livec", "--test_patches", "1", training=False)
    assert main(argv) == 0
    model = json.loads((tmp_path / "zero_shot.json").read_text())
    piqe = json.loads((tmp_path / "zero_shot_piqe.json").read_text())
    assert model["mode"] == "zero_shot" and piqe["mode"] == "classical"
    assert model["results"]["livec"]["n"] == piqe["results"]["livec"]["n"] == 30


def test_baseline_flags_are_checked(script_argv, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(script_argv(tmp_path, "--test_datasets", "livec", training=False))
    assert stop.value.code == 2
    assert ("error: give --model_path (a checkpoint to test) and/or --baselines NAME... "
            "(classical methods: niqe, brisque, piqe)") in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(script_argv(tmp_path, "--baselines", "piqe", "--images", "a.jpg", training=False))
    assert "error: --images scores with a model: give --model_path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(script_argv(tmp_path, "--model_path", "m.pkl", "--baselines", "piqe", "--images",
                         "a.jpg", training=False))
    assert ("error: --baselines scores test sets, not --images: name them with --test_datasets"
            in capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(script_argv(tmp_path, "--baselines", "niqe", "ma-iqa", training=False))
    assert ("argument --baselines: unknown classical baseline 'ma-iqa'; available: niqe (NIQE, "
            "iqa-torch 1.2.1), brisque (BRISQUE, brisque 0.2.0), piqe (PIQE, pypiqe 1.2)"
            ) in capsys.readouterr().err


def test_a_missing_baseline_package_stops_before_scoring(script_argv, tmp_path: Path, capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    load_scorer.cache_clear()
    monkeypatch.setitem(sys.modules, "pypiqe.piqe", None)  # import now fails as if absent
    output = tmp_path / "classical.json"
    try:
        status = run_script(lambda: main(script_argv(
            tmp_path, "--baselines", "niqe", "piqe", "--test_datasets", "livec", "--output",
            str(output), training=False)))
    finally:
        load_scorer.cache_clear()
    assert status == 2
    assert ("error: the PIQE baseline needs the PyPI package pypiqe==1.2, which could not be "
            "imported") in capsys.readouterr().err
    assert not list(tmp_path.glob("classical_*"))  # nothing scored, nothing written


def test_baseline_files_of_an_earlier_call_are_not_replaced(script_argv, tmp_path: Path,
                                                            capsys) -> None:
    output = tmp_path / "classical.json"
    argv = script_argv(tmp_path, "--baselines", "piqe", "--test_datasets", "livec", "--output",
                       str(output), training=False)
    assert main(argv) == 0
    assert run_script(lambda: main(argv)) == 2
    assert (f"error: --output {output}: {tmp_path / 'classical_piqe.json'}, "
            f"{tmp_path / 'classical_piqe_livec_predictions.csv'} already exist(s) from an "
            "earlier call; pass --overwrite to replace") in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
