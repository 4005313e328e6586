"""Linear probe stage: frozen random, ImageNet and QualiCLIP-pretrained encoders of one size,
ridge on their pooled features, on every dataset with labels.

    python -m tools.probe --data_root DATA --out RUN_DIR/probe --model_size base \\
        --encoders random imagenet qualiclip=RUN_DIR/checkpoints/pretrain/swin_base_...pkl

Writes OUT/probe.json (metrics per dataset, encoder and feature kind; why a row is missing) and
OUT/<encoder>_<features>_<dataset>_predictions.csv (test images, MOS, probe prediction).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch
from torch import nn

from common.cli import DefaultsHelpFormatter, positive_int, run_script
from common.errors import InvalidValueError
from common.files import atomic_write_json, file_key, json_safe, write_csv
from common.runtime import flush_subnormals, resolve_device
from data.images import ImageCache
from data.registry import canonical_key, drop_missing, read_rows, resize_policy
from data.rows import DatasetError
from models.swin_encoder import (
    RANDOM_ONLY_SIZES,
    SwinEncoder,
    build_encoder,
    canonical_model_size,
)
from models.swin_hyperiqa import load_encoder
from tools.linear_probe import ALPHAS, CV_FOLDS, pooled_features, probe_dataset

PROBE_JSON = "probe.json"
DEFAULT_DATASETS = ("koniq10k", "spaq", "kadid10k", "agiqa3k", "livec")
LOGGER = logging.getLogger("probe")


class _Holder(nn.Module):
    """Gives an encoder the `.encoder` attribute that load_encoder fills."""

    def __init__(self, encoder: SwinEncoder) -> None:
        super().__init__()
        self.encoder = encoder


def build_probe_encoder(spec: str, model_size: str, crop_size: int, seed: int,
                        imagenet_weights: str) -> tuple[str, SwinEncoder | str]:
    """(name, encoder) for "random", "imagenet" or "NAME=CHECKPOINT"; the encoder is replaced by
    the reason in words when this setting has none (e.g. no ImageNet weights for micro)."""
    size = canonical_model_size(model_size)
    if spec == "random":
        torch.manual_seed(seed)
        return "random", SwinEncoder(size, crop_size=crop_size)
    if spec == "imagenet":
        if size in RANDOM_ONLY_SIZES:
            return "imagenet", f"not available: the {size} model has no ImageNet weights"
        if imagenet_weights == "none":
            return "imagenet", "not available: --imagenet_weights none"
        return "imagenet", build_encoder(size, imagenet_weights=imagenet_weights,
                                         crop_size=crop_size)
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise InvalidValueError(
            f"--encoders entry {spec!r}: expected random, imagenet or NAME=CHECKPOINT")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--encoders {name}: checkpoint not found: {path}")
    holder = _Holder(SwinEncoder(size, crop_size=crop_size))
    load_encoder(holder, path, LOGGER)
    return name, holder.encoder


def prediction_file(encoder: str, kind: str, dataset: str) -> str:
    """Name of the per-image test predictions CSV of one probe."""
    return f"{encoder}_{kind}_{file_key(dataset)}_predictions.csv"


def run_probe(args: argparse.Namespace) -> dict:
    """Extract features once per dataset for all encoders, fit and score the probes, write."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    flush_subnormals(device)
    encoders, skipped = {}, {}
    for spec in args.encoders:
        name, built = build_probe_encoder(spec, args.model_size, args.crop_size, args.seed,
                                          args.imagenet_weights)
        if isinstance(built, str):
            skipped[name] = built
        else:
            encoders[name] = built.to(device)
    report = {"model_size": canonical_model_size(args.model_size), "crop_size": args.crop_size,
              "patches": args.patches, "alphas": list(ALPHAS), "cv_folds": CV_FOLDS,
              "encoders": list(encoders), "skipped_encoders": skipped, "results": {},
              "skipped_datasets": {}}
    cache = ImageCache(args.cache_dir)
    for name in args.datasets:
        key = canonical_key(name)
        try:
            rows = drop_missing(key, read_rows(key, args.data_root), True, LOGGER)
        except DatasetError as exc:
            report["skipped_datasets"][key] = str(exc)
            LOGGER.warning("probe: %s skipped: %s", key, exc)
            continue
        feats = pooled_features(encoders, rows, policy=resize_policy(key), cache=cache,
                                crop_size=args.crop_size, patches=args.patches,
                                batch_size=args.batch_size, device=device)
        report["results"][key] = {}
        for enc_name, kinds in feats.items():
            scored = probe_dataset(kinds, rows)
            for kind, res in scored.items():
                write_csv(out / prediction_file(enc_name, kind, key),
                          ("image", "mos", "prediction"),
                          [(n, f"{m:.6g}", f"{p:.6f}") for n, m, p in res.pop("predictions")])
                LOGGER.info("probe %s %s %s: SRCC %.4f PLCC %.4f (alpha %g, %d train / %d test)",
                            key, enc_name, kind, res["srcc"], res["plcc"], res["alpha"],
                            res["n_train"], res["n_test"])
            report["results"][key][enc_name] = scored
    atomic_write_json(json_safe(report), out / PROBE_JSON)
    print(f"linear probe written: {out / PROBE_JSON}")
    return report


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of the probe stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--data_root", required=True, help="dataset root (DATA_ROOT/<key>/)")
    parser.add_argument("--out", required=True, help="output folder (RUN_DIR/probe)")
    parser.add_argument("--model_size", default="base", help="micro, tiny, small or base")
    parser.add_argument("--encoders", nargs="+", default=["random", "imagenet"],
                        help="random, imagenet and/or NAME=CHECKPOINT (a Stage-1 encoder or a "
                        "fine-tuned best_model.pkl of the same size)")
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS),
                        help="datasets to probe; absent ones are skipped and recorded")
    parser.add_argument("--imagenet_weights", default="auto",
                        help="ImageNet weights of the imagenet encoder: auto, none or a PATH")
    parser.add_argument("--crop_size", type=positive_int, default=224, help="crop side")
    parser.add_argument("--patches", type=positive_int, default=5,
                        help="fixed crops per image; features are averaged over them")
    parser.add_argument("--batch_size", type=positive_int, default=16, help="images per batch")
    parser.add_argument("--seed", type=int, default=42, help="seed of the random encoder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--cache_dir", default=os.environ.get("IQA_CACHE_DIR", "./.cache/images"),
                        help="resized-image cache (default: env IQA_CACHE_DIR or ./.cache/images)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_probe(get_args_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
