"""test_swin.py --baselines: classical opinion-unaware baselines scored on the same test sets.

Each baseline scores the whole image as the dataset's resize policy gives it to the models
(KonIQ-10k 512 x 384, SPAQ and AGIQA-3K short side 512, ...), once, with no crops and no
randomness. Their raw scores fall as quality rises, so the predictions written (CSV, metrics) are
minus the raw score: SRCC and PLCC then have the sign they have for every other row.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from common.distributed import DistInfo, gather_predictions, shard_indices
from common.files import renamed_note
from common.runlog import counter
from data.images import ImageCache, ImageDecodeError, ResizePolicy
from data.registry import read_rows, resize_policy
from data.rows import Row
from engine.cross_dataset import RESULTS_NAME, baseline_path, score_test_sets
from models.classical_iqa import BASELINES, describe, raw_score

logger = logging.getLogger(__name__)


class BaselineScores(Dataset):
    """(index, raw score) of one baseline per row; NaN for an unreadable or too small image."""

    def __init__(self, rows: list[Row], policy: ResizePolicy, cache: ImageCache,
                 name: str) -> None:
        self.rows, self.policy, self.cache, self.name = rows, policy, cache, name

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, float]:
        try:
            image = self.cache.load(self.rows[index].path, self.policy)  # (H, W, 3) uint8
        except ImageDecodeError as exc:
            logger.warning("skipping an unreadable image: %s", exc)
            return index, math.nan
        return index, raw_score(self.name, image)


def predict_baseline(name: str, rows: list[Row], *, policy: ResizePolicy, cache: ImageCache,
                     num_workers: int, info: DistInfo, desc: str) -> np.ndarray:
    """Raw scores of baseline `name` for `rows`, (len(rows),) float64, NaN where unscored.

    Each rank scores its shard in `num_workers` processes; the scores are gathered by index, so
    every image counts exactly once.
    """
    shard = shard_indices(len(rows), info)
    loader = DataLoader(Subset(BaselineScores(rows, policy, cache, name), shard),
                        batch_size=None, num_workers=num_workers)
    index, scores = [], []
    bar = counter(desc, len(shard), enabled=info.is_main)
    for i, score in loader:
        index.append(int(i))
        scores.append(float(score))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return gather_predictions(torch.tensor(index, dtype=torch.long),
                              torch.tensor(scores, dtype=torch.float64), len(rows), info)


def classical_test(args: argparse.Namespace, info: DistInfo, log: logging.Logger,
                   output: Path) -> dict:
    """Score every --test_datasets entry with each of --baselines; one JSON per baseline,
    <stem of the results JSON `output`>_<name>.json beside it."""
    cache = ImageCache(args.cache_dir)
    reports = {}
    for name in args.baselines:
        spec = BASELINES[name]

        def predict(key: str, rows: list[Row], name: str = name) -> np.ndarray:
            raw = predict_baseline(name, rows, policy=resize_policy(key), cache=cache,
                                   num_workers=args.num_workers, info=info,
                                   desc=f"{name} {key}")
            return -raw  # lower raw score = better image: flipped so that higher = better

        header = {"model": f"classical:{name}", "mode": "classical", "baseline": describe(name),
                  "config": {}, "crop_size": None, "test_patches": None}
        reports[name] = score_test_sets(
            args, lambda key: (read_rows(key, args.data_root), "all images"), predict, header,
            baseline_path(output, name), info, log,
            title=f"{spec.title} ({spec.package} {spec.version}; whole images, prediction = "
            "minus the raw score)", note=renamed_note(output, args.output, RESULTS_NAME))
    return reports
