"""Device/precision resolution, autocast on CPU, environment info, and the shared flags."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common import runtime
from common.cli import add_common_args, command_line, run_script, save_args
from common.errors import DeviceError
from common.runtime import (
    autocast,
    compile_or_eager,
    count_parameters,
    environment_info,
    make_grad_scaler,
    resolve_amp,
    resolve_device,
    seed_everything,
)
from common.vocabulary import TRACEBACK_ENV
from data.rows import DatasetError


def test_resolve_device_and_amp_on_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_amp("auto", "cpu") == "off"
    assert resolve_amp("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match=r"--amp must be one of"):
        resolve_amp("fp8", "cpu")
    with pytest.raises(DeviceError, match=r"unknown --device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"--device cpu"):
            resolve_device("cuda")


@pytest.mark.parametrize(
    ("amp", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16), ("off", torch.float32)]
)
def test_autocast_on_cpu(amp: str, dtype: torch.dtype) -> None:
    layer = torch.nn.Linear(4, 3)
    with autocast("cpu", amp):
        out = layer(torch.randn(2, 4))
    assert out.dtype == dtype
    assert make_grad_scaler("cpu", amp).is_enabled() == (amp == "fp16")


def test_cpu_runs_flush_subnormal_floats_to_zero() -> None:
    tiny = torch.tensor([1e-20])
    try:
        torch.set_flush_denormal(False)
        assert (tiny * tiny).item() > 0  # 1e-40 is a subnormal float32
        runtime.configure_backends("cpu")
        if not torch.set_flush_denormal(True):
            pytest.skip("this CPU cannot flush subnormal floats")
        assert (tiny * tiny).item() == 0
    finally:
        torch.set_flush_denormal(False)


def test_seed_and_count_parameters() -> None:
    seed_everything(5)
    a = torch.rand(3)
    seed_everything(5)
    assert torch.equal(a, torch.rand(3))
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    model[0].weight.requires_grad_(False)
    assert count_parameters(model) == 4 * 3 + 3 + 3 + 1
    assert count_parameters(model, trainable_only=True) == 3 + 3 + 1


def test_environment_info_has_the_contract_keys_and_git_commit() -> None:
    info = environment_info()
    keys = {
        "python",
        "torch",
        "cuda",
        "cudnn",
        "gpu_name",
        "gpu_count",
        "cpu",
        "cpu_count",
        "ram_gb",
        "timm",
        "open_clip",
        "git_commit",
        "hostname",
    }
    assert keys <= set(info)
    json.dumps(info)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=runtime.REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    expected = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert info["git_commit"] == expected


def test_environment_info_outside_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(runtime, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert environment_info()["git_commit"] == "unknown"
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    assert environment_info()["git_commit"] == "unknown"


def test_common_args_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IQA_DATA_ROOT", "/data/iqa")
    monkeypatch.delenv("IQA_CACHE_DIR", raising=False)
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    args = parser.parse_args([])
    assert args.data_root == "/data/iqa" and args.cache_dir == "./.cache/images"
    assert (args.model_size, args.device, args.seed, args.num_workers, args.amp) == (
        "base",
        "auto",
        42,
        4,
        "auto",
    )
    assert (args.output_dir, args.log_dir) == ("checkpoints", "logs")
    assert args.resume is None and args.imagenet_weights == "auto"
    assert not args.compile and args.accum_steps == 1 and not args.skip_nonfinite
    assert not args.grad_checkpointing
    assert parser.parse_args(["--resume"]).resume == "auto"
    assert parser.parse_args(["--resume", "x/last.pkl"]).resume == "x/last.pkl"
    with pytest.raises(SystemExit):
        parser.parse_args(["--accum_steps", "0"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--model_size", "huge"])


def test_eval_parser_has_no_training_flags() -> None:
    parser = argparse.ArgumentParser()
    add_common_args(parser, training=False)
    args = parser.parse_args(["--model_size", "micro"])
    assert args.model_size == "micro"
    assert not hasattr(args, "resume") and not hasattr(args, "accum_steps")


def test_save_args_writes_flags_environment_and_extra(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    args = parser.parse_args(["--seed", "7"])
    args.run_dir = tmp_path / "run"
    save_args(args, tmp_path / "run" / "finetune_config.json", {"n_train": 10})
    saved = json.loads((tmp_path / "run" / "finetune_config.json").read_text())
    assert saved["args"]["seed"] == 7 and saved["args"]["run_dir"] == str(tmp_path / "run")
    assert saved["n_train"] == 10 and "git_commit" in saved["environment"]


def test_compile_failure_falls_back_to_the_eager_model(monkeypatch, caplog) -> None:
    model = torch.nn.Linear(4, 1)

    def broken(module):
        def call(x):
            raise RuntimeError("inductor: no C++ compiler\nsecond line")
        return call

    monkeypatch.setattr(torch, "compile", broken)
    logger = logging.getLogger("compile_test")
    with caplog.at_level(logging.WARNING, logger="compile_test"):
        out = compile_or_eager(model, torch.ones(2, 4), "off", logger)
    assert out is model
    assert "--compile failed (RuntimeError: inductor: no C++ compiler)" in caplog.text


def test_compile_trial_step_leaves_no_gradients(monkeypatch) -> None:
    model = torch.nn.Linear(4, 1)
    monkeypatch.setattr(torch, "compile", lambda module: (lambda x: {"score": module(x)}))
    out = compile_or_eager(model, torch.ones(2, 4), "off", logging.getLogger("compile_test"))
    assert out is not model and out(torch.ones(1, 4))["score"].shape == (1, 1)
    assert all(p.grad is None for p in model.parameters())


def test_scripts_print_user_errors_without_traceback(monkeypatch, capsys) -> None:
    def bad_input() -> int:
        raise DatasetError("labels.csv, row at line 5, column 'mos': expected a finite number")

    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    assert run_script(bad_input) == 2
    assert capsys.readouterr().err == (
        "error: labels.csv, row at line 5, column 'mos': expected a finite number\n")
    assert run_script(lambda: 0) == 0
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_script(lambda: 1 // 0)
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(DatasetError):
        run_script(bad_input)


class _FakeGpu:
    """torch.cuda stand-ins for a GPU of some generation on a machine without one."""

    def __init__(self, native_bf16: bool, emulated_bf16: bool = True) -> None:
        self.native, self.emulated = native_bf16, emulated_bf16
        self.current: list[int] = []  # the device each capability query ran on

    @contextlib.contextmanager
    def device(self, device: torch.device):
        self.current.append(device.index)
        yield

    def is_bf16_supported(self, including_emulation: bool = True) -> bool:
        return self.native or (including_emulation and self.emulated)


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp16")])
def test_amp_auto_asks_the_runs_own_gpu_for_native_bf16(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: str
) -> None:
    """auto: bf16 on Ampere and newer; fp16 (with a GradScaler) on V100/T4, which only emulate
    bf16; the query runs on the run's device, not the current one."""
    gpu = _FakeGpu(native_bf16=native)
    monkeypatch.setattr(torch.cuda, "device", gpu.device)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu.is_bf16_supported)
    assert resolve_amp("auto", "cuda:1") == expected
    assert gpu.current == [1]
    assert resolve_amp("bf16", "cuda:1") == "bf16"  # asked for: emulated bf16 is allowed


def test_amp_bf16_refused_without_any_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = _FakeGpu(native_bf16=False, emulated_bf16=False)
    monkeypatch.setattr(torch.cuda, "device", gpu.device)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", gpu.is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Old GPU")
    with pytest.raises(DeviceError, match="Old GPU has no bf16 support"):
        resolve_amp("bf16", "cuda:0")


def test_command_line_names_the_interpreter_that_ran_it(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    """The resume command quotes the interpreter (relative where shorter) and the launcher,
    never a bare `python`, and leaves out an earlier --resume."""
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "executable", str(tmp_path / ".venv" / "bin" / "python"))
    script = tmp_path / "train_swin.py"
    argv = ["--resume", "runs/a/last.pkl", "--model_name", "a b", "--epochs", "3"]
    assert command_line(script, argv, drop="--resume") == (
        ".venv/bin/python train_swin.py --model_name 'a b' --epochs 3")
    assert command_line(script, ["--epochs", "3", "--resume"], drop="--resume") == (
        ".venv/bin/python train_swin.py --epochs 3")
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")  # shorter than ../../usr/...
    assert command_line(script, ["--resume=x"], drop="--resume") == "/usr/bin/python3 train_swin.py"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert command_line(script, []) == (
        "/usr/bin/python3 -m torch.distributed.run --standalone --nproc_per_node 2 train_swin.py")
