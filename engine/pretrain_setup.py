"""What a Stage-1 run is built from: per-size defaults, its images, its model and its step."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.degradations import degrade_levels
from data.images import ResizePolicy
from data.iqa_dataset import list_images
from data.registry import canonical_key, drop_missing, read_rows, resize_policy
from data.rows import DatasetError
from engine.loop import StepOutput, to_device_images
from losses import LossTerms, qualiclip_full_loss, qualiclip_simplified_loss
from losses.qualiclip import level_ranking_accuracy, level_spread
from models import clip_anchors
from models.pretrain_heads import ClipQualityHead, ScalarQualityHead
from models.pretrain_model import QualityPretrainModel, pooled_features
from models.swin_encoder import build_encoder, canonical_model_size

LOSS_FLAGS = ("margin", "consistency_weight", "ranking_weight", "consistency_margin",
              "consistency_form")


@dataclass
class PretrainImages:
    """Unlabelled training images, held-out validation images, their resize policy and source."""

    train: list[Path]
    val: list[Path]
    policy: ResizePolicy
    source: str


def pretrain_images(args: argparse.Namespace, logger: logging.Logger) -> PretrainImages:
    """Training images: every image of --image_dir but --val_images held out (seeded), or the
    TRAINING split of --dataset, whose validation split gives up to --val_images held-out ones.

    Training-split images missing on disk stop the run before training, unless --skip_missing.
    """
    n_val = args.val_images if args.val_distortions else 0
    if args.image_dir:
        paths = list_images(args.image_dir)
        n_val = min(n_val, len(paths) // 5)  # never more than a fifth of a small folder
        held = set(np.random.default_rng(args.seed).permutation(len(paths))[:n_val].tolist())
        return PretrainImages([p for i, p in enumerate(paths) if i not in held],
                              [p for i, p in enumerate(paths) if i in held],
                              ResizePolicy("none"), f"folder {args.image_dir}")
    key = canonical_key(args.dataset)
    rows = read_rows(key, args.data_root, split="official")
    train = [row for row in rows if row.split == "train"]
    paths = sorted({row.path for row in drop_missing(key, train, args.skip_missing, logger)})
    if not paths:
        raise DatasetError(
            f"{key} under {args.data_root} has no training-split images to use; check "
            "--data_root, or pass --image_dir for a folder of unlabelled images"
        )
    held = sorted({row.path for row in rows if row.split == "val" and row.path.is_file()})
    return PretrainImages(paths, held[:n_val], resize_policy(key), f"{key} training split")


# Defaults that depend on the model size (a flag left unset takes them; the config records the
# resolved value). The random-init CPU sizes need a larger learning rate than ImageNet-initialised
# Swin-T/S/B fine-tuned for QualiCLIP (docs/STAGE1.md, deviations).
# The consistency term is off at every size: measured on mini, its absolute form pulls every
# score to one constant, and its standardised form (no such pull) turns the ranking towards
# whatever spreads the levels, blur the wrong way round (docs/STAGE1.md, "Consistency").
SIZE_DEFAULTS: dict[str, dict] = {
    "micro": {"lr": 1e-3, "consistency_weight": 0.0, "views_per_image": 1},
    "mini": {"lr": 3e-4, "consistency_weight": 0.0, "views_per_image": 3},
    "tiny": {"lr": 5e-5, "consistency_weight": 0.0, "views_per_image": 1},
    "small": {"lr": 5e-5, "consistency_weight": 0.0, "views_per_image": 1},
    "base": {"lr": 5e-5, "consistency_weight": 0.0, "views_per_image": 1},
}


def resolve_size_defaults(args: argparse.Namespace) -> dict:
    """Fill flags left at None from SIZE_DEFAULTS of --model_size; returns what was filled."""
    filled = {key: value for key, value in SIZE_DEFAULTS[canonical_model_size(args.model_size)]
              .items() if getattr(args, key, None) is None}
    for key, value in filled.items():
        setattr(args, key, value)
    return filled


def build_pretrain_model(
    args: argparse.Namespace, pairs: Sequence[tuple[str, str]]
) -> QualityPretrainModel:
    """Swin encoder plus the head of --loss_type: scalar, or the anchors of the first
    --train_prompt_pairs of `pairs`, which the full loss trains on and the score averages.

    QualiCLIP trains one pair and scores with seven because its CLIP image encoder is aligned
    with CLIP's text space before training; here a randomly initialised projection reaches that
    space, so pairs it never trained on would only add untrained terms to the score.
    """
    encoder = build_encoder(
        args.model_size, imagenet_weights=args.imagenet_weights, crop_size=args.crop_size
    )
    encoder.set_grad_checkpointing(args.grad_checkpointing)
    width = pooled_features(encoder, args.pooling)
    if args.loss_type == "simplified":
        head = ScalarQualityHead(width, activation=args.score_activation)
    else:
        trained = list(pairs[: args.train_prompt_pairs])
        anchors, logit_scale = clip_anchors.embed_prompt_pairs(
            trained, clip_model=args.clip_model, clip_weights=args.clip_weights
        )
        head = ClipQualityHead(width, anchors, logit_scale, prompt_pairs=trained)
    return QualityPretrainModel(encoder, head, args.pooling)


class QualiCLIPStep:
    """One batch: degrade both crops on the device, score every level, QualiCLIP loss.

    Each image gets one distortion type drawn from `distortions`; its two crops share the type
    and the random choices of every level. Randomness comes from generators seeded by `seed`.
    """

    def __init__(self, args: argparse.Namespace, distortions: Sequence[str],
                 device: torch.device, seed: int) -> None:
        self.distortions = list(distortions)
        self.num_levels = args.num_levels
        self.loss_type = args.loss_type
        self.loss_kwargs = {key: getattr(args, key) for key in LOSS_FLAGS}
        self.device = device
        self.type_generator = torch.Generator().manual_seed(seed)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def rng_state(self) -> dict:
        """The states of the step's generators (a mid-epoch train state saves them)."""
        return {"types": self.type_generator.get_state(), "levels": self.generator.get_state()}

    def restore_rng_state(self, state: dict) -> None:
        """Continue the generators from states rng_state() returned."""
        self.type_generator.set_state(state["types"])
        self.generator.set_state(state["levels"])

    def degrade(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 2, 3, H, W) float crops -> (2, B, L+1, 3, H, W), the same type per image pair."""
        b = crops.shape[0]
        picks = torch.randint(len(self.distortions), (b,), generator=self.type_generator)
        names = [self.distortions[i] for i in picks.tolist()]
        stack = crops.transpose(0, 1).flatten(0, 1)  # (2B, 3, H, W): all first crops, then seconds
        with torch.no_grad():  # degrade_levels runs each distortion in full float32
            levels = degrade_levels(stack, names + names, self.num_levels,
                                    generator=self.generator, pair_ids=list(range(b)) * 2)
        return levels.view(2, b, *levels.shape[1:])

    def __call__(self, model: torch.nn.Module, batch: dict) -> StepOutput:
        """QualiCLIP loss of one batch of crop pairs."""
        crops = to_device_images(batch["image"], self.device)  # (B, 2, 3, H, W)
        levels = self.degrade(crops)  # (2, B, L+1, 3, H, W)
        x = levels.flatten(0, 2).contiguous(memory_format=torch.channels_last)
        out = model(x)
        lead = levels.shape[:3]  # (2, B, L+1)
        score = out["score"].detach().float().view(lead)
        if self.loss_type == "simplified":
            scores = out["score"].float().view(lead)
            terms: LossTerms = qualiclip_simplified_loss(scores[0], scores[1], **self.loss_kwargs)
        else:
            # every pair of the head: the ones its score averages
            sims = out["sims"].float().view(*lead, *out["sims"].shape[1:])  # (2, B, L+1, P, 2)
            terms = qualiclip_full_loss(sims[0], sims[1], **self.loss_kwargs)
        logs = {"consistency": terms.consistency.detach(), "ranking": terms.ranking.detach(),
                "rank_accuracy": level_ranking_accuracy(score), "level_spread": level_spread(score)}
        return StepOutput(loss=terms.total, logs=logs)
