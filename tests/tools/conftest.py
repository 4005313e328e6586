"""Synthetic run folders in the layout of run_qualiclip_experiments.sh, for the report tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ENV = {"python": "3.11.2", "platform": "Linux", "torch": "2.14.1", "cuda": None, "cudnn": None,
       "gpu_name": None, "gpu_count": 0, "cpu": "Test CPU", "cpu_count": 2, "ram_gb": 7.5,
       "timm": "1.0.31", "open_clip": "3.3.0", "git_commit": "abc123", "git_dirty": False,
       "hostname": "testhost"}
DATASETS = ("koniq10k", "spaq", "kadid10k", "agiqa3k")


def _write(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _metrics(srcc: float, n: int = 20) -> dict:
    return {"srcc": srcc, "plcc": srcc + 0.01, "krcc": srcc - 0.1, "rmse": 0.5,
            "plcc_logistic": srcc + 0.02, "n": n}


def write_pretrain(folder: Path, epochs: int = 3, distortions: str = "blur,jpeg,noise,brightness",
                   loss_type: str = "simplified") -> None:
    """A finished pretraining run folder."""
    args = {"model_size": "micro", "epochs": epochs, "batch_size": 4, "lr": 5e-5,
            "distortions": distortions, "loss_type": loss_type, "num_levels": 5,
            "data_root": "unused"}
    resolved = [{"blur": "gaussian_blur", "noise": "gaussian_noise"}.get(d, d)
                for d in distortions.split(",")]
    _write(folder / "pretrain_config.json", {"args": args, "environment": ENV,
                                              "config": {"distortions": resolved}})
    _jsonl(folder / "metrics.jsonl",
           [{"epoch": e, "loss": 1.0 / (e + 1), "consistency": 0.1 / (e + 1),
             "ranking": 0.9 / (e + 1), "rank_accuracy": 0.55 + 0.1 * e, "level_spread": 0.05,
             "val_srcc": 0.1 + 0.2 * e, "val_by_image": _by_image(0.1 + 0.2 * e), "lr": 5e-5,
             "time_s": 2.5} for e in range(1, epochs + 1)])
    (folder / "swin_micro_qualiclip_pretrained.pkl").write_bytes(b"0" * 2048)
    (folder / "swin_micro_qualiclip_best.pkl").write_bytes(b"0" * 2048)


def _by_image(mean: float) -> list[float]:
    """Eight held-out images' validation SRCCs around `mean` (their mean is `mean`)."""
    return [round(mean + d, 4) for d in (-0.1, 0.1, -0.05, 0.05, -0.02, 0.02, 0.0, 0.0)]


def write_untrained(folder: Path, val_srcc: float = 0.0) -> None:
    """The untrained control (--epochs 0) of write_pretrain's run: its validation as epoch 0."""
    write_pretrain(folder, epochs=0)
    (folder / "swin_micro_qualiclip_best.pkl").unlink()
    _jsonl(folder / "metrics.jsonl", [{"epoch": 0, "val_srcc": val_srcc,
                                       "val_by_type": {"lens_blur": val_srcc},
                                       "val_by_image": _by_image(val_srcc)}])


def write_finetune(folder: Path, srcc: float, data_root: Path, pretrained: bool = False,
                   epochs: int = 3) -> None:
    """A finished fine-tuning run folder (results.json with a test SRCC of `srcc`)."""
    args = {"dataset": "koniq10k", "model_size": "micro", "epochs": epochs, "lr": 5e-6,
            "data_root": str(data_root),
            "pretrained_encoder": "pretrain/swin_micro_qualiclip_best.pkl" if pretrained
            else None, "use_attention": True}
    _write(folder / "finetune_config.json", {
        "args": args, "environment": ENV, "protocol": "plan",
        "overrides": {"epochs": {"preset": 50, "given": epochs}}})
    _jsonl(folder / "metrics.jsonl",
           [{"epoch": e, "train_loss": 10.0 - e, "train_srcc": 0.3 + 0.1 * e,
             "val_srcc": srcc - 0.05 * (epochs - e), "val_plcc": srcc, "lr": 1e-5, "time_s": 4.0}
            for e in range(epochs)])
    _write(folder / "results.json",
           {"model_name": folder.name, "dataset": "koniq10k", "best_epoch": epochs - 1,
            "epochs_run": epochs, "stopped_early": False, "train_time_s": 12.0,
            "val": _metrics(srcc), "test": _metrics(srcc)})
    (folder / "best_model.pkl").write_bytes(b"0" * 4096)


def write_eval(path: Path, base_srcc: float, images: list[Path], mode: str = "finetuned",
               keys: tuple[str, ...] = DATASETS, extra: dict | None = None) -> None:
    """A test_swin.py JSON (KADID-10k per type too, `extra` keys added) and one predictions CSV
    per dataset."""
    results = {k: _metrics(base_srcc - 0.1 * i, n=len(images)) for i, k in enumerate(keys)}
    by_type = {t: _metrics(base_srcc + 0.01 * i, n=405)
               for i, t in enumerate(("gaussian_blur", "motion_blur", "pixelate"))}
    _write(path, {"results": results, "model": "m.pkl", "mode": mode, "config": {},
                  "by_distortion": {"kadid10k": by_type} if "kadid10k" in keys else {},
                  **(extra or {})})
    rng = np.random.default_rng(0)
    for key in keys:
        mos = rng.uniform(0, 100, len(images))
        lines = ["image,mos,prediction"]
        noisy = mos + rng.normal(0, 10, len(mos))
        lines += [f"{img},{m:.3f},{p:.3f}" for img, m, p in zip(images, mos, noisy, strict=True)]
        (path.parent / f"{path.stem}_{key}_predictions.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Ten small PNG images on disk (the predictions CSVs name them by absolute path)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = []
    for i in range(10):
        path = folder / f"img{i}.png"
        Image.fromarray(np.full((40, 60, 3), i * 25, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def complete_run(tmp_path: Path, images: list[Path]) -> Path:
    """A run folder where every stage finished, with two repeats and all three ablations."""
    run = tmp_path / "run"
    ckpt, ev = run / "checkpoints", run / "eval"
    write_pretrain(ckpt / "pretrain")
    write_untrained(ckpt / "untrained")
    write_finetune(ckpt / "baseline", 0.70, tmp_path / "no_data")
    write_finetune(ckpt / "pretrained", 0.75, tmp_path / "no_data", pretrained=True)
    for i, (b, p) in enumerate([(0.68, 0.74), (0.72, 0.77)], start=1):
        write_finetune(ckpt / f"baseline_r{i}", b, tmp_path / "no_data")
        write_finetune(ckpt / f"pretrained_r{i}", p, tmp_path / "no_data", pretrained=True)
    write_eval(ev / "baseline.json", 0.6, images)
    write_eval(ev / "pretrained.json", 0.65, images)
    write_eval(ev / "zero_shot.json", 0.5, images, mode="zero_shot")
    write_eval(ev / "zero_shot_untrained.json", 0.1, images, mode="zero_shot")
    variants = {"epochs": [("e2", {"epochs": 2}), ("e4", {"epochs": 4})],
                "distortions": [("blur", {"distortions": "blur"}),
                                ("jpeg", {"distortions": "jpeg"})],
                "loss": [("full", {"loss_type": "full"})]}
    for kind, entries in variants.items():
        for j, (name, kwargs) in enumerate(entries):
            write_pretrain(ckpt / f"ablation_{kind}_{name}_pretrain", **kwargs)
            write_finetune(ckpt / f"ablation_{kind}_{name}", 0.7 + 0.01 * j, tmp_path / "no_data",
                           pretrained=True)
            write_eval(ev / f"ablation_{kind}_{name}.json", 0.6, images, keys=DATASETS[1:])
    for key in DATASETS:
        _write(run / "data" / f"{key}.json",
               {"dataset": key, "n_images": 10, "splits": {"train": 7, "val": 1, "test": 2},
                "mos_min": 1.0, "mos_max": 4.5, "missing": 0})
    (run / "data" / "livec.missing.txt").write_text(
        "error: LIVE-C labels not found: expected DATA_ROOT/livec/Data/AllMOS_release.mat\n")
    _write(run / "model_info.json", {"model_size": "micro", "encoder_params": 300000,
                                     "head_params": 50000, "total_params": 350000})
    stages = {s: {"attempts": [{"start": "t", "start_unix": 0, "end": "t", "wall_s": 3.0,
                                "status": "done"}], "skips": 1}
              for s in ("data", "pretrain", "baseline", "pretrained", "test_baseline")}
    _write(run / "timings.json", {"stages": stages})
    return run
