"""Evaluation shows its progress: a bar on a terminal, log lines with images/s otherwise."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.distributed import DistInfo
from common.runlog import counter
from data.images import ImageCache, ResizePolicy
from data.rows import Row
from engine.evaluate import predict_rows
from models.swin_hyperiqa import build_swin_hyperiqa

CPU = torch.device("cpu")


def test_evaluation_reports_progress_when_stdout_is_not_a_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.full((70, 80, 3), 40 * i, np.uint8)).save(path)
        rows.append(Row(path, float(i), "test", path.name, path.name))
    err = io.StringIO()
    monkeypatch.setattr("sys.stdout", io.StringIO())  # as under tee, nohup or a batch system
    monkeypatch.setattr("sys.stderr", err)
    model = build_swin_hyperiqa("micro", crop_size=64).eval()
    for rank in (1, 0):
        info = DistInfo(rank=rank, world_size=2, local_rank=rank, device=CPU, is_main=rank == 0)
        monkeypatch.setattr("engine.evaluate.gather_predictions", lambda i, p, n, info: np.zeros(n))
        predict_rows(model, rows, policy=ResizePolicy("none"), cache=ImageCache(None),
                     crop_size=64, patches=1, batch_size=1, device=CPU, amp="off",
                     num_workers=0, info=info, desc="test koniq10k")
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines  # rank 0 only
    assert lines[0].startswith("test koniq10k: 2/2 images in ") and "images/s)" in lines[0]


def test_line_progress_reports_at_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr("sys.stdout", io.StringIO())
    monkeypatch.setattr("sys.stderr", err)
    bar = counter("val", total=4, interval_s=0.0)
    bar.update(1)
    bar.update(3)
    bar.close()
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("val: 1/4 images 25%, about ") and lines[1].startswith("val: 4/4")
    assert lines[2].startswith("val: 4/4 images in ")
    assert counter("val", total=4, enabled=False) is None
