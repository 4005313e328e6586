"""Multi-crop evaluation, checkpoint loading for evaluation (fine-tuned / zero-shot), scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.checkpoint import atomic_save, make_checkpoint
from common.distributed import DistInfo
from common.errors import CheckpointError
from common.files import write_csv
from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import IQACropDataset
from data.rows import DatasetError, Row
from engine.evaluate import EVAL_SEED, load_model_for_eval, metrics_for, predict_rows
from engine.scoring import collect_images, scale_note, scoring_policy
from models.pretrain_heads import ScalarQualityHead
from models.pretrain_model import QualityPretrainModel, make_encoder_checkpoint, pooled_features
from models.swin_encoder import SwinEncoder
from models.swin_hyperiqa import build_swin_hyperiqa

CPU = torch.device("cpu")
SINGLE = DistInfo(rank=0, world_size=1, local_rank=0, device=CPU, is_main=True)
POLICY = ResizePolicy("none")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Row]:
    """Five small noisy images (MOS falls with the noise) and one undecodable file."""
    folder = tmp_path_factory.mktemp("eval_images")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        pixels = np.clip(128 + rng.normal(0, 10 + 15 * i, (240, 250, 3)), 0, 255)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        rows.append(Row(path, 90.0 - 15 * i, "test", path.name, path.name))
    broken = folder / "broken.png"
    broken.write_bytes(b"not an image")
    rows.append(Row(broken, 50.0, "test", broken.name, broken.name))
    return rows


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_swin_hyperiqa("micro", dropout=0.3, drop_path=0.2).eval()


def predict(model: torch.nn.Module, rows: list[Row], patches: int = 3) -> np.ndarray:
    return predict_rows(model, rows, policy=POLICY, cache=ImageCache(None), crop_size=224,
                        patches=patches, batch_size=2, device=CPU, amp="off", num_workers=0,
                        info=SINGLE)


def test_predictions_are_deterministic_crop_means_with_nan_for_unreadable(model, images) -> None:
    first = predict(model, images)
    assert np.array_equal(first, predict(model.train(), images), equal_nan=True)
    assert np.isnan(first[-1]) and np.all(np.isfinite(first[:-1]))
    dataset = IQACropDataset(images[:1], POLICY, None, crop_size=224, patches=3, train=False,
                             seed=EVAL_SEED)
    with torch.inference_mode():
        manual = model.eval()(dataset[0]["image"].float() / 255).mean()
    assert first[0] == pytest.approx(float(manual), abs=1e-5)


def test_metrics_leave_unscored_images_out(model, images) -> None:
    pred = predict(model, images, patches=1)
    metrics = metrics_for(pred, images, strict=False)
    assert metrics["n"] == 5


def test_full_checkpoint_loads_for_evaluation(tmp_path: Path, model) -> None:
    config = {**model.config, "dataset": "koniq10k", "mos_range": [3.0, 95.0]}
    path = tmp_path / "best_model.pkl"
    atomic_save(make_checkpoint("full", "micro", model.state_dict(), config, 1, {}), path)
    loaded = load_model_for_eval(path)
    assert loaded.mode == "finetuned" and loaded.score_range == (3.0, 95.0)
    assert "3..95" in scale_note(loaded)
    assert scoring_policy(loaded) == ResizePolicy("short_side", 384)
    x = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(loaded.model(x), model.eval()(x))
    with pytest.raises(CheckpointError, match="'micro' model but --model_size base"):
        load_model_for_eval(path, expected_size="base")


def test_encoder_checkpoint_scores_zero_shot(tmp_path: Path, images) -> None:
    encoder = SwinEncoder("micro")
    squashed = ScalarQualityHead(encoder.num_features, activation="sigmoid")
    pretrain = QualityPretrainModel(encoder, squashed)
    path = tmp_path / "swin_micro_qualiclip_pretrained.pkl"
    atomic_save(make_encoder_checkpoint(pretrain, {}, 1, {}), path)
    loaded = load_model_for_eval(path)
    assert loaded.mode == "zero_shot" and "[0, 1]" in scale_note(loaded)
    scores = predict(loaded.model, images[:3], patches=2)
    assert np.all((scores > 0) & (scores < 1))
    width = pooled_features(encoder, "stages")
    raw = QualityPretrainModel(encoder, ScalarQualityHead(width), "stages")
    atomic_save(make_encoder_checkpoint(raw, {}, 1, {}), path)
    loaded = load_model_for_eval(path)
    assert "open scale" in scale_note(loaded)
    assert np.isfinite(predict(loaded.model, images[:2], patches=1)).all()


def test_train_state_is_refused_with_a_hint(tmp_path: Path, model) -> None:
    path = tmp_path / "last.pkl"
    atomic_save(make_checkpoint("train_state", "micro", model.state_dict(), {}, 1, {}), path)
    with pytest.raises(CheckpointError, match=r"best_model\.pkl"):
        load_model_for_eval(path)


def test_collect_images_and_csv(tmp_path: Path, images) -> None:
    folder = images[0].path.parent
    found = collect_images([folder, images[0].path])
    assert images[0].path in found and len(found) == len(set(found))
    with pytest.raises(DatasetError, match="neither an image file nor a folder"):
        collect_images([tmp_path / "absent.jpg"])
    out = tmp_path / "scores.csv"
    write_csv(out, ("image", "score"), [("a,b.jpg", "1.0")])
    assert out.read_text() == 'image,score\n"a,b.jpg",1.0\n'
