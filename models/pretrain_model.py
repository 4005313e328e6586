"""Stage-1 model: Swin encoder + quality head on the mean-pooled last stage, and its checkpoints."""

from __future__ import annotations

import torch
from torch import nn

from engine.checkpoint import make_checkpoint
from models.errors import EncoderMismatchError
from models.pretrain_heads import build_pretrain_head
from models.swin_encoder import SwinEncoder
from models.weights import strip_wrapper_prefixes


class QualityPretrainModel(nn.Module):
    """Encoder + pretraining head: float images in [0, 1] (B, 3, H, W) -> head output dict."""

    def __init__(self, encoder: SwinEncoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    @property
    def head_config(self) -> dict:
        """The head's JSON-able config (stored as config["head"] in encoder checkpoints)."""
        return self.head.config

    def forward(self, x01: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head output ("score" (B,), plus "sims" (B, P, 2) for the CLIP head)."""
        pooled = self.encoder(x01)[-1].mean(dim=(2, 3))  # (B, C4)
        return self.head(pooled)


def make_encoder_checkpoint(
    model: QualityPretrainModel, config: dict, epoch: int, metrics: dict, **extra
) -> dict:
    """Kind "encoder" checkpoint: encoder weights, head weights and config["head"]."""
    encoder = model.encoder
    full_config = {**config, "head": model.head_config, "img_size": encoder.img_size}
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
    encoder = SwinEncoder(ckpt["model_size"], img_size=int(config.get("img_size", 224)))
    encoder.load_state_dict(strip_wrapper_prefixes(ckpt["state_dict"]), strict=True)
    head = build_pretrain_head(config["head"])
    head.load_state_dict(strip_wrapper_prefixes(ckpt["head_state_dict"]), strict=True)
    return QualityPretrainModel(encoder, head)
