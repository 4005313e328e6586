"""Checkpoint format, safe loading, atomic writes (also under SIGKILL), RNG state, writability."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from common.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_save,
    export_safetensors,
    load_checkpoint,
    load_weights,
    make_checkpoint,
    restore_rng_state,
    rng_state,
)
from common.errors import CheckpointError
from common.files import atomic_write_json, atomic_write_text, check_writable

REPO_ROOT = Path(__file__).resolve().parents[2]


class _CreatesFile:
    """Pickles to a call of open(marker, "w"): loading it with full pickle creates the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def _ckpt(kind: str = "full", **extra: object) -> dict:
    return make_checkpoint(
        kind,
        "micro",
        {"w": torch.arange(6.0).reshape(2, 3)},
        {"lr": 1e-4},
        3,
        {"srcc": 0.9},
        **extra,
    )


def test_round_trip_keeps_format_and_values(tmp_path: Path) -> None:
    path = tmp_path / "best_model.pkl"
    atomic_save(_ckpt(), path)
    loaded = load_checkpoint(path, expected_kind="full")
    assert loaded["format"] == CHECKPOINT_FORMAT
    assert loaded["kind"] == "full" and loaded["model_size"] == "micro" and loaded["epoch"] == 3
    assert loaded["config"] == {"lr": 1e-4} and loaded["metrics"] == {"srcc": 0.9}
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(6.0).reshape(2, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["best_model.pkl"]


def test_wrong_kind_and_missing_file_are_named(tmp_path: Path) -> None:
    path = tmp_path / "enc.pkl"
    atomic_save(_ckpt("encoder"), path)
    with pytest.raises(CheckpointError, match=r"'encoder' checkpoint.*'full'"):
        load_checkpoint(path, expected_kind="full")
    with pytest.raises(CheckpointError, match=r"not found.*nope.pkl"):
        load_checkpoint(tmp_path / "nope.pkl")


def test_config_must_be_json_able_and_names_the_key() -> None:
    with pytest.raises(CheckpointError, match=r"config\['data'\]\['root'\] is a pathlib"):
        make_checkpoint("full", "micro", {}, {"data": {"root": Path("/x")}}, 0, {})
    with pytest.raises(CheckpointError, match=r"metrics\['srcc'\] is a numpy.float32"):
        make_checkpoint("full", "micro", {}, {}, 0, {"srcc": np.float32(0.5)})
    with pytest.raises(CheckpointError, match=r"kind must be one of"):
        make_checkpoint("weights", "micro", {}, {}, 0, {})


def test_arbitrary_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": _CreatesFile(marker)}, evil)
    with pytest.raises(CheckpointError, match=r"refused.*No code from it was run"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match=r"refused"):
        load_weights(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # proves the payload is live: full unpickling runs it
    assert marker.exists()


def test_foreign_files_are_described(tmp_path: Path) -> None:
    bare = tmp_path / "bare.pth"
    torch.save({"layer.weight": torch.zeros(2, 2), "layer.bias": torch.zeros(2)}, bare)
    with pytest.raises(CheckpointError, match=r"bare state_dict of 2 tensors"):
        load_checkpoint(bare)
    other = tmp_path / "other.pkl"
    torch.save({"format": "someone-else/3", "state_dict": {}}, other)
    with pytest.raises(CheckpointError, match=r"format 'someone-else/3'"):
        load_checkpoint(other)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": {"a": torch.ones(1)}, "epoch": 4}, wrapped)
    with pytest.raises(CheckpointError, match=r"another codebase.*'model'"):
        load_checkpoint(wrapped)
    assert torch.equal(load_weights(wrapped)["a"], torch.ones(1))
    assert set(load_weights(bare)) == {"layer.weight", "layer.bias"}
    truncated = tmp_path / "truncated.pkl"
    atomic_save(_ckpt(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"truncated"):
        load_checkpoint(truncated)


def test_safetensors_export_round_trip(tmp_path: Path) -> None:
    shared = torch.randn(4, 4)
    state = {"a": shared, "b": shared, "c": torch.randn(3, 5).t()}
    path = tmp_path / "model.safetensors"
    export_safetensors(state, path, metadata={"model_size": "micro"})
    loaded = load_weights(path)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    with pytest.raises(CheckpointError, match=r"safetensors"):
        load_checkpoint(path)


def test_atomic_text_and_json(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "results.json"
    atomic_write_json({"srcc": 0.5, "path": Path("/a")}, path)
    assert json.loads(path.read_text()) == {"srcc": 0.5, "path": "/a"}
    atomic_write_text("hello\n", path)
    assert path.read_text() == "hello\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


def test_failed_save_keeps_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "last.pkl"
    atomic_save(_ckpt(), path)
    with pytest.raises(Exception, match=r"pickle|lambda"):
        atomic_save({"fn": lambda: 0}, path)
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.pkl"]


_SAVER = """
import sys, torch
from common.checkpoint import atomic_save, make_checkpoint
path, i = sys.argv[1], 0
while True:
    i += 1
    state = {f"t{k}": torch.full((256, 1024), float(i)) for k in range(4)}  # 4 MB
    atomic_save(make_checkpoint("full", "micro", state, {}, i, {}), path)
"""


def test_sigkill_during_repeated_saves_leaves_a_readable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pkl"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], cwd=REPO_ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        epoch = 0
        while epoch < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if path.exists():  # reading while the child saves is safe: it replaces atomically
                epoch = load_checkpoint(path)["epoch"]
        assert epoch >= 3, "the saver subprocess did not overwrite its checkpoint twice"
        while not list(tmp_path.glob(".last.pkl.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.002)  # wait until a save is in progress, so the kill cuts it short
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    ckpt = load_checkpoint(path, expected_kind="full")
    assert ckpt["epoch"] >= 3
    assert all(torch.all(t == float(ckpt["epoch"])) for t in ckpt["state_dict"].values())
    atomic_save(_ckpt(), path)  # the next save removes temp files left by the killed process
    assert [p.name for p in tmp_path.iterdir()] == ["last.pkl"]


def test_rng_state_round_trip_through_a_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.standard_normal()
    path = tmp_path / "rng.pkl"
    atomic_save(make_checkpoint("train_state", "micro", {}, {}, 0, {}, rng=rng_state()), path)

    def draw() -> tuple:
        return (
            [random.random() for _ in range(3)],
            random.gauss(0, 1),
            np.random.rand(3).tolist(),
            np.random.standard_normal(),
            torch.rand(3).tolist(),
        )

    first = draw()
    restore_rng_state(load_checkpoint(path)["rng"])
    assert draw() == first


def test_check_writable_fails_early_on_an_unwritable_folder(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not any((tmp_path / "new" / "run").iterdir())
    if os.geteuid() == 0:  # root ignores permissions: a folder below a regular file cannot exist
        blocker = tmp_path / "a_file"
        blocker.write_text("x")
        target = blocker / "sub"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "run"
    try:
        with pytest.raises(CheckpointError, match=r"not writable.*--output_dir"):
            check_writable(target)
    finally:
        if os.geteuid() != 0:
            (tmp_path / "locked").chmod(0o700)
    with pytest.raises(CheckpointError, match=r"GiB free"):
        check_writable(tmp_path, needed_bytes=2**62)


def test_write_checks_side_by_side_leave_each_others_files_alone(tmp_path: Path) -> None:
    # Runs started together share their log folder: one run's check must not take the file
    # another run's check is writing.
    other = tmp_path / ".write_test"
    other.write_text("another run's check\n")
    assert check_writable(tmp_path) == tmp_path
    assert other.read_text() == "another run's check\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".write_test"]
