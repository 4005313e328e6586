"""Stage-1 signals without labels: the collapse check and the held-out zero-shot validation.

Collapse: a pretraining run whose scores no longer depend on the degradation level ranks level
pairs at chance (accuracy near 0.5) and has no spread of scores across levels. Both are measured
on the training batches (engine.pretrain logs them per step) and checked once per epoch.

Validation: a few held-out images, each degraded with held-out distortion types at levels 0..L
(seeded, so the set is the same every epoch and every run); its signal is the SRCC between level
and zero-shot score within each image and type (ideal -1 mapped to +1), averaged. No label needed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from common.errors import InvalidValueError
from data.degradations import degrade_levels
from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import UnlabeledPairDataset
from engine.loop import to_device_images

# An epoch is flagged when its training batches rank level pairs at most this well ...
COLLAPSE_ACCURACY = 0.6
# ... or when the scores of one crop spread across levels by less than this fraction of the margin.
COLLAPSE_SPREAD = 0.1
VAL_STREAM = 7  # the validation set's own seed stream, apart from training crops and degradations


def collapse_message(record: dict, margin: float) -> str | None:
    """Why an epoch record (rank_accuracy, level_spread) looks collapsed, or None."""
    accuracy, spread = record.get("rank_accuracy"), record.get("level_spread")
    reasons = []
    if accuracy is not None and accuracy <= COLLAPSE_ACCURACY:
        reasons.append(f"it ranks only {accuracy:.1%} of level pairs correctly (chance: 50%)")
    if spread is not None and spread < COLLAPSE_SPREAD * max(margin, 1e-8):
        reasons.append(f"its scores spread by {spread:.2e} across levels (margin {margin:g})")
    if not reasons:
        return None
    return ("COLLAPSE: epoch {epoch}: ".format(**record) + "; ".join(reasons) + ". The encoder "
            "scores degraded crops alike; see docs/STAGE1.md "
            "(--stop_on_collapse stops such a run)")


def persistent_collapse(records: list[dict], margin: float, last_epoch: int) -> str | None:
    """The collapse --stop_on_collapse stops on: the newest epoch of `records` (metrics lines in
    epoch order) is flagged, and so was the epoch before it, or it is the run's last epoch.

    One flagged epoch alone is not enough: a first epoch from random init averages its early
    steps at chance (mini at lr 5e-5 ranks 0.53 in epoch 1, then 0.64, 0.67, ... 0.72).
    """
    if not records:
        return None
    newest = records[-1]
    warning = collapse_message(newest, margin)
    if warning is None or newest["epoch"] == last_epoch:
        return warning
    before = records[-2] if len(records) > 1 else None
    if before is not None and before["epoch"] == newest["epoch"] - 1 and \
            collapse_message(before, margin) is not None:
        return warning
    return None


def _group_srcc(scores: np.ndarray) -> np.ndarray:
    """SRCC of score against -level within each row of (G, L+1) scores (0 for constant rows)."""
    levels = np.arange(scores.shape[1], dtype=np.float64)
    out = np.zeros(scores.shape[0])
    for g, row in enumerate(scores):
        ranks = np.argsort(np.argsort(-row, kind="stable"), kind="stable").astype(np.float64)
        if np.ptp(row) > 0:
            out[g] = np.corrcoef(ranks, levels)[0, 1]
    return out


class ZeroShotValidation:
    """Fixed held-out crops at levels 0..L of held-out types; scores a model zero-shot.

    With `crops_per_image` > 1 an image's score at a level is the mean over that many crops (as
    test_swin.py scores an image); its crops share the per-image random choices of each type
    (the brightening direction, say), so they show one degraded picture.
    """

    def __init__(self, paths: Sequence[Path], policy: ResizePolicy, cache: ImageCache,
                 distortions: Sequence[str], crop_size: int, num_levels: int, seed: int,
                 device: torch.device, batch_size: int = 64, crops_per_image: int = 1) -> None:
        if crops_per_image < 1:
            raise InvalidValueError(f"crops_per_image must be >= 1, got {crops_per_image}")
        self.distortions = list(distortions)
        self.device = device
        self.batch_size = batch_size
        source = UnlabeledPairDataset(paths, policy, cache, crop_size=crop_size, seed=seed,
                                      views=crops_per_image)
        items = [source[i] for i in range(len(source))]  # view-major: view v of image i at v*P+i
        readable = [i for i in range(len(paths))
                    if all(items[v * len(paths) + i] is not None for v in range(crops_per_image))]
        if not readable:
            raise InvalidValueError("no readable validation image")
        # the first crop of each pair (view 0 is the crop of a one-crop validation set)
        crops = [items[v * len(paths) + i]["image"][0]
                 for v in range(crops_per_image) for i in readable]
        images = to_device_images(torch.stack(crops), device)  # (V*N, 3, H, W)
        n, t = len(readable), len(self.distortions)
        stack = images.repeat_interleave(t, dim=0)  # (V*N*T, 3, H, W): view, image, type
        names = self.distortions * (n * crops_per_image)
        groups = list(range(n * t)) * crops_per_image  # the (image, type) group of every crop
        generator = torch.Generator(device=device).manual_seed(seed * 1000 + VAL_STREAM)
        with torch.no_grad():  # degrade_levels runs each distortion in full float32
            self.levels = degrade_levels(stack, names, num_levels, generator=generator,
                                         pair_ids=groups)
        self.n_images = n
        self.crops_per_image = crops_per_image

    def __len__(self) -> int:
        """Number of (image, type) groups."""
        return self.levels.shape[0] // self.crops_per_image

    @torch.inference_mode()
    def evaluate(self, model: torch.nn.Module) -> dict:
        """{"val_srcc": mean within-group SRCC, "val_by_type": {type: SRCC}, "val_by_image":
        [SRCC per held-out image, averaged over types]} of `model`."""
        was_training = model.training
        model.eval()
        flat = self.levels.flatten(0, 1)  # (G*(L+1), 3, H, W)
        scores = torch.cat([model(flat[i:i + self.batch_size])["score"].float()
                            for i in range(0, flat.shape[0], self.batch_size)])
        model.train(was_training)
        scores = scores.view(self.crops_per_image, len(self), -1).mean(dim=0)  # (G, L+1)
        groups = _group_srcc(scores.cpu().double().numpy())
        by_image = groups.reshape(self.n_images, len(self.distortions))  # groups are image-major
        return {"val_srcc": float(groups.mean()),
                "val_by_type": {name: round(float(v), 4)
                                for name, v in zip(self.distortions, by_image.mean(axis=0),
                                                   strict=True)},
                "val_by_image": [round(float(v), 4) for v in by_image.mean(axis=1)]}


def build_validation(paths: Sequence[Path], policy: ResizePolicy, cache: ImageCache,
                     distortions: Sequence[str], args, device: torch.device,
                     logger: logging.Logger) -> ZeroShotValidation | None:
    """The validation set of a run, or None (no types or no images: logged)."""
    if not distortions or not paths:
        logger.info("no label-free validation (%s)", "no --val_distortions" if not distortions
                    else "no held-out images")
        return None
    validation = ZeroShotValidation(paths, policy, cache, distortions, args.crop_size,
                                    args.num_levels, args.seed, device)
    logger.info("label-free validation: %d held-out images x %s at levels 0-%d",
                validation.n_images, ", ".join(distortions), args.num_levels)
    return validation
