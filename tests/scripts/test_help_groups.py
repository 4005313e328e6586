"""The three stage scripts show their flag groups in one order: the script's own flags, then data,
model, loss, optimisation, monitoring and run groups, the shared `common` group last."""

from __future__ import annotations

import importlib
import re

import pytest

ORDER = ("options", "data", "model", "loss", "optimisation",
         "collapse monitor and label-free validation", "run", "common")


@pytest.mark.parametrize("script", ["train_swin", "pretrain_qualiclip", "test_swin"])
def test_flag_groups_come_in_one_order(script: str) -> None:
    text = importlib.import_module(script).get_args_parser().format_help()
    titles = [line[:-1] for line in text.splitlines() if re.fullmatch(r"[a-z][a-z -]*:", line)]
    assert set(titles) <= set(ORDER), f"{script}: group not in the shared order: {titles}"
    assert titles == [t for t in ORDER if t in titles], f"{script} --help groups: {titles}"
    assert titles[0] == "options" and titles[-1] == "common"
