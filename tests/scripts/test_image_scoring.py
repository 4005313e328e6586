"""test_swin.py --images: scores independent of position and order, no cache written by default,
printed and written where the user looks, no earlier output replaced unasked; the README API."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from common.checkpoint import atomic_save
from common.cli import run_script
from models.pretrain_heads import ScalarQualityHead
from models.pretrain_model import QualityPretrainModel, make_encoder_checkpoint
from models.swin_encoder import SwinEncoder
from test_swin import get_args_parser, main

REPO = Path(__file__).resolve().parents[2]


def scores_of(path: Path) -> dict[str, float]:
    with open(path, newline="") as f:
        return {Path(r["image"]).name: float(r["score"]) for r in csv.DictReader(f)}


def test_an_image_scores_the_same_at_any_position(trained_run: dict, script_argv,
                                                  tmp_path: Path, demo_root: Path) -> None:
    sources = sorted((demo_root / "koniq10k" / "1024x768").glob("*.jpg"))[:4]
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a", "c", "e", "g"):  # four copies of one photo between three others
        shutil.copy(sources[0], folder / f"{name}.jpg")
    for name, source in zip(("b", "d", "f"), sources[1:], strict=True):
        shutil.copy(source, folder / f"{name}.jpg")
    model = str(trained_run["run_dir"] / "best_model.pkl")
    cache = tmp_path / "cache"

    def score(out: Path, *images: Path) -> dict[str, float]:
        argv = script_argv(tmp_path, "--model_path", model, "--images", *map(str, images),
                           "--scores_csv", str(out), "--test_patches", "3",
                           training=False)
        argv[argv.index("--cache_dir") + 1] = str(cache)
        assert main(argv) == 0
        return scores_of(out)

    whole = score(tmp_path / "folder.csv", folder)
    copies = {whole[f"{name}.jpg"] for name in ("a", "c", "e", "g")}
    assert len(copies) == 1, whole
    assert len(set(whole.values())) == 4  # the other photos score differently
    reordered = score(tmp_path / "list.csv", folder / "g.jpg", folder / "f.jpg", folder / "a.jpg")
    # the same crops; only float32 rounding of another batch composition may differ
    expected = {name: whole[name] for name in ("g.jpg", "f.jpg", "a.jpg")}
    assert reordered == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_scoring_images_writes_no_cache_unless_asked(trained_run: dict, script_argv,
                                                     tmp_path: Path, demo_root: Path) -> None:
    photo = sorted((demo_root / "koniq10k" / "1024x768").glob("*.jpg"))[0]
    argv = script_argv(tmp_path, "--model_path", str(trained_run["run_dir"] / "best_model.pkl"),
                       "--images", str(photo), "--scores_csv", str(tmp_path / "s.csv"),
                       "--test_patches", "1", training=False)
    cache = tmp_path / "cache"
    argv[argv.index("--cache_dir") + 1] = str(cache)
    assert main(argv) == 0
    assert not cache.exists() or not any(cache.rglob("*.npy"))
    assert main([*argv, "--cache_images", "--overwrite"]) == 0
    assert len(list(cache.rglob("*.npy"))) == 1


@pytest.fixture()
def photos(tmp_path: Path, demo_root: Path) -> Path:
    """A folder of three demo photos."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for source in sorted((demo_root / "koniq10k" / "1024x768").glob("*.jpg"))[:3]:
        shutil.copy(source, folder / source.name)
    return folder


def test_scores_are_printed_and_written_to_the_current_folder(
        trained_run: dict, script_argv, tmp_path: Path, photos: Path, capsys,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = trained_run["run_dir"] / "best_model.pkl"
    before = sorted(p.name for p in model.parent.iterdir())
    argv = script_argv(tmp_path, "--model_path", str(model), "--test_patches", "1",
                       training=False)
    one = sorted(photos.iterdir())[0]
    assert main([*argv, "--images", str(one)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"\d+\.\d{{4}}  {re.escape(str(one))}", out[0])
    low, high = json.loads((model.parent / "finetune_config.json").read_text())["mos_range"]
    assert out[1].endswith("INFO scored 1 image(s) (0 unreadable, left empty) -> "
                           "image_scores.csv; higher = better, on the training set's MOS scale "
                           f"({low:g}..{high:g})")
    assert main([*argv, "--images", str(photos)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "     score  image" and len(out) == 5  # header, three rows, the log line
    assert all(line.endswith(str(path)) for line, path in zip(out[1:4], sorted(photos.iterdir()),
                                                             strict=True))
    assert ("-> image_scores_2.csv (image_scores.csv here is an earlier call's; --overwrite "
            "replaces it)") in out[4]
    assert len(scores_of(tmp_path / "image_scores.csv")) == 1
    assert len(scores_of(tmp_path / "image_scores_2.csv")) == 3
    assert sorted(p.name for p in model.parent.iterdir()) == before  # nothing beside the model


def test_scores_csv_dash_writes_the_csv_alone_to_stdout(trained_run: dict, script_argv,
                                                        tmp_path: Path, photos: Path,
                                                        capsys) -> None:
    argv = script_argv(tmp_path, "--model_path", str(trained_run["run_dir"] / "best_model.pkl"),
                       "--test_patches", "1", "--images", str(photos), "--scores_csv", "-",
                       training=False)
    assert main(argv) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [Path(r["image"]) for r in rows] == sorted(photos.iterdir())
    assert all(float(r["score"]) > 0 for r in rows)
    assert "scored 3 image(s) (0 unreadable, left empty) -> stdout" in captured.err
    assert not (tmp_path / "-").exists()


def test_an_existing_output_is_replaced_only_with_overwrite(trained_run: dict, script_argv,
                                                            tmp_path: Path, capsys,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.chdir(tmp_path)
    argv = script_argv(tmp_path, "--model_path", str(trained_run["run_dir"] / "best_model.pkl"),
                       "--test_patches", "1", "--test_datasets", "livec", training=False)
    assert main(argv) == 0 and main(argv) == 0  # the default name: a free one each time
    assert "written to cross_dataset_results_2.json (cross_dataset_results.json here is an " \
           "earlier call's; --overwrite replaces it)" in capsys.readouterr().out
    assert (tmp_path / "cross_dataset_results_livec_predictions.csv").is_file()
    assert (tmp_path / "cross_dataset_results_2_livec_predictions.csv").is_file()
    given = [*argv, "--output", "cross_dataset_results.json"]
    assert run_script(lambda: main(given)) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --output cross_dataset_results.json: cross_dataset_results.json, "
        "cross_dataset_results_livec_predictions.csv already exist(s) from an earlier call; "
        "pass --overwrite to replace, or choose another --output")
    assert main([*given, "--overwrite"]) == 0
    assert not (tmp_path / "cross_dataset_results_3.json").exists()


def test_help_and_run_agree_on_the_zero_shot_scale(script_argv, tmp_path: Path,
                                                   photos: Path) -> None:
    encoder = SwinEncoder("micro")
    path = tmp_path / "swin_micro_qualiclip_pretrained.pkl"
    atomic_save(make_encoder_checkpoint(
        QualityPretrainModel(encoder, ScalarQualityHead(encoder.num_features)), {}, 1, {}), path)
    help_text = " ".join(get_args_parser().format_help().split())
    assert "a Stage-1 encoder zero-shot on an open scale (default scalar head: compare " \
           "within one model) or in 0..1 (sigmoid or CLIP-prompt head)" in help_text
    assert "zero-shot: 0..1" not in help_text
    argv = script_argv(tmp_path, "--model_path", str(path), "--images", str(photos),
                       "--test_patches", "1", "--scores_csv", str(tmp_path / "z.csv"),
                       training=False)
    assert main(argv) == 0
    log = (tmp_path / "logs" / "test_swin.log").read_text()
    assert "higher = better, zero-shot quality on an open scale (compare within a model)" in log


def test_the_readme_python_api_runs_as_shown(trained_run: dict, tmp_path: Path, photos: Path,
                                             capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (REPO / "README.md").read_text()
    code = readme.split("From Python, the same scores:\n\n```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints" / "pretrained").mkdir(parents=True)
    (tmp_path / "checkpoints" / "pretrained" / "best_model.pkl").symlink_to(
        trained_run["run_dir"] / "best_model.pkl")
    shutil.copy(sorted(photos.iterdir())[0], tmp_path / "photo.jpg")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("higher = better, on the training set's MOS scale")
    assert printed[1].startswith("tensor([") and namespace["model"].mode == "finetuned"
    scores = namespace["scores"]
    assert list(scores) == [Path("photo.jpg"), *sorted(Path("photos").iterdir())]
    assert scores[Path("photo.jpg")] == scores[sorted(Path("photos").iterdir())[0]]
    argv = ["--model_path", "checkpoints/pretrained/best_model.pkl", "--images", "photo.jpg",
            "photos", "--scores_csv", "cli.csv", "--device", "cpu", "--num_workers", "0",
            "--log_dir", "logs"]
    assert main(argv) == 0  # the script gives the same scores
    cli = scores_of(tmp_path / "cli.csv")
    assert cli == pytest.approx({p.name: s for p, s in scores.items()}, abs=1e-6)
    assert namespace["score_tensor"](namespace["model"], namespace["crops"]).shape == (4,)


def _refusal_worker(info, argv: list[str], out: Path) -> None:
    """test_swin.main on one rank of two; records the error it stopped with."""
    from common.errors import OutputExistsError

    if info.rank == 1:  # rank 1 alone would see no earlier file: rank 0's check must decide
        Path(argv[argv.index("--output") + 1]).unlink()
        (out / "rank1_ready").touch()
    else:
        while not (out / "rank1_ready").exists():
            time.sleep(0.01)
        Path(argv[argv.index("--output") + 1]).touch()
    try:
        main(argv)
    except OutputExistsError as exc:
        (out / f"rank{info.rank}.txt").write_text(str(exc))


def test_two_ranks_both_refuse_an_existing_output(two_ranks, tmp_path: Path) -> None:
    output = tmp_path / "r.json"
    output.touch()
    argv = ["--model_path", str(tmp_path / "never_loaded.pkl"), "--test_datasets", "livec",
            "--output", str(output), "--device", "cpu", "--log_dir", str(tmp_path / "logs")]
    two_ranks(_refusal_worker, argv, tmp_path)
    expected = (f"--output {output}: {output} already exist(s) from an earlier call; pass "
                "--overwrite to replace, or choose another --output")
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == [expected, expected]
