"""Batched multi-crop inference and metrics for fine-tuned and zero-shot (Stage-1) checkpoints."""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from common.checkpoint import crop_size_of, load_checkpoint
from common.distributed import DistInfo, gather_predictions, shard_indices
from common.errors import CheckpointError
from common.metrics import evaluate_predictions
from common.runlog import counter
from common.runtime import autocast
from common.vocabulary import DEFAULT_TEST_PATCHES
from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import IQACropDataset, collate_crops
from data.rows import Row
from engine.loop import to_device_images
from engine.run_kind import kind_of_config, wrong_kind_message
from models.swin_encoder import canonical_model_size
from models.swin_hyperiqa import model_from_checkpoint

EVAL_SEED = 0  # evaluation crops depend on this and the image's pixels only (content_seed)


@dataclass
class EvalModel:
    """A model ready to score images, and what its scores mean."""

    model: torch.nn.Module
    mode: str  # "finetuned" | "zero_shot"
    config: dict
    score_range: tuple[float, float]  # output scale: training MOS range, 0..1, or open (+-inf)


def load_model_for_eval(path: str | Path, device: torch.device | str = "cpu",
                        expected_size: str | None = None) -> EvalModel:
    """Load a "full" checkpoint (fine-tuned) or an "encoder" one (zero-shot with its head)."""
    ckpt = load_checkpoint(path)
    kind = ckpt.get("kind")
    if expected_size and canonical_model_size(expected_size) != ckpt.get("model_size"):
        raise CheckpointError(
            f"{path} holds a {ckpt.get('model_size')!r} model but --model_size {expected_size} "
            "was given; leave --model_size out (the checkpoint decides) or pick another file"
        )
    if kind == "full":
        config = dict(ckpt["config"])
        low, high = config.get("mos_range", (math.nan, math.nan))
        model, mode, score_range = model_from_checkpoint(ckpt), "finetuned", (low, high)
    elif kind == "encoder":
        from models.pretrain_model import pretrain_model_from_checkpoint

        config = dict(ckpt["config"])
        model, mode = pretrain_model_from_checkpoint(ckpt), "zero_shot"
        score_range = zero_shot_range(config.get("head") or {})
    elif kind == "train_state":
        found = kind_of_config(ckpt.get("config") or {})
        raise CheckpointError(wrong_kind_message(Path(path), found, "a model to score"))
    else:
        raise CheckpointError(
            f"{path} is a checkpoint of kind {kind!r}; expected a fine-tuned model ('full', e.g. "
            "best_model.pkl) or a Stage-1 encoder ('encoder', e.g. "
            "swin_<size>_qualiclip_pretrained.pkl)"
        )
    model = model.to(device, memory_format=torch.channels_last).eval()
    return EvalModel(model, mode, config, score_range)


def zero_shot_range(head: dict) -> tuple[float, float]:
    """Output range of a Stage-1 head: (0, 1) for CLIP prompts or a sigmoid scalar head, open
    (-inf, inf) for the raw scalar head (activation "none", the default)."""
    if head.get("type") == "scalar" and head.get("activation", "sigmoid") == "none":
        return -math.inf, math.inf
    return 0.0, 1.0


def model_scores(model: torch.nn.Module, x: torch.Tensor, amp: str = "off") -> torch.Tensor:
    """Quality scores (N,) of a float batch under `amp`, as float32.

    Swin-HyperIQA runs its head in float32 itself; pretraining models return a dict with "score".
    """
    with autocast(x.device, amp):
        out = model(x)
    return (out["score"] if isinstance(out, dict) else out).float()


def eval_batch_size(batch_size: int | None, train_crops: int, patches: int) -> int:
    """Images per evaluation batch: given, or twice the training crops per step over `patches`."""
    if batch_size:
        return batch_size
    return max(1, (2 * train_crops) // patches)


def predict_rows(
    model: torch.nn.Module,
    rows: Sequence[Row],
    *,
    policy: ResizePolicy,
    cache: ImageCache,
    crop_size: int,
    patches: int,
    batch_size: int,
    device: torch.device,
    amp: str,
    num_workers: int,
    info: DistInfo,
    desc: str = "scoring",
) -> np.ndarray:
    """Mean score over `patches` fixed crops per row, (len(rows),) float64, NaN where undecodable.

    Each rank scores its shard (`shard_indices`, no padding); predictions are gathered by index so
    every image counts exactly once. Rank 0 shows its progress under the label `desc`.
    """
    dataset = IQACropDataset(list(rows), policy, cache, crop_size=crop_size, patches=patches,
                             train=False, seed=EVAL_SEED)
    shard = shard_indices(len(rows), info)
    loader = DataLoader(Subset(dataset, shard), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=collate_crops,
                        pin_memory=device.type == "cuda")
    indices: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    bar = counter(desc, len(shard), enabled=info.is_main)
    with torch.inference_mode():
        for batch in loader:
            if bar is not None:
                bar.update(batch["image"].shape[0] + batch["n_skipped"] if batch else batch_size)
            if batch is None:
                continue
            images = batch["image"]  # (B, P, 3, H, W) uint8
            x = to_device_images(images.flatten(0, 1), device)
            score = model_scores(model, x, amp).view(images.shape[0], images.shape[1])
            scores.append(score.mean(dim=1))
            indices.append(batch["index"])  # stays on the host: no blocking copy per batch
    model.train(was_training)
    if bar is not None:
        bar.close()
    seen = torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long)
    missing = sorted(set(shard) - set(seen.tolist()))  # undecodable images: NaN, left out later
    index = torch.cat([seen, torch.tensor(missing, dtype=torch.long)])
    pred = torch.cat([torch.cat(scores).cpu() if scores else torch.zeros(0),
                      torch.full((len(missing),), math.nan)])
    return np.asarray(gather_predictions(index, pred, len(rows), info), dtype=np.float64)


def metrics_for(pred: np.ndarray, rows: Sequence[Row], strict: bool = True,
                logger: logging.Logger | None = None) -> dict:
    """Metrics of predictions against the rows' MOS; images without a prediction are left out."""
    mos = np.array([row.mos for row in rows], dtype=np.float64)
    ok = np.isfinite(pred)
    if not ok.all() and logger is not None:
        names = [row.name for row, good in zip(rows, ok, strict=True) if not good]
        logger.warning("%d image(s) could not be scored and are left out: %s", len(names),
                       ", ".join(names[:5]) + (" ..." if len(names) > 5 else ""))
    return evaluate_predictions(pred[ok], mos[ok], strict=strict)


def score_text(value: float, digits: int = 6) -> str:
    """A score for a CSV cell or a table: `digits` decimals, empty for an image that could not be
    scored."""
    return f"{value:.{digits}f}" if np.isfinite(value) else ""


def eval_settings(args: argparse.Namespace, eval_model: EvalModel) -> tuple[int, int]:
    """(crop size, crops per image): the flags, else what the checkpoint was trained with."""
    config = eval_model.config
    crop_size = args.crop_size or crop_size_of(config)
    patches = args.test_patches or int(config.get("test_patches", DEFAULT_TEST_PATCHES))
    return crop_size, patches
