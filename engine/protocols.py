"""Fine-tuning protocol presets (--protocol): each sets the whole group of training flags.

`hyperiqa` is SSL92/hyperIQA's training recipe and `smart` the final settings of the public
Swin-HyperIQA (SMART-IQA), both applied to this Swin-HyperIQA; `plan` is the experiment plan with
the references' crops per image, LDA rate and attention placement. docs/PROTOCOLS.md lists each
value against the reference code and every remaining deviation.
"""

from __future__ import annotations

import argparse

from common.errors import InvalidValueError
from common.vocabulary import MODEL_SIZE_ALIASES

PROTOCOL_CHOICES = ("plan", "hyperiqa", "smart")
DEFAULT_PROTOCOL = "plan"

# One row per flag: its value in plan, hyperiqa, smart. A flag given on the command line
# overrides its preset value; lr_encoder_pretrained None means "the encoder rate is --lr".
_TABLE = (
    ("resize", "aspect", "squash", "squash"),
    ("train_patches", 25, 25, 20),
    ("test_patches", 25, 25, 20),
    ("val_patches", 10, 25, 20),
    ("batch_size", 96, 96, 32),
    ("epochs", 50, 16, 10),
    ("optimizer", "adamw", "adam", "adamw"),
    ("lr", 5e-6, 2e-5, 5e-7),
    ("lr_ratio", 10.0, 10.0, 10.0),
    ("lr_encoder_pretrained", 1e-6, None, None),
    ("weight_decay", 2e-4, 5e-4, 2e-4),
    ("decay_all", False, True, True),
    ("scheduler", "cosine", "hyperiqa", "cosine"),
    ("warmup_epochs", 1.0, 0.0, 0.0),
    ("patience", 10, 0, 5),
    ("select", "val", "val", "val"),
    ("drop_path", 0.2, 0.0, 0.3),
    ("dropout", 0.3, 0.0, 0.3),
    ("use_attention", True, False, True),
    ("attention_scope", "hyper", "hyper", "hyper"),
    ("lda_group", "encoder", "encoder", "encoder"),
    ("head_pooling", "mean", "mean", "mean"),
    ("score_norm", "mean", "mean", "mean"),
    ("generator_gain", 1.0, 1.0, 1.0),
)
PROTOCOLS: dict[str, dict[str, object]] = {
    name: {row[0]: row[1 + i] for row in _TABLE} for i, name in enumerate(PROTOCOL_CHOICES)
}

# The randomly initialised CPU sizes learn from labels only with these (measured on KonIQ-layout
# demo and mixture sets, docs/PROTOCOLS.md, "Stage 2 at the CPU sizes"); they replace the
# preset's values, and a flag given on the command line still wins. ImageNet-initialised sizes
# keep the preset.
SIZE_DEFAULTS: dict[str, dict[str, object]] = {
    "mini": {"head_pooling": "mean_std", "generator_gain": 8.0, "score_norm": "standardize",
             "batch_size": 32, "lr": 3e-4, "lr_encoder_pretrained": None, "warmup_epochs": 0.5,
             "drop_path": 0.0, "dropout": 0.0, "select": "last"},
}
SIZE_DEFAULTS["micro"] = SIZE_DEFAULTS["mini"]


def preset_help(flag: str) -> str:
    """Help-text suffix naming the flag's value in each preset and for the CPU sizes."""
    values = ", ".join(f"{name} {PROTOCOLS[name][flag]}" for name in PROTOCOL_CHOICES)
    sized = [f"{size} {table[flag]}" for size, table in SIZE_DEFAULTS.items() if flag in table]
    return f"(default from --protocol: {values}" + (
        f"; model size: {', '.join(sized)})" if sized else ")")


def apply_protocol(args: argparse.Namespace) -> dict:
    """Fill every preset flag left unset (None) from args.protocol; return the record of it.

    The record, {"protocol", "preset": the preset's values, "overrides": {flag: {"preset",
    "given"}}}, names each flag given on the command line with a value the preset does not have.
    `lr_encoder_pretrained` None in a preset means "the encoder rate is --lr".
    """
    if args.protocol not in PROTOCOLS:
        raise InvalidValueError(
            f"--protocol must be one of {PROTOCOL_CHOICES}, got {args.protocol!r}")
    preset = PROTOCOLS[args.protocol]
    sized = SIZE_DEFAULTS.get(MODEL_SIZE_ALIASES.get(args.model_size, args.model_size), {})
    overrides, size_defaults = {}, {}
    for flag, value in preset.items():
        given = getattr(args, flag)
        if given is None:
            setattr(args, flag, sized.get(flag, value))
        if flag in sized and getattr(args, flag) == sized[flag]:
            size_defaults[flag] = sized[flag]  # also when resolved before (each --repeats run)
        elif given is not None and given != value:
            overrides[flag] = {"preset": value, "given": given}
    return {"protocol": args.protocol, "preset": dict(preset), "size_defaults": size_defaults,
            "overrides": overrides}


def describe(record: dict) -> str:
    """One log line: the protocol, the model size's defaults and each override (preset value)."""
    sized = ", ".join(f"--{flag} {'= --lr' if value is None else value}"
                      for flag, value in record.get("size_defaults", {}).items())
    changes = ", ".join(f"--{flag} {v['given']} (preset {v['preset']})"
                        for flag, v in record["overrides"].items())
    return (f"protocol {record['protocol']}" + (f"; model-size defaults: {sized}" if sized else "")
            + (f"; overrides: {changes}" if changes else "; no overrides"))


def learning_rates(args: argparse.Namespace) -> tuple[float, float]:
    """(encoder lr, hyper network lr) from --lr, --lr_ratio/--lr_hyper, --lr_encoder_pretrained."""
    encoder_lr = args.lr
    if args.pretrained_encoder and args.lr_encoder_pretrained is not None:
        encoder_lr = args.lr_encoder_pretrained
    hyper_lr = args.lr_hyper if args.lr_hyper is not None else args.lr * args.lr_ratio
    return encoder_lr, hyper_lr
