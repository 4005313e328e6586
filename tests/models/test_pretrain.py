"""Pretraining heads and the Stage-1 model: output ranges and encoder-checkpoint round trips."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.checkpoint import atomic_save, load_checkpoint, make_checkpoint
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


def test_scalar_head_scores_in_unit_interval() -> None:
    head = ScalarQualityHead(128)
    out = head(torch.randn(5, 128) * 10)
    assert out["score"].shape == (5,)
    assert ((out["score"] > 0) & (out["score"] < 1)).all()


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
