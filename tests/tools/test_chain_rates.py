"""tools.chain_rates: the encoder rates of a fine-tuning command, as train_swin.py resolves them."""

from __future__ import annotations

import argparse

import pytest

from engine.protocols import PROTOCOLS, SIZE_DEFAULTS, apply_protocol, learning_rates
from tools.chain_rates import encoder_rates, main
from train_swin import get_args_parser


@pytest.mark.parametrize("flags", [
    [], ["--lr", "2e-5"], ["--protocol", "smart"], ["--model_size", "mini"],
    ["--lr_encoder_pretrained", "1e-5", "--lr", "3e-6"], ["--lr", "1e-5", "--lr", "4e-6"],
    ["--protocol", "hyperiqa", "--lr_encoder_pretrained", "2e-6"]])
def test_rates_equal_the_scripts_own(flags: list[str]) -> None:
    rates = []
    for encoder in ([], ["--pretrained_encoder", "e.pkl"]):
        args: argparse.Namespace = get_args_parser().parse_args(
            ["--dataset", "koniq10k", *flags, *encoder])
        apply_protocol(args)
        rates.append(learning_rates(args)[0])
    command = [".venv/bin/python", "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "train_swin.py", "--model_name", "x", *flags, "--epochs", "3"]
    assert encoder_rates(command) == tuple(rates)


def test_the_plan_preset_fine_tunes_the_stage1_encoder_slower(capsys) -> None:
    assert main(["--", "python", "train_swin.py", "--model_size", "base"]) == 0
    baseline, pretrained = map(float, capsys.readouterr().out.split())
    assert baseline == PROTOCOLS["plan"]["lr"] and pretrained == PROTOCOLS["plan"][
        "lr_encoder_pretrained"] and pretrained < baseline
    assert SIZE_DEFAULTS["mini"]["lr_encoder_pretrained"] is None  # the CPU sizes: one rate
    assert main(["--", "python", "test_swin.py"]) == 2
    assert "not a train_swin.py command" in capsys.readouterr().err
