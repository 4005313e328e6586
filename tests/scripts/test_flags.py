"""Flags of the stage scripts: no abbreviations, defaults in the help, --help without torch."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pretrain_qualiclip
import test_swin
import train_swin

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {"train_swin": train_swin, "pretrain_qualiclip": pretrain_qualiclip,
           "test_swin": test_swin}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_abbreviated_flags_are_refused(name: str) -> None:
    parser = SCRIPTS[name].get_args_parser()
    with pytest.raises(SystemExit):  # --epoch / --batch would silently mean --epochs / --batch_size
        parser.parse_args(["--model_path", "m.pkl", "--batch", "1"])
    assert not parser.allow_abbrev


def option_blocks(help_text: str) -> dict[str, str]:
    """Help text of each option, keyed by its first spelling."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        match = re.match(r"^  (-[-\w]+)", line)
        if match:
            current = match.group(1)
            blocks[current] = line
        elif current and line.startswith("      "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_flag_shows_its_default(name: str) -> None:
    blocks = option_blocks(SCRIPTS[name].get_args_parser().format_help())
    assert "--data_root" in blocks and "--seed" in blocks
    missing = [flag for flag, text in blocks.items()
               if flag not in ("-h", "--model_path") and "default" not in text]
    assert not missing, missing


def test_switches_read_as_one_on_off_flag() -> None:
    parser = train_swin.get_args_parser()
    blocks = option_blocks(parser.format_help())
    text = blocks["--use_multiscale"]
    assert "--no_use_multiscale" in text and "(default: on)" in text
    assert "(default: True)" not in parser.format_help()
    for argv, expected in (([], True), (["--no_use_multiscale"], False),
                           (["--no-use_multiscale"], False), (["--use_multiscale"], True)):
        assert parser.parse_args(argv).use_multiscale is expected
    assert isinstance(parser.parse_args([]), argparse.Namespace)


def test_help_answers_without_importing_torch() -> None:
    code = ("import sys, contextlib, io\n"
            "for name in ('train_swin', 'pretrain_qualiclip', 'test_swin'):\n"
            "    module = __import__(name)\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        try:\n"
            "            module.main(['--help'])\n"
            "        except SystemExit:\n"
            "            pass\n"
            "    assert 'usage:' in out.getvalue(), name\n"
            "print(sorted(m for m in ('torch', 'timm', 'numpy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
