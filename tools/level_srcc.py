"""Zero-shot SRCC of degradation level vs score within each image, for a Stage-1 checkpoint.

Example (held-out demo KonIQ test images, the four default training types):
    python -m tools.level_srcc --model_path RUN/swin_mini_qualiclip_pretrained.pkl \
        --data_root DEMO --dataset koniq10k --split test --distortions blur,jpeg,noise,brightness
Prints one JSON object: the mean SRCC over (image, type) groups, per type, and n. An image's score
at a level is the mean over --crops crops of it (default 25, test_swin.py's --test_patches), all
degraded with the same per-image choices.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from common.checkpoint import crop_size_of, load_checkpoint
from common.cli import positive_int
from common.vocabulary import DEFAULT_TEST_PATCHES
from data.degradations import parse_distortions
from data.images import ImageCache
from data.registry import canonical_key, read_rows, resize_policy
from engine.pretrain_monitor import ZeroShotValidation
from models.pretrain_model import pretrain_model_from_checkpoint


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of the level-SRCC measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", required=True, help="Stage-1 encoder checkpoint")
    parser.add_argument("--data_root", default="./datasets")
    parser.add_argument("--dataset", default="koniq10k")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--distortions", default="blur,jpeg,noise,brightness")
    parser.add_argument("--num_levels", type=int, default=5)
    parser.add_argument("--crop_size", type=int, default=None,
                        help="default: the checkpoint's training crop size")
    parser.add_argument("--max_images", type=int, default=32)
    parser.add_argument("--crops", type=positive_int, default=DEFAULT_TEST_PATCHES,
                        help="crops per image; an image's score is their mean, as test_swin.py "
                             "scores images (1: one crop, the label-free validation's measure)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def level_srcc(args: argparse.Namespace) -> dict:
    """Mean within-image level SRCC of the checkpoint on the chosen split and types."""
    ckpt = load_checkpoint(args.model_path, expected_kind="encoder")
    model = pretrain_model_from_checkpoint(ckpt)
    crop = args.crop_size or crop_size_of(ckpt["config"])
    key = canonical_key(args.dataset)
    rows = read_rows(key, args.data_root, split="official")
    paths = sorted({row.path for row in rows if row.split == args.split})[: args.max_images]
    validation = ZeroShotValidation(paths, resize_policy(key), ImageCache(None),
                                    parse_distortions(args.distortions), crop, args.num_levels,
                                    args.seed, torch.device("cpu"), crops_per_image=args.crops)
    result = validation.evaluate(model)
    return {"srcc": round(result["val_srcc"], 4), "by_type": result["val_by_type"],
            "n_images": validation.n_images, "n_groups": len(validation), "crops": args.crops,
            "model_path": str(args.model_path)}


if __name__ == "__main__":
    print(json.dumps(level_srcc(get_args_parser().parse_args(sys.argv[1:]))))
