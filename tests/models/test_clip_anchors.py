"""CLIP prompt anchors: the seven QualiCLIP pairs, embedding, weight sources, offline failure."""

from __future__ import annotations

import warnings

import open_clip
import pytest
import torch

from models import (
    QUALICLIP_PROMPT_PAIRS,
    WeightsUnavailableError,
    build_tiny_clip,
    embed_prompt_pairs,
    encode_prompt_pairs,
)
from models.clip_anchors import check_prompt_pairs, load_clip_model


def test_qualiclip_prompts_are_seven_pairs_of_fourteen_distinct_strings() -> None:
    prompts = [p for pair in QUALICLIP_PROMPT_PAIRS for p in pair]
    assert len(QUALICLIP_PROMPT_PAIRS) == 7 and all(len(p) == 2 for p in QUALICLIP_PROMPT_PAIRS)
    assert len(prompts) == 14 and len(set(prompts)) == 14
    assert QUALICLIP_PROMPT_PAIRS[0] == ("Good photo.", "Bad photo.")
    assert all(p.endswith(".") and p.count(".") == 1 for p in prompts)  # no merged prompts


def test_a_missing_comma_is_caught() -> None:
    merged = [("Good photo.", "Bad photo."), ("Sharp image.Blurry image.",)]
    with pytest.raises(ValueError, match="two non-empty strings"):
        check_prompt_pairs(merged)
    with pytest.raises(ValueError, match="distinct"):
        check_prompt_pairs([("Good photo.", "Bad photo."), ("Good photo.", "Noisy image.")])


def test_tiny_random_tower_embeds_the_pairs() -> None:
    with pytest.warns(UserWarning, match="meaningless"):
        anchors, scale = embed_prompt_pairs(QUALICLIP_PROMPT_PAIRS, "tiny", "none")
    assert anchors.shape == (7, 2, 32) and anchors.dtype == torch.float32
    torch.testing.assert_close(anchors.norm(dim=-1), torch.ones(7, 2))
    assert not torch.allclose(anchors[:, 0], anchors[:, 1])
    assert scale == pytest.approx(1 / 0.07, rel=1e-4)


def test_clip_weights_from_a_local_file(tmp_path) -> None:
    source = build_tiny_clip(seed=1)
    path = tmp_path / "tiny_clip.pt"
    torch.save(source.state_dict(), path)
    anchors, _ = embed_prompt_pairs(QUALICLIP_PROMPT_PAIRS, "tiny", str(path))
    expected, _ = encode_prompt_pairs(source, QUALICLIP_PROMPT_PAIRS)
    torch.testing.assert_close(anchors, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        random_init, _ = embed_prompt_pairs(QUALICLIP_PROMPT_PAIRS, "tiny", "none")
    assert not torch.allclose(anchors, random_init)


def test_clip_weights_from_an_openai_torchscript_file(tmp_path) -> None:
    source = build_tiny_clip(seed=2)
    tokens = open_clip.SimpleTokenizer()(["a photo."])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing is deprecated; OpenAI's files were made so
        traced = torch.jit.trace(source, (torch.rand(1, 3, 32, 32), tokens), check_trace=False)
    path = tmp_path / "RN50.pt"
    traced.save(str(path))
    model = load_clip_model("tiny", str(path))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    assert not any(p.requires_grad for p in model.parameters())


def test_openai_weights_offline_fail_at_once(no_network) -> None:
    with pytest.raises(WeightsUnavailableError, match="--clip_weights PATH") as info:
        load_clip_model("RN50", "openai")
    assert "--clip_weights none" in str(info.value)
    assert "resnet50_clip.openai" in str(info.value)


def test_unknown_weights_and_models_are_named(no_network) -> None:
    with pytest.raises(WeightsUnavailableError, match="neither a file nor a pretrained tag"):
        load_clip_model("RN50", "no_such_tag")
    with pytest.raises(ValueError, match="unknown --clip_model"):
        load_clip_model("RN-fifty", "none")
    with pytest.raises(WeightsUnavailableError, match="no pretrained weights"):
        load_clip_model("tiny", "openai")
