"""Error messages that point the right way, and a failed run's error in its own log file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import pretrain_qualiclip
import test_swin
import train_swin
from common.cli import run_script
from common.vocabulary import TRACEBACK_ENV
from tests.scripts.conftest import build_learnable_csv

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)


def stderr_of(script_argv, tmp_path: Path, capsys, model_path: Path) -> str:
    """stderr of test_swin.py run on `model_path` (exit status 2 expected)."""
    argv = script_argv(tmp_path, "--model_path", str(model_path), "--test_datasets", "koniq10k",
                       training=False)
    assert run_script(lambda: test_swin.main(argv)) == 2
    return capsys.readouterr().err


def test_a_file_that_is_no_checkpoint_is_named_as_such(script_argv, tmp_path, capsys) -> None:
    err = stderr_of(script_argv, tmp_path, capsys, REPO / "README.md")
    assert "is not a checkpoint: it is neither a torch zip archive nor a pickle" in err
    assert "malicious" not in err and "pickled Python objects" not in err


def test_a_folder_as_model_path_lists_its_checkpoints(script_argv, tmp_path, capsys) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("last.pkl", "best_model.pkl"):
        (folder / name).write_bytes(b"PK\x03\x04")
    err = stderr_of(script_argv, tmp_path, capsys, folder)
    assert f"{folder} is a folder, not a checkpoint file; checkpoints in it: best_model.pkl, " \
           "last.pkl" in err
    assert "not found" not in err


def test_failed_run_writes_its_error_into_its_log(script_argv, tmp_path, capsys) -> None:
    argv = script_argv(tmp_path, "--dataset", "koniq10k", "--model_name", "broken",
                       "--pretrained_encoder", str(REPO / "README.md"))
    assert run_script(lambda: train_swin.main(argv)) == 2
    assert "is not a checkpoint" in capsys.readouterr().err
    log = (tmp_path / "logs" / "broken.log").read_text()
    assert "ERROR error: " in log and "README.md is not a checkpoint" in log


def test_a_csv_run_is_named_after_its_file_and_a_failed_check_leaves_nothing(
        script_argv, tmp_path, capsys, learnable_dataset, monkeypatch) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "mine.csv").write_text("image,mos,split\ngone.png,50,train\nlost.png,60,val\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = script_argv(work, "--dataset", "csv:../photos/mine.csv")
    assert run_script(lambda: train_swin.main(argv)) == 2
    err = capsys.readouterr().err
    assert "2 of 2 images listed in the labels are missing" in err
    assert "relative to the CSV's own folder" in err and "archive" not in err
    assert list(work.iterdir()) == []  # no run folder, no log
    source = Path(learnable_dataset.removeprefix("csv:"))
    shutil.copytree(source.parent, photos, dirs_exist_ok=True)
    shutil.copy(source, photos / "mine.csv")
    ok = script_argv(work, "--dataset", "csv:../photos/mine.csv", "--epochs", "1",
                     "--batch_size", "8", "--max_steps_per_epoch", "1", "--test_patches", "1",
                     "--val_patches", "1")
    assert train_swin.main(ok) == 0
    assert [p.name for p in (work / "runs").iterdir()] == ["swin_micro_csv-mine"]
    assert [p.name for p in (work / "logs").iterdir()] == ["swin_micro_csv-mine.log"]


def test_a_mistyped_flag_gets_the_closest_one_in_two_lines(capsys) -> None:
    for script, argv, hint in (
            (train_swin, ["--epoch", "2"], "--epoch: did you mean --epochs?"),
            (pretrain_qualiclip, ["--distortion", "blur"], "--distortion: did you mean "
                                                           "--distortions?"),
            (test_swin, ["--model_path", "m.pkl", "--scorescsv", "-"],
             "--scorescsv: did you mean --scores_csv?")):
        with pytest.raises(SystemExit) as stopped:
            script.get_args_parser().parse_args(argv)
        assert stopped.value.code == 2
        err = capsys.readouterr().err.splitlines()
        name = Path(script.__file__).name
        assert err == [f"{name}: error: unrecognized arguments: {' '.join(argv[-2:])}; {hint}",
                       f"(run {name} --help for every flag)"]


def test_a_csv_with_other_columns_is_told_how_to_rename(script_argv, tmp_path, capsys) -> None:
    labels = tmp_path / "mine.csv"
    labels.write_text("File Name,Score,set\na.png,50,train\n")
    argv = script_argv(tmp_path, "--dataset", f"csv:{labels}")
    assert run_script(lambda: train_swin.main(argv)) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {labels}: missing column(s) 'image', 'mos'; found columns 'File Name', 'Score', "
        "'set'. A csv: dataset needs the columns image,mos (higher = better; optional split: "
        "train/val/test, and group): rename 'File Name' to 'image' and 'Score' to 'mos' in the "
        "header line (other columns may stay)")


def test_a_tiny_csv_is_refused_before_training(script_argv, tmp_path, capsys) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    labels = build_learnable_csv(folder, splits={"train": 10, "val": 0, "test": 0})
    labels.write_text("\n".join(",".join(line.split(",")[:2])  # image,mos: no split column
                                for line in labels.read_text().splitlines()) + "\n")
    argv = script_argv(tmp_path, "--dataset", f"csv:{labels}", "--model_name", "tiny")
    assert run_script(lambda: train_swin.main(argv)) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: csv:{labels}: the random split (--split_ratios 0.7,0.1,0.2) of 10 images gives "
        "7/1/2 train/val/test images, but training needs one and validation and test 3 each "
        "(SRCC is undefined below 3, so no epoch could be selected); use at least 26 images at "
        "these ratios, or --split_ratios 0.4,0.3,0.3")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "logs").exists()
    assert train_swin.main([*argv, "--split_ratios", "0.4,0.3,0.3", "--epochs", "1",
                            "--batch_size", "4", "--max_steps_per_epoch", "1",
                            "--test_patches", "1", "--val_patches", "1"]) == 0


def test_a_wrong_data_root_names_every_missing_test_set(trained_run, script_argv, tmp_path,
                                                        capsys) -> None:
    empty = tmp_path / "empty_root"
    empty.mkdir()
    argv = script_argv(tmp_path, "--model_path", str(trained_run["run_dir"] / "best_model.pkl"),
                       "--data_root", str(empty), "--output", str(tmp_path / "r.json"),
                       "--test_datasets", "spaq", "kadid10k", "livec", training=False)
    assert run_script(lambda: test_swin.main(argv)) == 2
    err = capsys.readouterr().err
    assert f"error: 3 of 3 test sets cannot be used (--data_root {empty}):" in err
    for folder in ("spaq", "kadid10k", "livec"):
        assert f"- {folder}: " in err and f"{empty / folder} in the official layout" in err
    assert "pass --skip_missing_datasets to test on the others" in err
    assert run_script(lambda: test_swin.main([*argv, "--skip_missing_datasets"])) == 2
    assert ("error: none of the test sets spaq, kadid10k, livec could be used, so nothing was "
            "scored") in capsys.readouterr().err  # not exit 0 with an empty table
    assert not (tmp_path / "r.json").exists()


def test_a_csv_test_set_with_a_missing_image_is_told_a_flag_that_works(
        trained_run, script_argv, tmp_path, capsys, learnable_dataset) -> None:
    source = Path(learnable_dataset.removeprefix("csv:"))
    lines = source.read_text().splitlines()
    labels = source.parent / "with_gap.csv"  # beside the images its paths are relative to
    labels.write_text("\n".join([lines[0], "gone.png,50,test", *lines[1:6]]) + "\n")
    output = tmp_path / "r.json"
    argv = script_argv(tmp_path, "--model_path", str(trained_run["run_dir"] / "best_model.pkl"),
                       "--output", str(output), "--test_datasets", f"csv:{labels}",
                       "--test_patches", "1", training=False)
    assert run_script(lambda: test_swin.main(argv)) == 2
    err = capsys.readouterr().err
    assert "1 of 6 images listed in the labels are missing" in err
    assert "or pass --skip_missing to go on without them" in err
    assert run_script(lambda: test_swin.main([*argv, "--skip_missing"])) == 0
    report = json.loads(output.read_text())
    assert report["results"][f"csv:{labels}"]["n"] == 5
    log = (tmp_path / "logs" / "test_swin.log").read_text()
    assert f"--skip_missing: going on without 1 missing images of csv:{labels}" in log
