"""Score arbitrary images (one file, folders, lists) with a trained model and write a CSV."""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.distributed import DistInfo
from common.files import write_csv
from common.runtime import resolve_amp
from common.vocabulary import SCORES_NAME
from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import list_images
from data.registry import resize_policy
from data.rows import DatasetError, Row
from engine.evaluate import EvalModel, eval_settings, predict_rows, score_text


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly or found in the given folders, in the order given, no repeats."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(list_images(path))
        elif path.is_file():
            found.append(path)
        else:
            raise DatasetError(f"--images: {path} is neither an image file nor a folder")
    return list(dict.fromkeys(found))


def image_rows(paths: Sequence[Path]) -> list[Row]:
    """Unlabelled rows (MOS NaN) so arbitrary images go through the evaluation dataset."""
    return [Row(path=p, mos=math.nan, split="test", group=str(p), name=str(p)) for p in paths]


def scoring_policy(eval_model: EvalModel) -> ResizePolicy:
    """Resize like the training set (a fixed size becomes its short side, keeping the aspect)."""
    dataset = eval_model.config.get("dataset")
    if eval_model.mode != "finetuned" or dataset is None:
        return ResizePolicy("none")
    policy = resize_policy(dataset)
    if policy.kind == "fixed":
        return ResizePolicy("short_side", min(policy.size))
    return policy


def scale_note(eval_model: EvalModel) -> str:
    """What a score means: direction and range."""
    if eval_model.mode == "zero_shot":
        head = eval_model.config.get("head") or {}
        if head.get("type") == "scalar" and head.get("activation", "sigmoid") == "none":
            return "higher = better, zero-shot quality on an open scale (compare within a model)"
        return "higher = better, zero-shot quality in [0, 1]"
    low, high = eval_model.score_range
    return f"higher = better, on the training set's MOS scale ({low:g}..{high:g})"


def score_images(args: argparse.Namespace, eval_model: EvalModel, info: DistInfo,
                 logger: logging.Logger) -> np.ndarray:
    """Score --images (files and folders) and write --scores_csv with columns image,score."""
    paths = collect_images(args.images)
    crop_size, patches = eval_settings(args, eval_model)
    scores = predict_rows(eval_model.model, image_rows(paths), policy=scoring_policy(eval_model),
                          cache=ImageCache(args.cache_dir if args.cache_images else None),
                          crop_size=crop_size, patches=patches,
                          batch_size=args.batch_size, device=info.device,
                          amp=resolve_amp(args.amp, info.device), num_workers=args.num_workers,
                          info=info, desc="scoring --images")
    out = Path(args.scores_csv or Path(args.model_path).parent / SCORES_NAME)
    if info.is_main:
        write_csv(out, ("image", "score"),
                  [(str(p), score_text(s)) for p, s in zip(paths, scores, strict=True)])
        unreadable = int(np.count_nonzero(~np.isfinite(scores)))
        logger.info("scored %d image(s) (%d unreadable, left empty) -> %s; %s", len(paths),
                    unreadable, out, scale_note(eval_model))
    return scores
