"""`python -m models`: parameter counts and output shapes of Swin-HyperIQA for a 224x224 input."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from common.cli import build_parser
from common.runtime import count_parameters
from common.vocabulary import DEFAULT_CROP_SIZE, MODEL_SIZE_ALIASES
from models.swin_encoder import MODEL_SIZES
from models.swin_hyperiqa import build_swin_hyperiqa


def get_args_parser() -> argparse.ArgumentParser:
    """Flags of `python -m models`."""
    parser = build_parser(__doc__)
    parser.add_argument("--model_size", default="base", choices=[*MODEL_SIZES, *MODEL_SIZE_ALIASES])
    parser.add_argument("--imagenet_weights", default="none", help="auto, none or a PATH")
    parser.add_argument("--use_multiscale", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--use_attention", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--crop_size", type=int, default=DEFAULT_CROP_SIZE)
    return parser


def describe(args: argparse.Namespace) -> dict:
    """Parameter counts and shapes of one forward pass on a single random image."""
    torch.manual_seed(0)
    model = build_swin_hyperiqa(
        args.model_size,
        use_multiscale=args.use_multiscale,
        use_attention=args.use_attention,
        imagenet_weights=args.imagenet_weights,
        crop_size=args.crop_size,
    ).eval()
    x = torch.rand(1, 3, args.crop_size, args.crop_size)
    with torch.inference_mode():
        stages = model.encoder(x)
        details = model.head.forward_details(stages)
    encoder_params = count_parameters(model.encoder)
    head_params = count_parameters(model.head)
    attention = details["attention"]
    return {
        "model_size": model.config["model_size"],
        "arch": model.encoder.arch,
        "config": model.config,
        "encoder_params": encoder_params,
        "head_params": head_params,
        "total_params": encoder_params + head_params,
        "input_shape": list(x.shape),
        "stage_shapes": [list(s.shape) for s in stages],
        "target_in_shape": list(details["target_in"].shape),
        "target_layer_shapes": [list(w.shape[1:]) for w, _ in details["target_params"]],
        "attention_shape": list(attention.shape) if attention is not None else None,
        "output_shape": list(details["score"].shape),
    }


def main(argv: list[str] | None = None) -> int:
    """Print the model description as JSON."""
    args = get_args_parser().parse_args(argv)
    json.dump(describe(args), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
