"""Resumable train state, clean stops on signals, and the NaN/Inf guard (raise and skip)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from common.checkpoint import atomic_save, load_checkpoint
from common.errors import CheckpointError
from engine.optim import build_optimizer, build_scheduler, param_groups
from engine.run_kind import FINETUNE, resume_state
from engine.train_state import (
    GracefulStop,
    NonFiniteGuard,
    NonFiniteLossError,
    load_train_state,
    save_train_state,
)


def _setup(seed: int = 0) -> tuple:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))
    opt = build_optimizer(param_groups({"net": (model, 1e-2)}, 1e-4), "cpu")
    sched = build_scheduler(opt, "cosine", epochs=3, steps_per_epoch=5, warmup_epochs=0.4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return model, opt, sched, scaler


def _train(model: nn.Module, opt: torch.optim.Optimizer, sched, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(6, 4)  # drawn from the global RNG, which the train state restores
        loss = (model(x).squeeze(1) - x.sum(1)).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_resume_continues_exactly(tmp_path: Path) -> None:
    model, opt, sched, scaler = _setup()
    _train(model, opt, sched, 5)
    path = tmp_path / "last.pkl"
    extra = {"best_srcc": 0.5, "patience_left": 3}
    save_train_state(
        path,
        model,
        opt,
        sched,
        scaler,
        epoch=0,
        extra=extra,
        config={"lr": 1e-2},
        model_size="micro",
    )
    _train(model, opt, sched, 5)
    expected = [p.detach().clone() for p in model.parameters()]

    model2, opt2, sched2, scaler2 = _setup(seed=123)
    torch.manual_seed(999)  # a different RNG state that load_train_state must undo
    state = load_train_state(path, model2, opt2, sched2, scaler2)
    assert state == {"epoch": 0, "extra": extra, "config": {"lr": 1e-2}, "position": None}
    _train(model2, opt2, sched2, 5)
    for a, b in zip(expected, model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert load_checkpoint(path, expected_kind="train_state")["model_size"] == "micro"


def test_resume_into_another_model_says_what_to_do(tmp_path: Path) -> None:
    model, opt, sched, scaler = _setup()
    path = tmp_path / "last.pkl"
    save_train_state(path, model, opt, sched, scaler, 1, {}, {"model_size": "micro"}, "micro")
    other = nn.Linear(4, 1)
    other_opt = build_optimizer(param_groups({"net": (other, 1e-2)}, 0.0), "cpu")
    with pytest.raises(CheckpointError, match=r"(?s)model weights do not fit.*model_size 'micro'"):
        load_train_state(path, other, other_opt, None, None)
    with pytest.raises(CheckpointError, match=r"extra"):
        save_train_state(path, model, opt, sched, scaler, 1, {"best": torch.tensor(1.0)}, {}, "x")
    atomic_save({"format": "qualiclip-iqa/1", "kind": "full"}, tmp_path / "best.pkl")
    with pytest.raises(CheckpointError, match=r"'full' checkpoint.*'train_state'"):
        load_train_state(tmp_path / "best.pkl", model, opt, sched, scaler)


def test_resume_state(tmp_path: Path) -> None:
    assert resume_state(None, tmp_path, FINETUNE) is None
    assert resume_state("auto", tmp_path, FINETUNE) is None  # nothing to resume: fresh start
    (tmp_path / "last.pkl").write_bytes(b"x")
    assert resume_state("auto", tmp_path, FINETUNE) == tmp_path / "last.pkl"
    assert resume_state(str(tmp_path), Path("unused"), FINETUNE) == tmp_path / "last.pkl"
    with pytest.raises(CheckpointError, match=r"no train state found"):
        resume_state(str(tmp_path / "missing.pkl"), tmp_path, FINETUNE)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_sets_flag_then_second_signal_interrupts(signum: int) -> None:
    before = signal.getsignal(signum)
    with GracefulStop() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signum)
        assert stop.requested and stop.signal_name == signal.Signals(signum).name
        with pytest.raises(KeyboardInterrupt, match=r"second"):
            os.kill(os.getpid(), signum)
    assert signal.getsignal(signum) is before
    assert stop.resume_message("run/last.pkl", "in epoch 4 after step 18 of 29",
                               ".venv/bin/python train_swin.py --epochs 9") == (
        f"stopped by {signal.Signals(signum).name} in epoch 4 after step 18 of 29; train state "
        "saved to run/last.pkl. Resume with: .venv/bin/python train_swin.py --epochs 9 "
        "--resume run/last.pkl")


def _batches(model: nn.Module, bad: set[int], steps: int):
    for step in range(1, steps + 1):
        loss = model(torch.ones(2, 4)).sum()
        if step in bad:
            loss = loss * float("nan")
        yield step, loss, [f"img{step}_a.jpg", f"img{step}_b.jpg"]


def test_guard_raises_with_step_and_names_and_syncs_only_every_n(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = []
    original = NonFiniteGuard._check
    monkeypatch.setattr(
        NonFiniteGuard,
        "_check",
        lambda self, keep: (checks.append(self.step), original(self, keep))[1],
    )
    model = nn.Linear(4, 1)
    guard = NonFiniteGuard(check_every=4, last_checkpoint="run/last.pkl")
    with pytest.raises(NonFiniteLossError) as info:
        for _, loss, names in _batches(model, bad={6}, steps=12):
            guard.update(loss, names)
    assert info.value.step == 6 and info.value.names == ["img6_a.jpg", "img6_b.jpg"]
    assert "non-finite loss at step 6" in str(info.value) and "run/last.pkl" in str(info.value)
    assert checks == [4, 8]  # host syncs only when the window is full


def test_guard_detects_non_finite_gradients() -> None:
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = NonFiniteGuard(check_every=10)
    for step, loss, names in _batches(model, bad=set(), steps=3):
        guard.update(loss, names)
        loss.backward()
        if step == 2:
            model.weight.grad[0, 0] = float("inf")
        guard.sanitize_gradients(opt)
        opt.zero_grad()
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient at step 2"):
        guard.finish()
    fp16 = NonFiniteGuard(check_every=10)  # fp16: the GradScaler owns overflowing gradients
    loss = model(torch.ones(1, 4)).sum()
    fp16.update(loss, ["x.jpg"])
    loss.backward()
    model.weight.grad.fill_(float("inf"))
    fp16.sanitize_gradients(opt, torch.amp.GradScaler("cpu", enabled=True))
    assert fp16.finish() == 0


def test_guard_skip_zeroes_the_update_and_counts() -> None:
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = NonFiniteGuard(check_every=3, skip=True)
    losses = []
    for step, loss, names in _batches(model, bad={2, 5}, steps=7):
        before = [p.detach().clone() for p in model.parameters()]
        loss = guard.update(loss, names)
        losses.append(loss.detach())
        loss.backward()
        guard.sanitize_gradients(opt)
        opt.step()
        opt.zero_grad()
        changed = any(
            not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)
        )
        assert changed == (step not in {2, 5})
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.stack(losses).isfinite().all() and losses[1] == 0
    assert guard.finish() == 2
    assert guard.skipped_names == ["img2_a.jpg", "img2_b.jpg", "img5_a.jpg", "img5_b.jpg"]
    assert guard.finish() == 0  # counts are per epoch


def test_guard_skip_gives_up_when_the_run_diverged() -> None:
    model = nn.Linear(4, 1)
    guard = NonFiniteGuard(check_every=2, skip=True, diverged_after=5)
    with pytest.raises(NonFiniteLossError, match=r"5 consecutive batches.*diverged"):
        for _, loss, names in _batches(model, bad=set(range(1, 20)), steps=19):
            guard.update(loss, names)
