"""tools.level_srcc: within-image level SRCC of a Stage-1 checkpoint, images scored over crops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from common.checkpoint import atomic_save
from models.pretrain_heads import ScalarQualityHead
from models.pretrain_model import QualityPretrainModel, make_encoder_checkpoint, pooled_features
from models.swin_encoder import SwinEncoder
from tools import level_srcc


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    encoder = SwinEncoder("micro", crop_size=32)
    model = QualityPretrainModel(encoder, ScalarQualityHead(pooled_features(encoder, "stages")),
                                 "stages")
    path = tmp_path_factory.mktemp("level_srcc") / "encoder.pkl"
    atomic_save(make_encoder_checkpoint(model, {"crop_size": 32}, 0, {}), path)
    return path


def _measure(checkpoint: Path, demo_root: Path, *flags: str) -> dict:
    args = level_srcc.get_args_parser().parse_args(
        ["--model_path", str(checkpoint), "--data_root", str(demo_root), "--max_images", "3",
         "--distortions", "blur,noise", *flags])
    return json.loads(json.dumps(level_srcc.level_srcc(args)))


def test_images_are_scored_over_the_crops_asked_for(untrained_checkpoint: Path,
                                                    demo_root: Path) -> None:
    default = level_srcc.get_args_parser().parse_args(["--model_path", "x"])
    assert default.crops == 25  # as test_swin.py scores an image
    one = _measure(untrained_checkpoint, demo_root, "--crops", "1")
    four = _measure(untrained_checkpoint, demo_root, "--crops", "4")
    for result in (one, four):
        assert result["n_images"] == 3 and result["n_groups"] == 6
        assert set(result["by_type"]) == {"gaussian_blur", "gaussian_noise"}
        assert -1.0 <= result["srcc"] <= 1.0
    assert (one["crops"], four["crops"]) == (1, 4)
    assert _measure(untrained_checkpoint, demo_root, "--crops", "4") == four  # seeded
