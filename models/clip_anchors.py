"""CLIP text anchors: antonym prompts embedded once by a frozen open_clip text tower."""

from __future__ import annotations

import logging
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from common.errors import InvalidValueError
from models.errors import WeightsUnavailableError
from models.weights import hub_file

LOGGER = logging.getLogger(__name__)

# The seven antonym pairs of QualiCLIP's zero-shot score, positive prompt first.
QUALICLIP_PROMPT_PAIRS: tuple[tuple[str, str], ...] = (
    ("Good photo.", "Bad photo."),
    ("Sharp image.", "Blurry image."),
    ("Sharp edges.", "Blurry edges."),
    ("High-resolution image.", "Low-resolution image."),
    ("Noise-free image.", "Noisy image."),
    ("High-quality image.", "Low-quality image."),
    ("Good picture.", "Bad picture."),
)
TINY_CLIP_MODEL = "tiny"  # a small randomly initialised CLIP for tests and CPU demos
_CLIP_HINT = (
    "Pass --clip_weights PATH (a local open_clip or OpenAI checkpoint) or --clip_weights none."
)
# Non-weight entries of TorchScript CLIP files (OpenAI metadata; buffers recorded by tracing).
_TORCHSCRIPT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


def check_prompt_pairs(pairs: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """Validate prompt pairs: each (positive, negative), non-empty, all prompts distinct."""
    checked = []
    for pair in pairs:
        if (
            isinstance(pair, str)
            or len(pair) != 2
            or not all(isinstance(p, str) and p.strip() for p in pair)
        ):
            raise InvalidValueError(f"each prompt pair must be two non-empty strings, got {pair!r}")
        checked.append((pair[0], pair[1]))
    prompts = [p for pair in checked for p in pair]
    if not checked or len(set(prompts)) != len(prompts):
        raise InvalidValueError(f"expected at least one pair and distinct prompts, got {prompts}")
    return checked


def build_tiny_clip(embed_dim: int = 32, seed: int = 0) -> nn.Module:
    """A small randomly initialised open_clip CLIP (1-layer towers, width 32) for tests."""
    from open_clip.model import CLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(
            embed_dim=embed_dim,
            vision_cfg={
                "image_size": 32,
                "patch_size": 16,
                "width": 32,
                "layers": 1,
                "head_width": 16,
            },
            text_cfg={
                "context_length": 77,
                "vocab_size": 49408,
                "width": 32,
                "heads": 2,
                "layers": 1,
            },
        )
    return model.eval()


def _is_torchscript(path: Path) -> bool:
    """OpenAI's original CLIP files are TorchScript archives (they hold a constants.pkl)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(Path(name).name == "constants.pkl" for name in archive.namelist())


def load_clip_file(model: nn.Module, path: str | Path) -> None:
    """Load CLIP weights strictly from a local open_clip checkpoint or OpenAI TorchScript file."""
    import open_clip

    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"CLIP weight file not found: {path}. {_CLIP_HINT}")
    try:
        if _is_torchscript(path):
            # TorchScript archives cannot be read with weights_only=True; torch.jit.load runs no
            # pickled Python code, and only the state dict is kept.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is being deprecated
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
            for key in _TORCHSCRIPT_EXTRA_KEYS:
                state.pop(key, None)
            model.load_state_dict(state, strict=True)
        else:
            open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        raise WeightsUnavailableError(
            f"cannot load CLIP weights from {path} into this CLIP model: {exc}. Expected the "
            "checkpoint of the --clip_model architecture."
        ) from exc


def _tag_weight_file(clip_model: str, tag: str, cache_dir: str | None) -> Path:
    """Local file of an open_clip pretrained tag: HF cache, else a download."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(clip_model, tag)
    hub = cfg.get("hf_hub", "")
    if not hub:
        raise WeightsUnavailableError(
            f"open_clip has no hub weights tagged {tag!r} for {clip_model!r} (tags: "
            f"{open_clip.list_pretrained_tags_by_model(clip_model)}). {_CLIP_HINT}"
        )
    repo, filename = hub.rstrip("/"), ""
    if not hub.endswith("/"):
        repo, filename = hub.rsplit("/", 1)
    names = (
        (filename,) if filename else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    )
    return hub_file(
        repo, names, f"CLIP weights {clip_model}/{tag}", _CLIP_HINT, cache_dir=cache_dir
    )


def _resolve_weights(
    clip_model: str, clip_weights: str, cache_dir: str | None
) -> tuple[Path | None, str | None]:
    """(weight file, pretrained tag whose settings it follows) for --clip_weights; (None, None)
    for "none"."""
    import open_clip

    if clip_weights == "none":
        return None, None
    if Path(clip_weights).is_file():
        return Path(clip_weights), "openai"  # a local file is taken to hold OpenAI's weights
    tags = open_clip.list_pretrained_tags_by_model(clip_model)
    if clip_weights in tags:
        return _tag_weight_file(clip_model, clip_weights, cache_dir), clip_weights
    raise WeightsUnavailableError(
        f"--clip_weights {clip_weights!r} is neither a file nor a pretrained tag of {clip_model} "
        f"(tags: {tags}). {_CLIP_HINT}"
    )


def load_clip_model(
    clip_model: str = "RN50", clip_weights: str = "openai", clip_cache_dir: str | None = None
) -> nn.Module:
    """Frozen open_clip model in eval mode; weights from a pretrained tag, a PATH or none."""
    import open_clip

    if clip_model == TINY_CLIP_MODEL:
        if clip_weights != "none" and not Path(clip_weights).is_file():
            raise WeightsUnavailableError(
                f"the {TINY_CLIP_MODEL!r} CLIP has no pretrained weights; pass --clip_weights "
                "none or the PATH of a saved tiny CLIP"
            )
        model = build_tiny_clip()
        path = None if clip_weights == "none" else Path(clip_weights)
    else:
        if clip_model not in open_clip.list_models():
            raise InvalidValueError(
                f"unknown --clip_model {clip_model!r}; open_clip knows e.g. RN50, ViT-B-32"
            )
        path, tag = _resolve_weights(clip_model, clip_weights, clip_cache_dir)
        # OpenAI's CLIP models were trained with QuickGELU while open_clip's RN50 config says
        # GELU: follow the weights' own setting.
        quick_gelu = tag is not None and bool(
            open_clip.get_pretrained_cfg(clip_model, tag).get("quick_gelu")
        )
        model = open_clip.create_model(
            clip_model,
            pretrained=None,
            force_quick_gelu=quick_gelu,
            pretrained_image=False,
            pretrained_text=False,
        )
    if path is not None:
        load_clip_file(model, path)
    else:
        warnings.warn(
            f"CLIP {clip_model} is randomly initialised (--clip_weights none): the prompt anchors "
            "are meaningless without real CLIP weights; use it for tests only",
            stacklevel=2,
        )
    model.requires_grad_(False)
    return model.eval()


@torch.no_grad()
def encode_prompt_pairs(
    model: nn.Module, pairs: Sequence[Sequence[str]], tokenizer=None
) -> tuple[torch.Tensor, float]:
    """L2-normalised text embeddings (P, 2, D) of the pairs and the model's logit scale."""
    import open_clip

    checked = check_prompt_pairs(pairs)
    tokenizer = tokenizer or open_clip.SimpleTokenizer()
    device = next(model.parameters()).device
    tokens = tokenizer([p for pair in checked for p in pair]).to(device)
    text = model.encode_text(tokens, normalize=True).float().cpu()  # (2P, D)
    return text.reshape(len(checked), 2, -1), float(model.logit_scale.exp().item())


def embed_prompt_pairs(
    pairs: Sequence[Sequence[str]] = QUALICLIP_PROMPT_PAIRS,
    clip_model: str = "RN50",
    clip_weights: str = "openai",
    clip_cache_dir: str | None = None,
) -> tuple[torch.Tensor, float]:
    """Prompt anchors (P, 2, D), L2-normalised, and the logit scale of a frozen CLIP text tower."""
    import open_clip

    model = load_clip_model(clip_model, clip_weights, clip_cache_dir)
    tokenizer = None if clip_model == TINY_CLIP_MODEL else open_clip.get_tokenizer(clip_model)
    embeddings, logit_scale = encode_prompt_pairs(model, pairs, tokenizer)
    LOGGER.info(
        "embedded %d prompt pairs with CLIP %s (%s): dim %d, logit scale %.2f",
        embeddings.shape[0],
        clip_model,
        clip_weights,
        embeddings.shape[-1],
        logit_scale,
    )
    return embeddings, logit_scale
