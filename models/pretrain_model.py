"""Stage-1 model: Swin encoder + quality head on mean-pooled stage features, and its checkpoints."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoint import crop_size_of, make_checkpoint
from common.errors import InvalidValueError
from common.vocabulary import POOLINGS
from models.errors import EncoderMismatchError
from models.pretrain_heads import build_pretrain_head
from models.swin_encoder import SwinEncoder
from models.weights import strip_wrapper_prefixes


def pooled_features(encoder: SwinEncoder, pooling: str) -> int:
    """Width of the pooled feature vector the head receives."""
    widths = {"stages": 2 * sum(encoder.stage_channels),
              "stages_mean": sum(encoder.stage_channels), "last": encoder.num_features}
    return widths[pooling]


def _stage_statistics(stage: torch.Tensor, with_std: bool) -> torch.Tensor:
    """(B, C, H, W) -> layer-normalised spatial mean (B, C), and std (B, C) when asked."""
    flat = stage.flatten(2).float()  # (B, C, HW)
    parts = [flat.mean(dim=2)]
    if with_std:
        parts.append(flat.std(dim=2, unbiased=False) if flat.shape[2] > 1 else flat[..., 0] * 0)
    return torch.cat([F.layer_norm(p, (p.shape[1],)) for p in parts], dim=1)


class QualityPretrainModel(nn.Module):
    """Encoder + pretraining head: float images in [0, 1] (B, 3, H, W) -> head output dict.

    pooling "stages": the spatial mean and standard deviation of every stage map, each
    layer-normalised, concatenated: the early, high-resolution stages see noise, blur and
    blocking directly, and the deviation measures their energy (Stage 2's HyperIQA head reads all
    four stages too); "stages_mean": the means only; "last": the mean-pooled last stage only
    (earlier behaviour).
    """

    def __init__(self, encoder: SwinEncoder, head: nn.Module, pooling: str = "last") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise InvalidValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        self.encoder = encoder
        self.head = head
        self.pooling = pooling

    @property
    def head_config(self) -> dict:
        """The head's JSON-able config (stored as config["head"] in encoder checkpoints)."""
        return {**self.head.config, "pooling": self.pooling}

    def forward(self, x01: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head output ("score" (B,), plus "sims" (B, P, 2) for the CLIP head)."""
        maps = self.encoder(x01)
        if self.pooling == "last":
            return self.head(maps[-1].mean(dim=(2, 3)))  # (B, C4)
        with_std = self.pooling == "stages"
        return self.head(torch.cat([_stage_statistics(m, with_std) for m in maps], dim=1))


def make_encoder_checkpoint(
    model: QualityPretrainModel, config: dict, epoch: int, metrics: dict, **extra
) -> dict:
    """Kind "encoder" checkpoint: encoder weights, head weights and config["head"]."""
    encoder = model.encoder
    full_config = {**config, "head": model.head_config, "crop_size": encoder.crop_size}
    return make_checkpoint(
        "encoder",
        encoder.model_size,
        encoder.state_dict(),
        full_config,
        epoch,
        metrics,
        head_state_dict=model.head.state_dict(),
        **extra,
    )


def pretrain_model_from_checkpoint(ckpt: dict) -> QualityPretrainModel:
    """Rebuild encoder and pretraining head from a loaded "encoder" checkpoint (strict loading)."""
    if ckpt.get("kind") != "encoder":
        raise EncoderMismatchError(
            f"expected an 'encoder' checkpoint from pretraining, found kind {ckpt.get('kind')!r}"
        )
    config = ckpt.get("config") or {}
    if "head" not in config or "head_state_dict" not in ckpt:
        raise EncoderMismatchError(
            "this encoder checkpoint carries no pretraining head (config['head'] and "
            "head_state_dict), so it cannot score images zero-shot; fine-tune it with "
            "train_swin.py --pretrained_encoder instead"
        )
    encoder = SwinEncoder(ckpt["model_size"], crop_size=crop_size_of(config))
    encoder.load_state_dict(strip_wrapper_prefixes(ckpt["state_dict"]), strict=True)
    head = build_pretrain_head(config["head"])
    head.load_state_dict(strip_wrapper_prefixes(ckpt["head_state_dict"]), strict=True)
    # checkpoints written before pooling was configurable pooled the last stage
    return QualityPretrainModel(encoder, head, config["head"].get("pooling", "last"))
