"""Swin Transformer encoder (timm) returning the feature maps of its four stages."""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import get_pretrained_cfg
from timm.models.swin_transformer import checkpoint_filter_fn
from torch import nn

from common.checkpoint import load_weights
from common.errors import InvalidValueError
from common.vocabulary import DEFAULT_CROP_SIZE, MODEL_SIZE_ALIASES
from models.errors import WeightsUnavailableError
from models.weights import hub_file, load_matching, strip_wrapper_prefixes

LOGGER = logging.getLogger(__name__)

# Every size is timm's SwinTransformer at 224 px, patch 4, window 7; `micro` shrinks width and
# depth (a few hundred thousand parameters) for tests, `mini` (a few million) is the size that
# learns QualiCLIP pretraining on a CPU in minutes. mini uses window 4: at the 64-128 px crops
# of CPU runs the stage maps are 16-32, 8-16, 4-8, 2-4 wide, which window 7 would pad.
MODEL_SIZES: dict[str, dict] = {
    "micro": {
        "arch": "swin_tiny_patch4_window7_224",
        "overrides": {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 2, 4, 8)},
    },
    "mini": {
        "arch": "swin_tiny_patch4_window7_224",
        "overrides": {"embed_dim": 48, "depths": (2, 2, 2, 2), "num_heads": (2, 4, 8, 16),
                      "window_size": 4},
    },
    "tiny": {"arch": "swin_tiny_patch4_window7_224", "overrides": {}},
    "small": {"arch": "swin_small_patch4_window7_224", "overrides": {}},
    "base": {"arch": "swin_base_patch4_window7_224", "overrides": {}},
}
RANDOM_ONLY_SIZES = ("micro", "mini")  # shrunk configs: no published ImageNet weights
NUM_STAGES = 4
_IMAGENET_HINT = (
    "Pass --imagenet_weights PATH (a local timm .safetensors/.pth/.bin file, e.g. "
    "model.safetensors of the hub model {repo}) or --imagenet_weights none (random initialisation)."
)


def canonical_model_size(name: str) -> str:
    """Model size name with aliases resolved ("test" -> "micro")."""
    key = MODEL_SIZE_ALIASES.get(name, name)
    if key not in MODEL_SIZES:
        valid = sorted([*MODEL_SIZES, *MODEL_SIZE_ALIASES])
        raise InvalidValueError(f"unknown model size {name!r}; expected one of {valid}")
    return key


class SwinEncoder(nn.Module):
    """Swin encoder: float images in [0, 1] -> four NCHW stage maps (strides 4, 8, 16, 32)."""

    def __init__(self, model_size: str, drop_path: float = 0.0,
                 crop_size: int = DEFAULT_CROP_SIZE) -> None:
        super().__init__()
        self.model_size = canonical_model_size(model_size)
        spec = MODEL_SIZES[self.model_size]
        self.arch = spec["arch"]
        backbone = timm.create_model(
            self.arch,
            pretrained=False,
            num_classes=0,
            drop_path_rate=drop_path,
            img_size=crop_size,
            **spec["overrides"],
        )
        # The classifier and the final norm act after the last stage only; the stage maps do not
        # use them, and unused parameters would trouble DDP.
        backbone.prune_intermediate_layers(NUM_STAGES, prune_norm=True, prune_head=True)
        self.backbone = backbone
        self.stage_channels = tuple(int(info["num_chs"]) for info in backbone.feature_info)
        self.num_features = self.stage_channels[-1]
        self.crop_size = crop_size
        mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's blocks in the backward pass: less activation memory for about
        one more forward pass of compute (Swin-B at large batches on small cards)."""
        self.backbone.set_grad_checkpointing(enable)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stage maps [(B, C1, H/4, W/4), ..., (B, C4, H/32, W/32)] of (B, 3, H, W) in [0, 1]."""
        x = (x - self.mean) / self.std
        return self.backbone.forward_intermediates(x, intermediates_only=True)


def _is_classifier_key(key: str) -> bool:
    """Classifier head and the final norm: used only after the last stage, absent here."""
    return key.startswith(("head.", "norm."))


def _has_module(module: nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


def load_imagenet_weights(encoder: SwinEncoder, path: str | Path) -> dict[str, int]:
    """Load a timm Swin weight file (timm or original Microsoft key layout) into the encoder."""
    state = strip_wrapper_prefixes(load_weights(path))
    ignored = [k for k in state if _is_classifier_key(k)]
    state = {k: v for k, v in state.items() if not _is_classifier_key(k)}
    needs_filter = "layers.0.downsample.reduction.weight" in state or any(
        k.endswith(("relative_position_index", "attn_mask")) for k in state
    )
    if needs_filter:
        # timm's filter converts the original Microsoft layout; it looks up the module of every
        # relative-position table, so tables of blocks this encoder lacks stay out of it.
        orphan = {
            k: v
            for k, v in state.items()
            if k.endswith("relative_position_bias_table")
            and not _has_module(encoder.backbone, k[: -len(".relative_position_bias_table")])
        }
        kept = {k: v for k, v in state.items() if k not in orphan}
        state = {**checkpoint_filter_fn(kept, encoder.backbone), **orphan}
    report = load_matching(encoder.backbone, state, f"ImageNet weights {path}")
    report["ignored"] = len(ignored)
    LOGGER.info(
        "ImageNet weights %s: matched %d, missing %d, unexpected %d, classifier keys ignored %d",
        path,
        report["matched"],
        report["missing"],
        report["unexpected"],
        report["ignored"],
    )
    return report


def imagenet_weight_file(model_size: str) -> Path:
    """Local file of timm's default ImageNet weights for `model_size` (cache, else download)."""
    arch = MODEL_SIZES[canonical_model_size(model_size)]["arch"]
    repo = get_pretrained_cfg(arch).hf_hub_id
    return hub_file(
        repo,
        ("model.safetensors", "pytorch_model.bin"),
        what=f"ImageNet weights for {arch}",
        hint=_IMAGENET_HINT.format(repo=repo),
    )


def build_encoder(
    model_size: str,
    drop_path: float = 0.0,
    imagenet_weights: str = "none",
    crop_size: int = DEFAULT_CROP_SIZE,
) -> SwinEncoder:
    """Swin encoder of `model_size` initialised per `imagenet_weights`: "auto", "none" or a PATH."""
    size = canonical_model_size(model_size)
    source = str(imagenet_weights)
    path = None  # resolved before building, so a missing file fails at once
    if source == "auto" and size in RANDOM_ONLY_SIZES:
        LOGGER.warning("model size %s has no ImageNet weights: random initialisation", size)
    elif source == "auto":
        path = imagenet_weight_file(size)
    elif source != "none":
        path = Path(source)
        if not path.is_file():
            raise WeightsUnavailableError(
                f"--imagenet_weights {source!r}: no such file; expected 'auto', 'none' or the path "
                "of a timm .safetensors/.pth/.bin file"
            )
    encoder = SwinEncoder(size, drop_path=drop_path, crop_size=crop_size)
    if path is not None:
        load_imagenet_weights(encoder, path)
    return encoder
