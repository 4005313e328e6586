"""HyperIQA head: shapes, per-image target networks, flags, gradients, dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import HyperIQAHead
from models.hyper_net import run_target_network

STAGES = (16, 32, 64, 128)
TARGET_LAYERS = [(112, 224), (56, 112), (28, 56), (14, 28), (1, 14)]


def stage_maps(batch: int, seed: int = 0) -> list[torch.Tensor]:
    """Random stage maps of a micro encoder at 224 px."""
    generator = torch.Generator().manual_seed(seed)
    sides = (56, 28, 14, 7)
    return [
        torch.randn(batch, c, s, s, generator=generator) for c, s in zip(STAGES, sides, strict=True)
    ]


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_output_shapes_and_attention_rows() -> None:
    head = HyperIQAHead(STAGES).eval()
    details = head.forward_details(stage_maps(3))
    assert details["score"].shape == (3,) and torch.isfinite(details["score"]).all()
    assert details["target_in"].shape == (3, 224)
    assert details["attention"].shape == (3, 4)
    torch.testing.assert_close(details["attention"].sum(-1), torch.ones(3))
    shapes = [(tuple(w.shape), tuple(b.shape)) for w, b in details["target_params"]]
    assert shapes == [((3, o, i), (3, o)) for o, i in TARGET_LAYERS]
    # hyper-network convs emit in*out/49 channels, as in the official code
    assert [conv.out_channels for conv in head.weight_convs] == [512, 128, 32, 8]


def test_each_image_gets_its_own_target_network(micro_model, images) -> None:
    with torch.no_grad():
        details = micro_model.forward_details(images)
        alone = torch.cat([micro_model(images[i : i + 1]) for i in range(2)])
    for weight, bias in details["target_params"]:
        assert not torch.allclose(weight[0], weight[1])
        assert not torch.allclose(bias[0], bias[1])
    torch.testing.assert_close(details["score"], alone, rtol=1e-4, atol=1e-5)


def test_target_network_matches_a_per_image_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 224, generator=generator)
    params = [
        (torch.randn(3, o, i, generator=generator), torch.randn(3, o, generator=generator))
        for o, i in TARGET_LAYERS
    ]
    expected = []
    for n in range(3):
        q = x[n]
        for k, (w, b) in enumerate(params):
            q = F.linear(q, w[n], b[n])
            q = torch.sigmoid(q) if k < len(params) - 1 else q
        expected.append(q)
    torch.testing.assert_close(run_target_network(x, params), torch.cat(expected))


def test_flags_change_the_architecture() -> None:
    full = HyperIQAHead(STAGES, use_multiscale=True, use_attention=True)
    multiscale = HyperIQAHead(STAGES, use_multiscale=True, use_attention=False)
    single = HyperIQAHead(STAGES, use_multiscale=False, use_attention=False)
    assert count(full) > count(multiscale) > count(single)
    assert full.attention is not None and multiscale.attention is None
    assert single.lda is None and len(multiscale.lda) == 3
    assert multiscale.hyper_in[0].in_channels == sum(STAGES)
    assert single.hyper_in[0].in_channels == STAGES[-1]
    assert single.last_fc.out_features == 224 and multiscale.last_fc.out_features == 176
    assert multiscale.forward_details(stage_maps(2))["attention"] is None
    with pytest.warns(UserWarning, match="no effect without use_multiscale"):
        lone = HyperIQAHead(STAGES, use_multiscale=False, use_attention=True)
    assert lone.attention is None and not lone.use_attention


def test_dropout_acts_in_training_only() -> None:
    torch.manual_seed(0)
    head = HyperIQAHead(STAGES, dropout=0.5)
    features = stage_maps(4)
    head.train()
    assert not torch.allclose(head(features), head(features))
    head.eval()
    torch.testing.assert_close(head(features), head(features))


def test_gradients_reach_encoder_hyper_network_and_attention(micro_model, images) -> None:
    micro_model.train()
    micro_model(images).sum().backward()
    head = micro_model.head
    parts = {
        "encoder": micro_model.encoder.backbone.patch_embed.proj.weight,
        "encoder stage 1": next(micro_model.encoder.backbone.layers[0].parameters()),
        "lda": head.lda[0].conv.weight,
        "hyper input": head.hyper_in[0].weight,
        "weight generator": head.weight_convs[0].weight,
        "bias generator": head.bias_fcs[0].weight,
        "attention": head.attention.net[0].weight,
    }
    for name, param in parts.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("scope", ["hyper", "hyper_lda"])
def test_attention_scope_decides_whether_the_content_vector_is_weighted(scope: str) -> None:
    torch.manual_seed(0)
    head = HyperIQAHead(STAGES, attention_scope=scope).eval()
    maps = stage_maps(2)
    with torch.no_grad():
        torch.nn.init.normal_(head.attention.net[-1].weight, std=1.0)  # clearly unequal weights
        details = head.forward_details(maps)
        unweighted = head.content_vector(maps, None)
        plain_hyper = head.hyper_map(maps, None)
    assert not torch.allclose(details["attention"], torch.full((2, 4), 0.25), atol=0.05)
    # the hyper network's input is weighted in both scopes
    weighted_hyper = head.hyper_map(maps, details["attention"])
    assert not torch.allclose(weighted_hyper, plain_hyper)
    if scope == "hyper":  # the references: the LDA vector is left as it is
        torch.testing.assert_close(details["target_in"], unweighted)
    else:  # each stage's part scaled by its weight
        widths = [16, 16, 16, 176]
        parts = unweighted.split(widths, dim=1)
        expected = torch.cat([p * details["attention"][:, i:i + 1] for i, p in enumerate(parts)], 1)
        torch.testing.assert_close(details["target_in"], expected)
    with pytest.raises(ValueError, match="attention_scope"):
        HyperIQAHead(STAGES, attention_scope="lda")


def test_generator_gain_scales_the_generators_only() -> None:
    torch.manual_seed(0)
    plain = HyperIQAHead(STAGES)
    torch.manual_seed(0)
    default = HyperIQAHead(STAGES, generator_gain=1.0)
    torch.manual_seed(0)
    scaled = HyperIQAHead(STAGES, generator_gain=8.0)
    generators = ("weight_convs", "bias_fcs", "last_weight_fc", "last_bias_fc")
    for (name, p), q, r in zip(
        plain.named_parameters(), default.parameters(), scaled.parameters(), strict=True
    ):
        torch.testing.assert_close(p, q)  # the default draws exactly the old init
        if name.startswith(generators) and name.endswith("weight"):
            torch.testing.assert_close(r, 8.0 * p)
        else:
            torch.testing.assert_close(r, p)
    with pytest.raises(ValueError, match="generator_gain"):
        HyperIQAHead(STAGES, generator_gain=0.0)
