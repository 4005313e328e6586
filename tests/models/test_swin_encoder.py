"""Swin encoder: stage maps, precision and memory formats, sizes, ImageNet weight sources."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from models import EncoderMismatchError, WeightsUnavailableError, build_encoder
from models.swin_encoder import SwinEncoder, imagenet_weight_file
from tests.models.conftest import microsoft_layout, timm_micro_classifier


def test_micro_encoder_returns_four_nchw_stage_maps() -> None:
    encoder = build_encoder("test")  # alias of micro
    x = torch.rand(2, 3, 224, 224)
    stages = encoder(x)
    assert encoder.model_size == "micro"
    assert encoder.stage_channels == (16, 32, 64, 128)
    assert encoder.num_features == 128
    assert [tuple(s.shape) for s in stages] == [
        (2, 16, 56, 56),
        (2, 32, 28, 28),
        (2, 64, 14, 14),
        (2, 128, 7, 7),
    ]
    assert 1e5 < sum(p.numel() for p in encoder.parameters()) < 1e6


def test_normalisation_constants_are_not_saved() -> None:
    encoder = SwinEncoder("micro")
    keys = encoder.state_dict().keys()
    assert "mean" not in keys and "std" not in keys
    assert not any(k.startswith(("backbone.head", "backbone.norm.")) for k in keys)


def test_channels_last_and_bf16_autocast(micro_model, images) -> None:
    images = images[:1]  # bf16 matmuls are slow on CPUs without native bf16
    with torch.no_grad():
        reference = micro_model(images)
        model = micro_model.to(memory_format=torch.channels_last)
        x = images.contiguous(memory_format=torch.channels_last)
        channels_last = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    torch.testing.assert_close(channels_last, reference, rtol=1e-4, atol=1e-4)
    assert low.shape == (1,) and torch.isfinite(low).all()
    assert low.dtype == torch.float32  # the head runs in float32 under autocast


def test_grad_checkpointing_gives_the_same_gradients(micro_model, images) -> None:
    x = images[:2]

    def encoder_grads(checkpointing: bool) -> list[torch.Tensor]:
        micro_model.zero_grad(set_to_none=True)
        micro_model.encoder.set_grad_checkpointing(checkpointing)
        micro_model(x).sum().backward()
        return [p.grad.clone() for p in micro_model.encoder.parameters()]

    micro_model.train()
    plain, recomputed = encoder_grads(False), encoder_grads(True)
    micro_model.encoder.set_grad_checkpointing(False)
    micro_model.zero_grad(set_to_none=True)
    assert micro_model.encoder.backbone.layers[0].grad_checkpointing is False
    for a, b in zip(plain, recomputed, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_swin_base_encoder_has_about_87m_parameters() -> None:
    with torch.device("meta"):  # shapes only: skips initialising 87M weights on the CPU
        encoder = build_encoder("base", imagenet_weights="none")
    assert encoder.stage_channels == (128, 256, 512, 1024)
    assert 86.0e6 < sum(p.numel() for p in encoder.parameters()) < 88.0e6


def test_none_and_micro_auto_never_touch_the_network(no_network) -> None:
    build_encoder("micro", imagenet_weights="none")
    build_encoder("micro", imagenet_weights="auto")  # micro has no ImageNet weights


def test_auto_offline_fails_at_once_naming_the_alternatives(no_network) -> None:
    with pytest.raises(WeightsUnavailableError, match="--imagenet_weights PATH") as info:
        build_encoder("base", imagenet_weights="auto")
    assert "--imagenet_weights none" in str(info.value)
    assert "swin_base_patch4_window7_224.ms_in22k_ft_in1k" in str(info.value)


def test_auto_respects_hf_hub_offline(no_network, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("models.weights.hub_reachable", pytest.fail)  # must not even probe
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE"):
        build_encoder("tiny", imagenet_weights="auto")


def test_auto_uses_the_hub_cache(no_network, monkeypatch, tmp_path) -> None:
    cached = tmp_path / "model.safetensors"
    monkeypatch.setattr(
        "huggingface_hub.try_to_load_from_cache",
        lambda repo, name, cache_dir=None: str(cached) if name == "model.safetensors" else None,
    )
    assert imagenet_weight_file("tiny") == cached


@pytest.mark.parametrize("fmt", ["safetensors", "pth", "microsoft"])
def test_imagenet_weight_file_is_loaded(tmp_path, fmt) -> None:
    reference = timm_micro_classifier(seed=3)
    state = reference.state_dict()
    if fmt == "safetensors":
        path = tmp_path / "model.safetensors"
        save_file(state, str(path))
    else:
        path = tmp_path / "model.pth"
        torch.save({"model": microsoft_layout(state) if fmt == "microsoft" else state}, path)
    encoder = build_encoder("micro", imagenet_weights=str(path))
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        ours = encoder(x)
        normalised = (x - encoder.mean) / encoder.std
        theirs = reference.forward_intermediates(normalised, intermediates_only=True)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_imagenet_weights_of_another_model_fail_loudly(tmp_path) -> None:
    other = timm_micro_classifier(embed_dim=24)  # same names, other shapes
    path = tmp_path / "other.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(EncoderMismatchError, match="required"):
        build_encoder("micro", imagenet_weights=str(path))
    unrelated = tmp_path / "unrelated.safetensors"
    save_file({"fc.weight": torch.zeros(3, 3)}, str(unrelated))
    with pytest.raises(EncoderMismatchError, match="0 of the encoder's"):
        build_encoder("micro", imagenet_weights=str(unrelated))


def test_missing_weight_file_names_the_options(tmp_path) -> None:
    with pytest.raises(WeightsUnavailableError, match="'auto', 'none'"):
        build_encoder("micro", imagenet_weights=str(tmp_path / "absent.pth"))
