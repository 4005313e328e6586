"""Fixtures of the models tests: micro models, images and a timm Swin weight file."""

from __future__ import annotations

import re

import huggingface_hub
import pytest
import timm
import torch

import models.weights
from models import build_swin_hyperiqa
from models.swin_encoder import MODEL_SIZES


@pytest.fixture
def micro_model():
    """A fresh micro Swin-HyperIQA (multi-scale, attention), seeded, in eval mode."""
    torch.manual_seed(0)
    return build_swin_hyperiqa("micro").eval()


@pytest.fixture
def images() -> torch.Tensor:
    """Two different random images (2, 3, 224, 224) in [0, 1]."""
    generator = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 224, 224, generator=generator)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty hub cache and no network: any download or connection attempt fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args} {kwargs}")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", forbidden)
    monkeypatch.setattr(models.weights, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr("socket.create_connection", forbidden)


def timm_micro_classifier(seed: int = 0, **overrides) -> torch.nn.Module:
    """A randomly initialised full timm Swin (classifier and final norm included) at micro size."""
    spec = MODEL_SIZES["micro"]
    torch.manual_seed(seed)
    kwargs = {**spec["overrides"], **overrides}
    return timm.create_model(spec["arch"], pretrained=False, num_classes=10, **kwargs).eval()


def microsoft_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm Swin state dict renamed to the original Microsoft release layout."""
    out = {}
    for key, value in state.items():
        key = re.sub(
            r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", key
        )
        out[key.replace("head.fc.", "head.")] = value
    return out
