"""Score your own images with a trained model: the Python API (load_model_for_eval, score_paths,
score_tensor, scale_note) and test_swin.py --images (scores printed, CSV to a file or stdout)."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from common.checkpoint import crop_size_of
from common.distributed import DistInfo
from common.errors import InvalidValueError
from common.files import csv_text, output_path, renamed_note, write_csv
from common.runtime import resolve_amp
from common.vocabulary import DEFAULT_TEST_PATCHES, SCORES_NAME
from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import list_images
from data.registry import resize_policy
from data.rows import DatasetError, Row
from engine.evaluate import (
    EvalModel,
    eval_settings,
    load_model_for_eval,
    model_scores,
    predict_rows,
    score_text,
)
from engine.loop import to_device_images

__all__ = ["load_model_for_eval", "scale_note", "score_paths", "score_tensor"]


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
    low, high = eval_model.score_range
    if eval_model.mode == "zero_shot" and not math.isfinite(high - low):
        return "higher = better, zero-shot quality on an open scale (compare within a model)"
    if eval_model.mode == "zero_shot":
        return f"higher = better, zero-shot quality in [{low:g}, {high:g}]"
    return f"higher = better, on the training set's MOS scale ({low:g}..{high:g})"


def _device_of(eval_model: EvalModel) -> torch.device:
    return next(eval_model.model.parameters()).device


def score_paths(eval_model: EvalModel, images: Sequence[str | Path], *,
                patches: int | None = None, crop_size: int | None = None,
                batch_size: int = 8, amp: str = "off",
                num_workers: int = 0, cache_dir: str | Path | None = None,
                info: DistInfo | None = None) -> dict[Path, float]:
    """Score image files and folders as test_swin.py does: {image path: score}, in the order
    found, NaN for an unreadable image; the mean over `patches` fixed crops (default: the
    checkpoint's) of `crop_size` pixels (default: the checkpoint's), each image resized like
    the model's training set."""
    paths = collect_images(images)
    device = _device_of(eval_model)
    info = info or DistInfo(rank=0, world_size=1, local_rank=0, device=device, is_main=True)
    count = patches or int(eval_model.config.get("test_patches") or DEFAULT_TEST_PATCHES)
    scores = predict_rows(eval_model.model, image_rows(paths), policy=scoring_policy(eval_model),
                          cache=ImageCache(cache_dir),
                          crop_size=crop_size or crop_size_of(eval_model.config),
                          patches=count, batch_size=batch_size, device=device, amp=amp,
                          num_workers=num_workers, info=info, desc="scoring images")
    return dict(zip(paths, scores.tolist(), strict=True))


def score_tensor(eval_model: EvalModel, crops: torch.Tensor, amp: str = "off") -> torch.Tensor:
    """Scores (N,) float32 of a batch of crops (N, 3, S, S) at the model's crop size S, uint8
    or float in [0, 1] (one crop per score; score_paths averages fixed crops of whole images)."""
    side = crop_size_of(eval_model.config)
    if crops.dim() != 4 or tuple(crops.shape[1:]) != (3, side, side):
        raise InvalidValueError(f"expected crops of shape (N, 3, {side}, {side}) for this model, "
                                f"got {tuple(crops.shape)}; crop the images to {side} pixels, "
                                "or score whole images with score_paths")
    device = _device_of(eval_model)
    x = (to_device_images(crops, device) if crops.dtype == torch.uint8
         else crops.to(device).float().contiguous(memory_format=torch.channels_last))
    eval_model.model.eval()
    with torch.inference_mode():
        return model_scores(eval_model.model, x, amp)


def scores_output(args: argparse.Namespace) -> Path | None:
    """Where --images scores go: --scores_csv, None for "-" (stdout), else image_scores.csv
    beside --output or in the current folder (a free name: never over an earlier file)."""
    if args.scores_csv == "-":
        return None
    folder = Path(args.output).parent if args.output else Path()
    return output_path(args.scores_csv, folder / SCORES_NAME, flag="--scores_csv",
                       overwrite=args.overwrite)


def format_scores(scores: dict[Path, float]) -> str:
    """One image: "SCORE  PATH"; several: a table with a header line."""
    if len(scores) == 1:
        (path, score), = scores.items()
        return f"{score_text(score, 4) or 'unreadable'}  {path}"
    lines = [f"{score_text(s, 4) or 'unreadable':>10}  {p}" for p, s in scores.items()]
    return "\n".join([f"{'score':>10}  image", *lines])


def score_images(args: argparse.Namespace, eval_model: EvalModel, info: DistInfo,
                 logger: logging.Logger, out: Path | None) -> np.ndarray:
    """Score --images (files and folders): print the scores, write the CSV image,score to `out`
    (None: to stdout instead of the printed table)."""
    crop_size, patches = eval_settings(args, eval_model)
    scores = score_paths(eval_model, args.images, patches=patches, crop_size=crop_size,
                         batch_size=args.batch_size,
                         amp=resolve_amp(args.amp, info.device), num_workers=args.num_workers,
                         cache_dir=args.cache_dir if args.cache_images else None, info=info)
    values = np.array(list(scores.values()), dtype=np.float64)
    if info.is_main:
        records = [(str(p), score_text(s)) for p, s in scores.items()]
        if out is None:
            sys.stdout.write(csv_text(("image", "score"), records))
        else:
            print(format_scores(scores))
            write_csv(out, ("image", "score"), records)
        unreadable = int(np.count_nonzero(~np.isfinite(values)))
        where = f"{out}{renamed_note(out, args.scores_csv, SCORES_NAME)}" if out else "stdout"
        logger.info("scored %d image(s) (%d unreadable, left empty) -> %s; %s", len(scores),
                    unreadable, where, scale_note(eval_model))
    return values
