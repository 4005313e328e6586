"""Swin-HyperIQA: encoder and full checkpoints, mismatch errors, `python -m models`."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from common.checkpoint import atomic_save, crop_size_of, load_checkpoint, make_checkpoint
from models import (
    EncoderMismatchError,
    QualityPretrainModel,
    ScalarQualityHead,
    SwinEncoder,
    build_swin_hyperiqa,
    load_encoder,
    make_encoder_checkpoint,
    model_from_checkpoint,
    pretrain_model_from_checkpoint,
)
from models.__main__ import main


def pretrained_encoder_file(tmp_path, seed: int = 5):
    """An encoder checkpoint of a micro pretraining model with distinctive weights."""
    torch.manual_seed(seed)
    encoder = SwinEncoder("micro")
    model = QualityPretrainModel(encoder, ScalarQualityHead(encoder.num_features))
    path = tmp_path / "swin_micro_qualiclip_pretrained.pkl"
    atomic_save(make_encoder_checkpoint(model, {"lr": 1e-4}, epoch=3, metrics={}), path)
    return path, encoder.eval()


def test_encoder_checkpoint_round_trip(tmp_path, micro_model, images, caplog) -> None:
    path, encoder = pretrained_encoder_file(tmp_path)
    with caplog.at_level(logging.INFO):
        report = load_encoder(micro_model, path)
    n = len(encoder.state_dict())
    assert report == {"matched": n, "missing": 0, "unexpected": 0}
    assert f"matched {n}, missing 0, unexpected 0" in caplog.text
    with torch.no_grad():
        for a, b in zip(micro_model.encoder(images), encoder(images), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_full_checkpoint_round_trip(tmp_path, micro_model, images) -> None:
    ckpt = make_checkpoint(
        "full", "micro", micro_model.state_dict(), micro_model.config, epoch=1, metrics={}
    )
    path = tmp_path / "best_model.pkl"
    atomic_save(ckpt, path)
    restored = model_from_checkpoint(load_checkpoint(path, expected_kind="full")).eval()
    assert restored.config == micro_model.config
    with torch.no_grad():
        torch.testing.assert_close(restored(images), micro_model(images), rtol=0, atol=0)
    torch.manual_seed(9)
    other = build_swin_hyperiqa("micro")
    assert load_encoder(other, path)["matched"] == len(other.encoder.state_dict())


def test_checkpoint_of_another_model_size_fails(tmp_path, micro_model) -> None:
    path, _ = pretrained_encoder_file(tmp_path)
    ckpt = load_checkpoint(path)
    ckpt["model_size"] = "tiny"
    atomic_save(ckpt, path)
    with pytest.raises(EncoderMismatchError, match="'tiny' encoder but the model is 'micro'"):
        load_encoder(micro_model, path)


def test_checkpoint_with_wrong_keys_fails(tmp_path, micro_model) -> None:
    path, _ = pretrained_encoder_file(tmp_path)
    ckpt = load_checkpoint(path)
    ckpt["state_dict"] = {f"swin.{k}": v for k, v in ckpt["state_dict"].items()}
    atomic_save(ckpt, path)
    with pytest.raises(EncoderMismatchError, match=r"only 0 of the encoder's \d+ weights"):
        load_encoder(micro_model, path)


def test_train_state_is_not_an_encoder(tmp_path, micro_model) -> None:
    path = tmp_path / "last.pkl"
    atomic_save(make_checkpoint("train_state", "micro", {}, {}, epoch=0, metrics={}), path)
    with pytest.raises(EncoderMismatchError, match="'train_state' checkpoint"):
        load_encoder(micro_model, path)


def test_full_checkpoint_needs_the_model_config(micro_model) -> None:
    ckpt = make_checkpoint("full", "micro", micro_model.state_dict(), {}, epoch=1, metrics={})
    with pytest.raises(EncoderMismatchError, match="use_multiscale"):
        model_from_checkpoint(ckpt)


def test_single_scale_config_round_trips() -> None:
    model = build_swin_hyperiqa("micro", use_multiscale=False, use_attention=False, dropout=0.3)
    assert model.config == {
        "model_size": "micro",
        "use_multiscale": False,
        "use_attention": False,
        "attention_scope": "hyper",
        "head_pooling": "mean",
        "generator_gain": 1.0,
        "dropout": 0.3,
        "drop_path": 0.0,
        "crop_size": 224,
        "score_offset": 0.0,
        "score_scale": 1.0,
    }
    ckpt = make_checkpoint("full", "micro", model.state_dict(), model.config, epoch=0, metrics={})
    assert model_from_checkpoint(ckpt).head.lda is None


def test_cli_prints_parameter_counts(capsys) -> None:
    assert main(["--model_size", "micro", "--imagenet_weights", "none"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total_params"] == out["encoder_params"] + out["head_params"]
    assert out["stage_shapes"][-1] == [1, 128, 7, 7]
    assert out["output_shape"] == [1]
    assert out["target_layer_shapes"][0] == [112, 224]


def test_checkpoint_without_attention_scope_loads_the_old_placement(micro_model) -> None:
    assert micro_model.config["attention_scope"] == "hyper"
    config = {k: v for k, v in micro_model.config.items() if k != "attention_scope"}
    ckpt = make_checkpoint("full", "micro", micro_model.state_dict(), config, epoch=1, metrics={})
    assert model_from_checkpoint(ckpt).head.attention_scope == "hyper_lda"


def test_checkpoint_config_stores_the_crop_size_once() -> None:
    model = build_swin_hyperiqa("micro", crop_size=64)
    assert model.config["crop_size"] == 64 and "img_size" not in model.config
    assert model.encoder.crop_size == 64


def test_old_checkpoints_naming_the_crop_size_img_size_still_load(micro_model) -> None:
    """Checkpoints written before one name stored the crop size as img_size only."""
    small = build_swin_hyperiqa("micro", crop_size=64)
    config = {k: v for k, v in small.config.items() if k != "crop_size"} | {"img_size": 64}
    ckpt = make_checkpoint("full", "micro", small.state_dict(), config, epoch=1, metrics={})
    assert model_from_checkpoint(ckpt).encoder.crop_size == 64
    assert crop_size_of(config) == 64 and crop_size_of({}) == 224
    encoder = SwinEncoder("micro", crop_size=96)
    pretrain = QualityPretrainModel(encoder, ScalarQualityHead(encoder.num_features))
    old = make_encoder_checkpoint(pretrain, {}, epoch=1, metrics={})
    old["config"] = {k: v for k, v in old["config"].items() if k != "crop_size"} | {"img_size": 96}
    assert pretrain_model_from_checkpoint(old).encoder.crop_size == 96
