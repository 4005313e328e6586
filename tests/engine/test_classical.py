"""Classical baseline scoring: one score per image, the same on one rank and split over two."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from common.distributed import DistInfo
from data.images import ImageCache, ResizePolicy
from data.rows import Row
from engine.classical import predict_baseline

POLICY = ResizePolicy("none")
ALONE = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), is_main=True)


def write_rows(folder: Path, n: int = 5, truncated: int = 3) -> list[Row]:
    """n textured 64 x 64 PNGs blurred more and more; image `truncated` cut to half its bytes."""
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    rows = []
    for i in range(n):
        path = folder / f"img{i}.png"
        base.filter(ImageFilter.GaussianBlur(i)).save(path)
        if i == truncated:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        rows.append(Row(path, float(n - i), "test", str(i), path.name))
    return rows


def _scores(rows: list[Row], info: DistInfo) -> np.ndarray:
    return predict_baseline("piqe", rows, policy=POLICY, cache=ImageCache(None), num_workers=0,
                            info=info, desc="piqe test")


def test_scores_come_back_in_row_order_with_nan_for_an_unreadable_image(tmp_path: Path) -> None:
    rows = write_rows(tmp_path)
    scores = _scores(rows, ALONE)
    assert scores.shape == (5,) and np.isnan(scores[3])
    assert np.isfinite(np.delete(scores, 3)).all()


def _rank_worker(info: DistInfo, rows: list[Row], out: Path) -> None:
    (out / f"rank{info.rank}.json").write_text(json.dumps(_scores(rows, info).tolist()))


def test_two_ranks_gather_every_image_once(two_ranks, tmp_path: Path) -> None:
    rows = write_rows(tmp_path)
    alone = _scores(rows, ALONE)
    two_ranks(_rank_worker, rows, tmp_path)
    for rank in (0, 1):
        gathered = np.array(json.loads((tmp_path / f"rank{rank}.json").read_text()), dtype=float)
        np.testing.assert_allclose(gathered, alone, rtol=1e-6)  # NaN where NaN
