"""test_swin.py --images: scores independent of position and order, no cache written by default."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from test_swin import main


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
