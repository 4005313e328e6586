"""Swin-HyperIQA (Swin encoder + HyperIQA head) and loading encoder checkpoints into it."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from common.checkpoint import crop_size_of, load_checkpoint
from common.errors import InvalidValueError
from common.vocabulary import DEFAULT_CROP_SIZE
from models.errors import EncoderMismatchError
from models.hyper_net import HyperIQAHead
from models.swin_encoder import SwinEncoder, build_encoder, canonical_model_size
from models.weights import load_matching, strip_wrapper_prefixes

LOGGER = logging.getLogger(__name__)

# Keys of SwinHyperIQA.config that decide the architecture; a "full" checkpoint must carry them.
ARCHITECTURE_KEYS = ("model_size", "use_multiscale", "use_attention")
LEGACY_ATTENTION_SCOPE = "hyper_lda"  # for a checkpoint whose config has no "attention_scope"


class SwinHyperIQA(nn.Module):
    """Swin encoder + HyperIQA head: float images in [0, 1] (B, 3, H, W) -> scores (B,)."""

    def __init__(self, encoder: SwinEncoder, head: HyperIQAHead, config: dict) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.config = dict(config)
        # score = offset + scale x head output; (0, 1) for models written before the option
        self.config.setdefault("score_offset", 0.0)
        self.config.setdefault("score_scale", 1.0)

    def set_score_scale(self, offset: float, scale: float) -> None:
        """Map the head's output to scores as offset + scale x output (e.g. MOS mean and SD)."""
        if not scale > 0:
            raise InvalidValueError(f"the score scale must be positive, got {scale}")
        self.config["score_offset"], self.config["score_scale"] = float(offset), float(scale)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        """Quality score per image (B,), float32."""
        return self.forward_details(x01)["score"]

    def forward_details(self, x01: torch.Tensor) -> dict:
        """The head's details (score, attention, target_in, target_params) for a batch.

        The encoder runs under any outer autocast; the head always runs in float32: bf16 would
        round scores on a 0-100 MOS scale to steps of 0.25-0.5 (ties that lower SRCC and a
        coarse L1 gradient), and the head is about 1 % of Swin-B's compute.
        """
        features = self.encoder(x01)
        with torch.autocast(x01.device.type, enabled=False):
            details = self.head.forward_details([f.float() for f in features])
        offset, scale = self.config["score_offset"], self.config["score_scale"]
        details["score"] = offset + scale * details["score"]
        return details


def build_swin_hyperiqa(
    model_size: str,
    use_multiscale: bool = True,
    use_attention: bool = True,
    dropout: float = 0.0,
    drop_path: float = 0.0,
    imagenet_weights: str = "none",
    crop_size: int = DEFAULT_CROP_SIZE,
    attention_scope: str = "hyper",
    head_pooling: str = "mean",
    generator_gain: float = 1.0,
) -> SwinHyperIQA:
    """Swin-HyperIQA of `model_size` with the encoder initialised per `imagenet_weights`."""
    encoder = build_encoder(
        model_size, drop_path=drop_path, imagenet_weights=imagenet_weights, crop_size=crop_size
    )
    head = HyperIQAHead(
        encoder.stage_channels,
        use_multiscale=use_multiscale,
        use_attention=use_attention,
        dropout=dropout,
        attention_scope=attention_scope,
        pooling=head_pooling,
        generator_gain=generator_gain,
    )
    config = {
        "model_size": encoder.model_size,
        "use_multiscale": head.use_multiscale,
        "use_attention": head.use_attention,
        "attention_scope": head.attention_scope,
        "head_pooling": head.pooling,
        "generator_gain": head.generator_gain,  # init only; recorded for provenance
        "dropout": float(dropout),
        "drop_path": float(drop_path),
        "crop_size": int(crop_size),
    }
    return SwinHyperIQA(encoder, head, config)


def _encoder_state(ckpt: dict, path: str | Path) -> dict[str, torch.Tensor]:
    """Encoder weights of an "encoder" checkpoint or of the encoder part of a "full" one."""
    state = strip_wrapper_prefixes(ckpt["state_dict"])
    if ckpt["kind"] == "encoder":
        return state
    if ckpt["kind"] == "full":
        prefix = "encoder."
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    raise EncoderMismatchError(
        f"{path} is a {ckpt['kind']!r} checkpoint; expected an 'encoder' checkpoint (from "
        "pretrain_qualiclip.py) or a 'full' Swin-HyperIQA checkpoint (best_model.pkl)"
    )


def load_encoder(
    model: nn.Module, path: str | Path, logger: logging.Logger | None = None
) -> dict[str, int]:
    """Load the encoder weights of a checkpoint into `model.encoder`; report key counts.

    Fails with EncoderMismatchError when the checkpoint is for another model size or fewer than
    90 % of the encoder's keys are matched by name and shape.
    """
    logger = logger or LOGGER
    ckpt = load_checkpoint(path)
    encoder: SwinEncoder = model.encoder
    found = canonical_model_size(str(ckpt["model_size"]))
    if found != encoder.model_size:
        raise EncoderMismatchError(
            f"{path} holds a {found!r} encoder but the model is {encoder.model_size!r}; pass the "
            f"matching --model_size {found} or a checkpoint trained at {encoder.model_size!r}"
        )
    report = load_matching(encoder, _encoder_state(ckpt, path), f"encoder checkpoint {path}")
    logger.info(
        "loaded encoder from %s (%s, epoch %s): matched %d, missing %d, unexpected %d",
        path,
        ckpt["kind"],
        ckpt.get("epoch"),
        report["matched"],
        report["missing"],
        report["unexpected"],
    )
    return report


def model_from_checkpoint(ckpt: dict) -> SwinHyperIQA:
    """Rebuild a Swin-HyperIQA from a loaded "full" checkpoint and load its weights strictly."""
    if ckpt.get("kind") != "full":
        raise EncoderMismatchError(
            f"expected a 'full' Swin-HyperIQA checkpoint, found kind {ckpt.get('kind')!r}"
        )
    config = dict(ckpt.get("config") or {})
    config.setdefault("model_size", ckpt.get("model_size"))
    absent = [k for k in ARCHITECTURE_KEYS if config.get(k) is None]
    if absent:
        raise EncoderMismatchError(
            f"the checkpoint's config lacks {absent}; expected the model's config "
            f"(SwinHyperIQA.config) with keys {list(ARCHITECTURE_KEYS)}"
        )
    model = build_swin_hyperiqa(
        config["model_size"],
        use_multiscale=bool(config["use_multiscale"]),
        use_attention=bool(config["use_attention"]),
        dropout=float(config.get("dropout", 0.0)),
        drop_path=float(config.get("drop_path", 0.0)),
        imagenet_weights="none",
        crop_size=crop_size_of(config),
        # checkpoints written before the option existed scaled the LDA vector too
        attention_scope=str(config.get("attention_scope", LEGACY_ATTENTION_SCOPE)),
        head_pooling=str(config.get("head_pooling", "mean")),
        generator_gain=float(config.get("generator_gain", 1.0)),
    )
    model.set_score_scale(config.get("score_offset", 0.0), config.get("score_scale", 1.0))
    model.load_state_dict(strip_wrapper_prefixes(ckpt["state_dict"]), strict=True)
    return model
