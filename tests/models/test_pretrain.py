"""Pretraining heads and the Stage-1 model: output ranges and encoder-checkpoint round trips."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from common.checkpoint import atomic_save, load_checkpoint, make_checkpoint
from models import (
    ClipQualityHead,
    EncoderMismatchError,
    QualityPretrainModel,
    ScalarQualityHead,
    SwinEncoder,
    build_pretrain_head,
    make_encoder_checkpoint,
    pretrain_model_from_checkpoint,
)


def anchors(pairs: int = 7, dim: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(pairs, 2, dim, generator=generator), dim=-1)


def test_scalar_head_raw_and_sigmoid_scores() -> None:
    pooled = torch.randn(5, 128) * 10
    raw = ScalarQualityHead(128)
    squashed = ScalarQualityHead(128, activation="sigmoid")
    squashed.load_state_dict(raw.state_dict())
    assert raw(pooled)["score"].shape == (5,)
    torch.testing.assert_close(squashed(pooled)["score"], torch.sigmoid(raw(pooled)["score"]))
    assert ((squashed(pooled)["score"] > 0) & (squashed(pooled)["score"] < 1)).all()
    with pytest.raises(ValueError, match="score activation"):
        ScalarQualityHead(128, activation="tanh")


def test_heads_score_in_float32_under_bf16_autocast() -> None:
    pooled = torch.randn(4, 128)
    for head in (ScalarQualityHead(128), ClipQualityHead(128, anchors(), logit_scale=100.0)):
        reference = head(pooled)["score"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = head(pooled.bfloat16())["score"]
        assert low.dtype == torch.float32
        # float32 all the way: equal to the float32 run up to the bf16 rounding of the input
        torch.testing.assert_close(low, head(pooled.bfloat16().float())["score"])
        assert torch.isfinite(reference).all()


def test_head_config_without_activation_is_the_earlier_sigmoid_head() -> None:
    head = build_pretrain_head({"type": "scalar", "in_features": 8, "hidden": 4})
    assert head.activation == "sigmoid"
    assert build_pretrain_head(ScalarQualityHead(8).config).activation == "none"


def test_clip_head_similarities_and_score() -> None:
    head = ClipQualityHead(128, anchors(), logit_scale=100.0)
    pooled = torch.randn(4, 128)
    out = head(pooled)
    assert out["sims"].shape == (4, 7, 2) and out["sims"].abs().max() <= 1 + 1e-6
    assert ((out["score"] >= 0) & (out["score"] <= 1)).all()
    assert {"text_embeddings", "logit_scale"} <= set(head.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = head(pooled)
    assert low["sims"].dtype == torch.float32
    torch.testing.assert_close(low["score"], out["score"], atol=0.05, rtol=0)


def test_clip_head_rejects_unpaired_anchors() -> None:
    with pytest.raises(ValueError, match=r"\(P, 2, D\)"):
        ClipQualityHead(128, torch.zeros(7, 3, 32), 100.0)


@pytest.mark.parametrize("kind", ["scalar", "clip"])
def test_pretrain_checkpoint_round_trip(tmp_path, kind) -> None:
    torch.manual_seed(0)
    encoder = SwinEncoder("micro")
    if kind == "scalar":
        head = ScalarQualityHead(encoder.num_features)
    else:
        head = ClipQualityHead(
            encoder.num_features, anchors(), 100.0, [["Good photo.", "Bad photo."]] * 7
        )
    model = QualityPretrainModel(encoder, head).eval()
    path = tmp_path / "swin_micro_epoch5.pkl"
    atomic_save(make_encoder_checkpoint(model, {"loss_type": kind}, epoch=5, metrics={}), path)
    ckpt = load_checkpoint(path, expected_kind="encoder")
    assert ckpt["config"]["head"]["type"] == kind and ckpt["config"]["loss_type"] == kind
    restored = pretrain_model_from_checkpoint(ckpt).eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        expected, found = model(x), restored(x)
    assert expected.keys() == found.keys()
    for key in expected:
        torch.testing.assert_close(found[key], expected[key], rtol=0, atol=0)


def test_encoder_checkpoint_without_head_cannot_score_zero_shot() -> None:
    encoder = SwinEncoder("micro")
    ckpt = make_checkpoint("encoder", "micro", encoder.state_dict(), {}, epoch=1, metrics={})
    with pytest.raises(EncoderMismatchError, match="no pretraining head"):
        pretrain_model_from_checkpoint(ckpt)


def test_unknown_head_type() -> None:
    with pytest.raises(ValueError, match="'scalar' or 'clip'"):
        build_pretrain_head({"type": "mlp", "in_features": 8})
