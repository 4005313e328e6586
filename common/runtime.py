"""Device, precision and reproducibility helpers, and a description of the machine a run used."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import platform
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.errors import DeviceError, InvalidValueError
from common.vocabulary import AMP_CHOICES

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
REPO_ROOT = Path(__file__).resolve().parents[1]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """Turn --device into a torch.device ("auto" -> cuda if available, else cpu)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name} requested but CUDA is not available to this torch build "
                f"(torch {torch.__version__}); use --device cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name} requested but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device {name} requested but MPS is not available; use cpu")
    return device


def _bf16_on(device: torch.device, native: bool) -> bool:
    """Whether the GPU `device` (not merely the current one) runs bf16; `native`: in hardware,
    not emulated (V100 and T4 emulate bf16 at a fraction of fp16's speed)."""
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=not native)


def resolve_amp(amp: str, device: torch.device | str) -> str:
    """Resolve --amp: "auto" -> bf16 on a GPU with native bf16 (Ampere and newer), fp16 with a
    GradScaler on older GPUs, off elsewhere. An explicit bf16 needs at least emulated bf16."""
    device = torch.device(device)
    if amp not in AMP_CHOICES:
        raise InvalidValueError(f"--amp must be one of {AMP_CHOICES}, got {amp!r}")
    if device.type != "cuda":
        return "off" if amp == "auto" else amp
    if amp == "auto":
        return "bf16" if _bf16_on(device, native=True) else "fp16"
    if amp == "bf16" and not _bf16_on(device, native=False):
        raise DeviceError(
            f"--amp bf16 requested but {torch.cuda.get_device_name(device)} has no bf16 support; "
            "use --amp fp16 or off"
        )
    return amp


def autocast(device: torch.device | str, amp: str) -> contextlib.AbstractContextManager:
    """Autocast context for a resolved --amp value ("off" -> no-op); works on cuda and cpu."""
    device = torch.device(device)
    if amp != "off" and amp not in _AMP_DTYPES:  # called every step: resolved values pass
        amp = resolve_amp(amp, device)
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AMP_DTYPES[amp])


def make_grad_scaler(device: torch.device | str, amp: str) -> torch.amp.GradScaler:
    """GradScaler, enabled only for fp16 (bf16 and fp32 need no loss scaling)."""
    device = torch.device(device)
    return torch.amp.GradScaler(device.type, enabled=resolve_amp(amp, device) == "fp16")


def compile_or_eager(model: nn.Module, example: torch.Tensor, amp: str,
                     logger: logging.Logger) -> nn.Module:
    """torch.compile `model`, tried on one forward and backward of `example` (compilation happens
    on the first call); on any compiler failure warn and return the eager model, which trains
    the same. Gradients of the trial are cleared."""
    compiled = torch.compile(model)
    try:
        with autocast(example.device, amp):
            out = compiled(example)
        outputs = out.values() if isinstance(out, dict) else [out]
        sum(t.float().sum() for t in outputs if t.requires_grad).backward()
    except Exception as exc:  # any compiler failure: the eager model still trains correctly
        logger.warning("--compile failed (%s: %s); training without torch.compile",
                       type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        compiled = model
    model.zero_grad(set_to_none=True)
    return compiled


def flush_subnormals(device: torch.device | str) -> None:
    """On CPUs, flush subnormal floats (below float32's normal range) to zero.

    The target network's saturated sigmoids give such gradients, and a CPU handles each one many
    times slower: a fine-tuning step of the trained demo mini took 1.0 s with them and 0.47 s
    flushed (docs/PERFORMANCE.md). GPUs have no such penalty; nothing changes there.
    """
    if torch.device(device).type == "cpu":
        torch.set_flush_denormal(True)


def configure_backends(device: torch.device | str) -> None:
    """Fast defaults for training: cudnn.benchmark and TF32 matmuls/convolutions on GPUs,
    subnormal floats flushed on CPUs."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    flush_subnormals(device)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of a module (optionally only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _git(*args: str) -> str | None:
    """Output of a git command in the repository folder, or None where git is unavailable."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["git", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode == 0:
            return result.stdout.strip()
    return None


def _package_version(name: str) -> str:
    """Installed version of a distribution, or "not installed"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_name() -> str:
    """CPU model name from /proc/cpuinfo where available, else what platform reports."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _ram_gb() -> float | None:
    """Total physical memory in GiB (None where the OS does not say)."""
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return None


def _gpu_info() -> dict:
    """cuDNN version, GPU name and count (None/0 without CUDA or when the driver misbehaves)."""
    info: dict = {"cudnn": None, "gpu_name": None, "gpu_count": 0}
    with contextlib.suppress(RuntimeError, AssertionError):
        if torch.backends.cudnn.is_available():
            info["cudnn"] = torch.backends.cudnn.version()
        if torch.cuda.is_available():
            info["gpu_name"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
    return info


def environment_info() -> dict:
    """Versions, hardware and git commit of this run, for the saved config (never raises)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        **_gpu_info(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "numpy": np.__version__,
        "timm": _package_version("timm"),
        "open_clip": _package_version("open_clip_torch"),
        "git_commit": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(status) if status is not None else None,
        "hostname": socket.gethostname(),
    }
