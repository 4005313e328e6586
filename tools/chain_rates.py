"""The encoder learning rates of a fine-tuning command of the chain, with and without a Stage-1
encoder, resolved as train_swin.py resolves them.

    python -m tools.chain_rates -- [LAUNCHER ...] train_swin.py FLAG ...

prints two numbers: the rate the encoder trains at without --pretrained_encoder (the baseline's)
and with one (the pretrained runs'). Each flag counts as given last on the command line, else the
model size's default, else the --protocol preset (engine.protocols). The chain passes the first
number to its matched-rate arm as --lr_encoder_pretrained, and leaves the arm out when the two
are equal (the pretrained runs then train at the baseline's rate already).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from common.cli import build_parser
from engine.protocols import DEFAULT_PROTOCOL, PROTOCOLS, apply_protocol, learning_rates

RATE_FLAGS = ("lr", "lr_ratio", "lr_encoder_pretrained", "lr_hyper")


def encoder_rates(words: Sequence[str]) -> tuple[float, float]:
    """(encoder rate without, with --pretrained_encoder) of a train_swin.py command line."""
    words = list(words)
    script = next((i for i, w in enumerate(words) if w.endswith("train_swin.py")), None)
    if script is None:
        raise ValueError(f"not a train_swin.py command: {' '.join(words)}")
    parser = build_parser("train_swin.py's learning-rate flags")
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL)
    parser.add_argument("--model_size", default="base")
    for flag in RATE_FLAGS:
        parser.add_argument(f"--{flag}", type=float, default=None)
    args, _ = parser.parse_known_args(words[script + 1:])
    for flag in PROTOCOLS[DEFAULT_PROTOCOL]:  # every preset flag the rates do not need: unset
        if not hasattr(args, flag):
            setattr(args, flag, None)
    apply_protocol(args)
    rates = []
    for encoder in (None, "stage-1 encoder"):
        args.pretrained_encoder = encoder
        rates.append(learning_rates(args)[0])
    return rates[0], rates[1]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print both encoder rates of the command after `--`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        baseline, pretrained = encoder_rates(argv[argv.index("--") + 1:])
    except (ValueError, argparse.ArgumentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{baseline!r} {pretrained!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
