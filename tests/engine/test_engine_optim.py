"""Parameter groups (differential rates, no decay where it hurts) and per-step LR schedules."""

from __future__ import annotations

import itertools
import math

import pytest
import timm
import torch
from torch import nn

from engine.optim import build_optimizer, build_scheduler, param_groups, reset_moments


def _model() -> nn.Module:
    model = nn.Module()
    model.encoder = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        embed_dim=8,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 1, 1),
        num_classes=0,
    )
    model.encoder.absolute_pos_embed = nn.Parameter(torch.zeros(1, 56, 56, 8))
    model.head = nn.Sequential(nn.Linear(64, 16), nn.LayerNorm(16), nn.Linear(16, 1))
    model.frozen = nn.Linear(2, 2).requires_grad_(False)
    return model


def test_every_trainable_parameter_is_in_exactly_one_group() -> None:
    model = _model()
    groups = param_groups({"encoder": (model.encoder, 1e-6), "hyper": (model.head, 5e-5)}, 0.05)
    assert [g["name"] for g in groups] == ["encoder", "encoder_no_decay", "hyper", "hyper_no_decay"]
    in_groups = [id(p) for g in groups for p in g["params"]]
    assert len(in_groups) == len(set(in_groups))
    trainable = {id(p) for n, p in model.named_parameters() if p.requires_grad}
    assert set(in_groups) == trainable
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs == {"encoder": 1e-6, "encoder_no_decay": 1e-6, "hyper": 5e-5, "hyper_no_decay": 5e-5}
    by_id = {id(p): g for g in groups for p in g["params"]}
    for name, param in model.encoder.named_parameters():
        no_decay = (
            param.ndim <= 1
            or "relative_position_bias_table" in name
            or "absolute_pos_embed" in name
        )
        assert by_id[id(param)]["weight_decay"] == (0.0 if no_decay else 0.05), name
    tables = [n for n, _ in model.encoder.named_parameters() if "relative_position_bias" in n]
    assert tables, "the Swin encoder should have relative position tables"


def test_overlapping_modules_and_nothing_trainable_are_errors() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"also in 'all'"):
        param_groups({"all": (model, 1e-4), "head": (model.head, 1e-3)}, 0.0)
    with pytest.raises(ValueError, match=r"no trainable parameters"):
        param_groups({"frozen": (model.frozen, 1e-4)}, 0.0)


def _lrs(kind: str, epochs: int = 10, spe: int = 10, warmup: float = 0.0, **kw) -> list[float]:
    opt = build_optimizer(
        [{"name": "p", "params": [nn.Parameter(torch.zeros(1))], "lr": 1.0}], "cpu"
    )
    sched = build_scheduler(opt, kind, epochs, spe, warmup_epochs=warmup, **kw)
    lrs = []
    for _ in range(epochs * spe):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_with_fractional_warmup() -> None:
    lrs = _lrs("cosine", warmup=1.5)  # 15 warmup steps
    assert lrs[0] < 0.1
    assert all(a < b for a, b in itertools.pairwise(lrs[:16]))
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 15
    assert all(a >= b for a, b in itertools.pairwise(lrs[15:]))
    assert lrs[-1] < 0.01
    assert lrs[15 + 42] == pytest.approx(0.5 * (1 + math.cos(math.pi * 42 / 85)))


def test_step_and_constant_schedules() -> None:
    lrs = _lrs("step", epochs=6, spe=4, step_size=2, gamma=0.5)
    assert lrs[:8] == [1.0] * 8 and lrs[8:16] == [0.5] * 8 and lrs[16:] == [0.25] * 8
    assert set(_lrs("none", epochs=2, spe=3)) == {1.0}
    with pytest.raises(ValueError, match=r"--scheduler must be one of"):
        _lrs("linear")
    with pytest.raises(ValueError, match=r"steps_per_epoch"):
        _lrs("cosine", spe=0)


def test_scheduler_state_round_trip_continues_exactly() -> None:
    def make() -> tuple:
        param = nn.Parameter(torch.ones(3))
        opt = build_optimizer(param_groups({"m": (nn.Linear(3, 3), 1e-3)}, 0.1), "cpu")
        return opt, build_scheduler(opt, "cosine", 4, 5, warmup_epochs=0.5), param

    opt, sched, _ = make()
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    expected = []
    for _ in range(8):
        opt.step()
        sched.step()
        expected.append([g["lr"] for g in opt.param_groups])
    opt2, sched2, _ = make()
    sched2.load_state_dict(state)
    got = []
    for _ in range(8):
        opt2.step()
        sched2.step()
        got.append([g["lr"] for g in opt2.param_groups])
    assert got == expected


def test_hyperiqa_schedule_and_moment_reset() -> None:
    encoder, hyper = nn.Linear(2, 2), nn.Linear(2, 1)
    groups = param_groups({"encoder": (encoder, 2e-5), "hyper": (hyper, 2e-4)}, 5e-4)
    optimizer = build_optimizer(groups, "cpu", kind="adam")
    assert type(optimizer) is torch.optim.Adam
    scheduler = build_scheduler(optimizer, "hyperiqa", 16, 3, hyper_ratio=10.0)
    per_epoch = {"encoder": [], "hyper": []}
    for _ in range(16):
        for group in optimizer.param_groups:
            if group["name"] in per_epoch:
                per_epoch[group["name"]].append(group["lr"])
        for _ in range(3):
            optimizer.step()
            scheduler.step()
    # HyperIQA: hyper 10x lr for 7 epochs, then lr, lr/10, lr/100 for 3 epochs each (the ratio
    # drops to 1 after epoch 10); the backbone rate never changes
    expected = [2e-4] * 7 + [2e-5] * 3 + [2e-6] * 3 + [2e-7] * 3
    assert per_epoch["hyper"] == pytest.approx(expected)
    assert per_epoch["encoder"] == pytest.approx([2e-5] * 16)
    hyper.weight.grad = torch.ones_like(hyper.weight)
    optimizer.step()
    assert optimizer.state
    reset_moments(optimizer)
    assert not optimizer.state
    with pytest.raises(ValueError, match="--optimizer must be one of"):
        build_optimizer(groups, "cpu", kind="sgd")


def test_decay_all_puts_every_parameter_under_weight_decay() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    exempting = param_groups({"m": (model, 1e-3)}, 5e-4)
    assert [g["name"] for g in exempting] == ["m", "m_no_decay"]
    everything = param_groups({"m": (model, 1e-3)}, 5e-4, decay_all=True)
    assert [(g["name"], g["weight_decay"], len(g["params"])) for g in everything] == [
        ("m", 5e-4, 4)]
