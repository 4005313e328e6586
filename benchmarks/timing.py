"""Timing, memory and FLOP helpers shared by the benchmark sections."""

from __future__ import annotations

import contextlib
import re
import resource
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense tensor-core peaks (FLOP/s) from the vendors' data sheets, keyed by a pattern of the device
# name; checked in order, so the more specific names come first. Precisions and variants not
# listed (fp32/tf32, H100 NVL) give no MFU rather than a misleading one.
PEAK_FLOPS = (
    (r"\bH100 NVL\b", {}),
    (r"\bH100 PCIe\b", {"bf16": 756e12, "fp16": 756e12}),
    (r"\bH100\b", {"bf16": 989e12, "fp16": 989e12}),
    (r"\bH200\b", {"bf16": 989e12, "fp16": 989e12}),
    (r"\bA100\b", {"bf16": 312e12, "fp16": 312e12}),
)

# Backward costs about twice the forward, so a training step is about three forwards.
TRAIN_FLOPS_PER_FORWARD = 3.0


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock timings cover it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_times(run: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    """Wall time of each of `repeats` calls of `run`, device work included."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def time_steps(fn: Callable[[], object], device: torch.device, warmup: int, steps: int,
               repeats: int = 1) -> float:
    """Seconds per call of `fn`: median over `repeats` runs of `steps` calls, after `warmup`."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    for _ in range(warmup):
        fn()

    def run() -> None:
        for _ in range(steps):
            fn()

    return statistics.median(run_times(run, device, repeats)) / steps


class RegionTimer:
    """Accumulates the wall time of one region of a step, synchronising the device around it."""

    def __init__(self, device: torch.device) -> None:
        """Start with nothing recorded."""
        self.device = device
        self.seconds = 0.0
        self.calls = 0
        self.enabled = True

    def wrap(self, fn: Callable) -> Callable:
        """Return `fn` timed into this timer whenever `self.enabled` is set."""

        def timed(*args, **kwargs):
            if not self.enabled:
                return fn(*args, **kwargs)
            synchronize(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            synchronize(self.device)
            self.seconds += time.perf_counter() - start
            self.calls += 1
            return out

        return timed


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA peak-memory window (process RSS on CPU cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated memory, or the process's max resident set size on CPU, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "cpu"


def peak_flops(name: str, amp: str) -> float | None:
    """Dense peak FLOP/s of a known GPU at this precision, or None when not known."""
    for pattern, peaks in PEAK_FLOPS:
        if re.search(pattern, name):
            return peaks.get(amp)
    return None


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward of `model` on `x` (matmuls and convolutions, 2 per multiply-add)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return float(counter.get_total_flops())
