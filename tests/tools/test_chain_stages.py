"""The chain skips a finished stage only when its recorded settings equal the requested ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools.stage_settings import differences, settings_of

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "run_qualiclip_experiments.sh"


def chain(run_dir: Path, data_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RUN_DIR": str(run_dir), "DATA_ROOT": str(data_root),
           "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), "--demo", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_settings_are_the_flags_and_declared_knobs() -> None:
    before = settings_of(["MODEL_SIZE=micro"], ["python", "train.py", "--epochs", "3",
                                                "--test_datasets", "spaq", "kadid10k",
                                                "--num_workers", "4", "--lr", "1", "--lr", "2"])
    assert before == {"MODEL_SIZE": "micro", "program": "train.py", "--epochs": "3",
                      "--test_datasets": "spaq kadid10k", "--lr": "2"}
    now = settings_of([], [".venv/bin/python", "train.py", "--epochs", "5", "--num_workers", "0",
                           "--test_datasets", "spaq", "kadid10k", "--lr", "2", "--compile"])
    assert differences(before, now) == ["--compile '' is new", "--epochs was '3', now '5'",
                                        "MODEL_SIZE 'micro' is no longer given"]


def test_unknown_force_stage_is_an_error_listing_the_stages(tmp_path: Path) -> None:
    out = chain(tmp_path / "run", tmp_path, "--force", "bogus")
    assert out.returncode == 2
    assert "error: --force bogus: no such stage; the stages are: all demo_data data pretrain" \
        in out.stderr
    assert not (tmp_path / "run" / "logs").exists()  # stopped before any stage


def test_a_stage_finished_with_other_settings_stops_the_chain(tmp_path: Path,
                                                             demo_root: Path) -> None:
    run_dir = tmp_path / "run"
    marker = run_dir / ".done" / "data"
    subprocess.run([sys.executable, "-m", "tools.stage_settings", "record", str(marker),
                    f"DATA_ROOT={demo_root}", "MODEL_SIZE=base", "--", "stage_data"],
                   cwd=REPO, check=True)
    out = chain(run_dir, demo_root)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "error: stage 'data' finished " in out.stderr
    assert "with other settings: MODEL_SIZE was 'base', now 'mini'" in out.stderr
    assert "--force data" in out.stderr and "[run]" not in out.stdout


def test_a_forced_test_stage_deletes_only_its_own_eval_files(tmp_path: Path) -> None:
    from tests.tools.test_chain_parallel import chain as stub_chain  # two repeats

    stub_chain(tmp_path, "run")
    ev = tmp_path / "run" / "eval"
    kept = [ev / "pretrained_r1_koniq10k_predictions.csv",
            ev / "zero_shot_untrained_koniq10k_predictions.csv"]
    assert all(p.is_file() for p in kept)
    _, commands = stub_chain(tmp_path, "run", "--force", "test_pretrained", "--force",
                             "test_zero_shot")
    assert [c[c.index("--output") + 1] for c in commands if c[0] == "test_swin.py"] == [
        "RUN/eval/pretrained.json", "RUN/eval/zero_shot.json"]
    assert all(p.is_file() for p in kept)  # NAME_*_predictions.csv would have taken these
    assert (ev / "pretrained_koniq10k_predictions.csv").is_file()
