"""`python -m data`: the JSON summary, missing images and bad layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from data.__main__ import EXIT_BAD_LAYOUT, EXIT_MISSING_IMAGES, main
from tests.data.conftest import make_image

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run `python -m data` in a subprocess from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "data", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_koniq_summary_with_some_images_present(real_root, tmp_path):
    root = tmp_path / "root"
    (root / "koniq10k").mkdir(parents=True)
    sets = real_root / "koniq10k" / "koniq10k_distributions_sets.csv"
    (root / "koniq10k" / sets.name).write_bytes(sets.read_bytes())
    names = [line.split(",")[0] for line in sets.read_text().splitlines()[1:6]]
    for name in names:
        make_image(root / "koniq10k" / "1024x768" / name)
    result = run_cli("--data_root", str(root), "--dataset", "koniq")
    assert result.returncode == EXIT_MISSING_IMAGES, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dataset"] == "koniq10k"
    assert summary["n_images"] == 10_073
    assert summary["splits"] == {"train": 7_058, "val": 1_000, "test": 2_015}
    assert summary["missing"] == 10_073 - len(names)
    assert 0 < summary["mos_min"] < summary["mos_max"] < 100
    assert names[0] not in summary["missing_examples"]
    assert "images are missing" in result.stderr and "--skip_missing" in result.stderr


def test_complete_dataset_exits_zero(demo_root, capsys):
    assert main(["--data_root", str(demo_root), "--database", "kadid-10k"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["missing"] == 0 and summary["n_images"] == 180


def test_random_split_flags(demo_root, capsys):
    args = ["--data_root", str(demo_root), "--dataset", "koniq10k", "--split", "random"]
    assert main([*args, "--split_seed", "5", "--split_ratios", "0.8", "0", "0.2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"] == {"train": 128, "val": 0, "test": 32}


def test_bad_layout_exits_non_zero_with_a_message(tmp_path, capsys):
    assert main(["--data_root", str(tmp_path), "--dataset", "spaq"]) == EXIT_BAD_LAYOUT
    err = capsys.readouterr().err
    assert "SPAQ dataset folder not found" in err and "--data_root" in err
