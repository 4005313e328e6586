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

from common.checkpoint import load_checkpoint
from common.distributed import DistInfo, gather_predictions, shard_indices
from common.errors import CheckpointError
from common.files import atomic_write_json, file_key, json_safe, write_csv
from common.metrics import evaluate_predictions
from common.runlog import counter
from common.runtime import autocast, resolve_amp
from common.vocabulary import DEFAULT_TEST_PATCHES
from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import IQACropDataset, collate_crops
from data.readers.kadid10k import DISTORTION_TYPES, distortion_type, parse_distortion_types
from data.registry import canonical_key, drop_missing, read_rows, resize_policy
from data.rows import DatasetError, Row
from engine.loop import to_device_images
from models.swin_encoder import canonical_model_size
from models.swin_hyperiqa import model_from_checkpoint

EVAL_SEED = 0  # evaluation crops depend on this and the image's pixels only (content_seed)


@dataclass
class EvalModel:
    """A model ready to score images, and what its scores mean."""

    model: torch.nn.Module
    mode: str  # "finetuned" | "zero_shot"
    config: dict
    score_range: tuple[float, float]  # documented output scale (training MOS range, or 0..1)


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
        model, mode, score_range = pretrain_model_from_checkpoint(ckpt), "zero_shot", (0.0, 1.0)
    else:
        raise CheckpointError(
            f"{path} is a checkpoint of kind {kind!r}; expected a fine-tuned model ('full', e.g. "
            "best_model.pkl) or a Stage-1 encoder ('encoder', e.g. "
            "swin_<size>_qualiclip_pretrained.pkl)"
        )
    model = model.to(device, memory_format=torch.channels_last).eval()
    return EvalModel(model, mode, config, score_range)


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


def dataset_rows(name: str, eval_model: EvalModel, data_root: str | Path) -> tuple[list[Row], str]:
    """Rows to test on: the test split of the training dataset (same split), else every image."""
    key = canonical_key(name)
    config = eval_model.config
    if eval_model.mode == "finetuned" and config.get("dataset") == key:
        rows = read_rows(key, data_root, config["split"], int(config["split_seed"]),
                         tuple(config["split_ratios"]))
        return [row for row in rows if row.split == "test"], "test split"
    return read_rows(key, data_root), "all images"


def kadid_subset(rows: list[Row], types_text: str) -> tuple[list[Row], str]:
    """The KADID-10k rows of the --kadid_types types (e.g. types held out of pretraining)."""
    wanted = parse_distortion_types(types_text)
    chosen = [row for row in rows if distortion_type(row.name) in wanted]
    if not chosen:
        raise DatasetError(f"kadid10k has no images of the types {', '.join(wanted)}")
    return chosen, f"{len(wanted)} types"


def metrics_by_distortion(pred: np.ndarray, rows: Sequence[Row]) -> dict[str, dict]:
    """KADID-10k metrics per distortion type, in KADID order (undefined ones NaN)."""
    types = [distortion_type(row.name) for row in rows]
    by_type = {}
    for name in DISTORTION_TYPES:
        mask = np.array([t == name for t in types])
        if mask.any():
            chosen = [row for row, keep in zip(rows, mask, strict=True) if keep]
            by_type[name] = metrics_for(pred[mask], chosen, strict=False)
    return by_type


def format_table(results: dict[str, dict], subsets: dict[str, str],
                 label: str = "dataset") -> str:
    """Plain-text table of the metrics per dataset (or per distortion type)."""
    width = max([12, *(len(key) for key in results)])
    lines = [f"{label:<{width}} {'subset':<11} {'n':>6} {'SRCC':>7} {'PLCC':>7} {'KRCC':>7} "
             f"{'RMSE':>9}"]
    for key, m in results.items():
        lines.append(f"{key:<{width}} {subsets.get(key, ''):<11} {m['n']:>6d} {m['srcc']:>7.4f} "
                     f"{m['plcc']:>7.4f} {m['krcc']:>7.4f} {m['rmse']:>9.4g}")
    return "\n".join(lines)


def score_text(value: float) -> str:
    """A score for a CSV cell: six decimals, empty for an image that could not be scored."""
    return f"{value:.6f}" if np.isfinite(value) else ""


def cross_dataset(args: argparse.Namespace, eval_model: EvalModel, info: DistInfo,
                  logger: logging.Logger) -> dict:
    """Score every --test_datasets entry; print a table, write the JSON and prediction CSVs."""
    output = Path(args.output or Path(args.model_path).parent / "cross_dataset_results.json")
    crop_size, patches = eval_settings(args, eval_model)
    results, subsets, skipped, by_distortion = {}, {}, {}, {}
    if args.kadid_types and "kadid10k" not in {canonical_key(n) for n in args.test_datasets}:
        raise DatasetError("--kadid_types restricts KADID-10k, which is not among "
                           "--test_datasets; add kadid10k or leave --kadid_types out")
    for name in args.test_datasets:
        key = canonical_key(name)
        try:
            rows, subsets[key] = dataset_rows(key, eval_model, args.data_root)
            if key == "kadid10k" and args.kadid_types:
                rows, subsets[key] = kadid_subset(rows, args.kadid_types)
            rows = drop_missing(key, rows, skip_missing=False, logger=logger)
        except DatasetError as exc:
            if not args.skip_missing_datasets:
                raise
            logger.warning("skipping %s (--skip_missing_datasets): %s", key, exc)
            skipped[key] = str(exc)
            subsets.pop(key, None)
            continue
        # a model trained on squashed images (--resize squash) is tested on squashed images
        geometry = str(eval_model.config.get("resize", "aspect"))
        pred = predict_rows(eval_model.model, rows, policy=resize_policy(key, geometry),
                            cache=ImageCache(args.cache_dir), crop_size=crop_size,
                            patches=patches, batch_size=args.batch_size, device=info.device,
                            amp=resolve_amp(args.amp, info.device),
                            num_workers=args.num_workers, info=info, desc=f"test {key}")
        results[key] = metrics_for(pred, rows, strict=False, logger=logger)
        if key == "kadid10k":
            by_distortion[key] = metrics_by_distortion(pred, rows)
            logger.info("kadid10k by distortion type:\n%s",
                        format_table(by_distortion[key], {}, label="distortion"))
        if info.is_main:
            write_csv(output.with_name(f"{output.stem}_{file_key(key)}_predictions.csv"),
                      ("image", "mos", "prediction"),
                      [(r.name, f"{r.mos:.6g}", score_text(p))
                       for r, p in zip(rows, pred, strict=True)])
    report = {"results": results, "model": str(args.model_path), "mode": eval_model.mode,
              "config": eval_model.config, "subsets": subsets, "crop_size": crop_size,
              "test_patches": patches, "skipped": skipped, "by_distortion": by_distortion}
    if info.is_main:
        atomic_write_json(json_safe(report), output)
        logger.info("%s (%s, %d crops per image)\n%s\nwritten to %s", args.model_path,
                    eval_model.mode, patches, format_table(results, subsets), output)
    return report


def eval_settings(args: argparse.Namespace, eval_model: EvalModel) -> tuple[int, int]:
    """(crop size, crops per image): the flags, else what the checkpoint was trained with."""
    config = eval_model.config
    crop_size = args.crop_size or int(config.get("crop_size", config.get("img_size", 224)))
    patches = args.test_patches or int(config.get("test_patches", DEFAULT_TEST_PATCHES))
    return crop_size, patches
