"""--protocol presets: resolved flags per preset, explicit overrides, LDA parameter group."""

from __future__ import annotations

import pytest
import torch

from engine.finetune import finetune_param_groups
from engine.protocols import apply_protocol, describe
from models import build_swin_hyperiqa
from train_swin import get_args_parser

# The protocol table of docs/PROTOCOLS.md, written out (values from the reference code).
EXPECTED = {
    "plan": dict(resize="aspect", train_patches=25, test_patches=25, val_patches=10,
                 batch_size=96, epochs=50, optimizer="adamw", lr=5e-6, lr_ratio=10.0,
                 lr_encoder_pretrained=1e-6, weight_decay=2e-4, decay_all=False, scheduler="cosine",
                 warmup_epochs=1.0, patience=10, drop_path=0.2, dropout=0.3,
                 use_attention=True, attention_scope="hyper", lda_group="encoder"),
    # SSL92/hyperIQA train_test_IQA.py defaults, HyerIQASolver.py (Adam, step schedule)
    "hyperiqa": dict(resize="squash", train_patches=25, test_patches=25, val_patches=25,
                     batch_size=96, epochs=16, optimizer="adam", lr=2e-5, lr_ratio=10.0,
                     lr_encoder_pretrained=None, weight_decay=5e-4, decay_all=True,
                     scheduler="hyperiqa",
                     warmup_epochs=0.0, patience=0, drop_path=0.0, dropout=0.0,
                     use_attention=False, attention_scope="hyper", lda_group="encoder"),
    # Perceptual-IQA-CS3324 REPRODUCE_BEST_MODEL.sh with smart_solver.py (AdamW, cosine)
    "smart": dict(resize="squash", train_patches=20, test_patches=20, val_patches=20,
                  batch_size=32, epochs=10, optimizer="adamw", lr=5e-7, lr_ratio=10.0,
                  lr_encoder_pretrained=None, weight_decay=2e-4, decay_all=True,
                  scheduler="cosine",
                  warmup_epochs=0.0, patience=5, drop_path=0.3, dropout=0.3,
                  use_attention=True, attention_scope="hyper", lda_group="encoder"),
}


def resolved(*argv: str):
    args = get_args_parser().parse_args(list(argv))
    return args, apply_protocol(args)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_preset_resolves_to_its_table(name: str) -> None:
    args, record = resolved("--protocol", name)
    assert {flag: getattr(args, flag) for flag in EXPECTED[name]} == EXPECTED[name]
    assert record["protocol"] == name and record["overrides"] == {}
    assert describe(record) == f"protocol {name}; no overrides"


def test_default_protocol_is_plan() -> None:
    args, record = resolved()
    assert record["protocol"] == "plan" and args.train_patches == 25
    assert args.use_multiscale and args.crop_size == 224 and args.lr_hyper is None


def test_explicit_flags_override_and_are_recorded() -> None:
    args, record = resolved("--protocol", "smart", "--epochs", "3", "--no_use_attention",
                            "--attention_scope", "hyper_lda", "--lr", "5e-7", "--resize", "aspect")
    assert (args.epochs, args.use_attention, args.attention_scope, args.resize) == (
        3, False, "hyper_lda", "aspect")
    assert args.batch_size == 32  # not given: the preset's
    assert record["overrides"] == {
        "epochs": {"preset": 10, "given": 3},
        "use_attention": {"preset": True, "given": False},
        "attention_scope": {"preset": "hyper", "given": "hyper_lda"},
        "resize": {"preset": "squash", "given": "aspect"},
    }  # --lr 5e-7 is the preset's own value: no override
    assert "--epochs 3 (preset 10)" in describe(record)
    again = apply_protocol(args)  # resolving twice (each --repeats run) records the same
    assert again == record


@pytest.mark.parametrize("lda_group", ["encoder", "hyper"])
def test_lda_layers_join_the_chosen_parameter_group(lda_group: str) -> None:
    torch.manual_seed(0)
    model = build_swin_hyperiqa("micro")
    groups = finetune_param_groups(model, 1e-6, 1e-5, 2e-4, lda_group)
    group_of = {id(p): g["name"].removesuffix("_no_decay") for g in groups for p in g["params"]}
    assert len(group_of) == sum(1 for p in model.parameters() if p.requires_grad)
    lda = [*model.head.lda.parameters(), *model.head.last_fc.parameters()]
    assert {group_of[id(p)] for p in lda} == {lda_group}
    assert {group_of[id(p)] for p in model.encoder.parameters()} == {"encoder"}
    hyper = [*model.head.hyper_in.parameters(), *model.head.attention.parameters(),
             *model.head.weight_convs.parameters(), *model.head.last_bias_fc.parameters()]
    assert {group_of[id(p)] for p in hyper} == {"hyper"}
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates["encoder"] == 1e-6 and rates["hyper"] == 1e-5
