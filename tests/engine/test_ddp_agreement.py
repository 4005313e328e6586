"""Two CPU ranks (gloo) stay in step: unreadable batches or non-finite losses on one rank, epoch
figures over all ranks, and each rank's RNG stream across a resume.

Each test fails (by its two_ranks timeout, or by its assertions) when a rank decides alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DistributedSampler

from common.distributed import DistInfo, barrier, gather_arrays, unwrap, wrap_ddp
from common.runtime import make_grad_scaler
from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import UnlabeledPairDataset
from engine.loop import StepOutput, to_device_images, train_one_epoch, training_loader
from engine.optim import build_optimizer, param_groups
from engine.train_state import (
    NonFiniteGuard,
    NonFiniteLossError,
    all_rank_rngs,
    load_train_state,
    save_train_state,
)

CPU = torch.device("cpu")
CROP = 16


class TinyConv(nn.Module):
    """A convolution and a linear layer: every parameter takes part in every step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # the same start on every rank
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3))).squeeze(1)


def pair_step(model: nn.Module, batch: dict) -> StepOutput:
    """Mean score of both crops of every image."""
    loss = model(to_device_images(batch["image"].flatten(0, 1), CPU)).mean()
    return StepOutput(loss, {})


def write_images(folder: Path, n: int, truncated: set[int]) -> list[Path]:
    """n small JPEGs; those in `truncated` cut to half their bytes (undecodable)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
        if i in truncated:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        paths.append(path)
    return paths


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return build_optimizer(param_groups({"all": (unwrap(model), 0.1)}, 0.0), CPU)


def _weights(model: nn.Module) -> list[float]:
    return torch.cat([p.detach().flatten() for p in unwrap(model).parameters()]).tolist()


def _unreadable_batch_worker(info: DistInfo, paths: list[Path], out: Path) -> None:
    dataset = UnlabeledPairDataset(paths, ResizePolicy("none"), ImageCache(None), crop_size=CROP)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=info.rank, shuffle=False)
    loader = training_loader(dataset, sampler, 1, 0, CPU, drop_last=True)
    model = wrap_ddp(TinyConv(), info)
    result = train_one_epoch(model, loader, _optimizer(model), None, make_grad_scaler(CPU, "off"),
                             pair_step, device=CPU, amp="off", accum_steps=1, guard=None,
                             stop=None, epoch=1, desc="t", is_main=False, info=info)
    (out / f"rank{info.rank}.json").write_text(json.dumps(
        {"steps": result["steps"], "skipped": result["skipped_batches"],
         "skipped_images": result["skipped_images"], "images": result["images"],
         "weights": _weights(model)}))


def test_batch_without_readable_image_on_one_rank_keeps_ranks_in_step(two_ranks, tmp_path):
    """Batch size 1, image 1 truncated: rank 1's first batch has nothing to decode."""
    paths = write_images(tmp_path, 4, truncated={1})  # rank 0 reads 0, 2; rank 1 reads 1, 3
    two_ranks(_unreadable_batch_worker, paths, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 2
    assert (r0["skipped"], r1["skipped"]) == (0, 1)
    assert (r1["skipped_images"], r1["images"]) == (1, 1)
    assert r0["weights"] == r1["weights"]


def _nonfinite_worker(info: DistInfo, skip: bool, out: Path) -> None:
    model = wrap_ddp(TinyConv(), info)
    guard = NonFiniteGuard(skip=skip, check_every=100, info=info)
    gen = torch.Generator().manual_seed(info.rank)
    batches = [{"image": torch.randint(0, 256, (2, 2, 3, CROP, CROP), generator=gen,
                                       dtype=torch.uint8), "name": [f"r{info.rank}_b{b}"]}
               for b in range(3)]

    def step(model: nn.Module, batch: dict) -> StepOutput:
        out = pair_step(model, batch)
        if batch["name"] == ["r1_b1"]:  # rank 1's second batch: a NaN loss
            out.loss = out.loss + float("nan")
        return out

    record: dict = {}
    try:
        result = train_one_epoch(model, batches, _optimizer(model), None,
                                 make_grad_scaler(CPU, "off"), step, device=CPU, amp="off",
                                 accum_steps=1, guard=guard, stop=None, epoch=1, desc="t",
                                 is_main=False, info=info)
        record["skipped"] = result["skipped_batches"]
    except NonFiniteLossError as exc:
        record.update(error=str(exc), step=exc.step, names=exc.names)
    record["weights"] = _weights(model)
    (out / f"rank{info.rank}.json").write_text(json.dumps(record))


def test_skip_nonfinite_skips_on_every_rank(two_ranks, tmp_path):
    """--skip_nonfinite: a NaN loss on rank 1 skips that step on both ranks; no drift."""
    two_ranks(_nonfinite_worker, True, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["skipped"] == r1["skipped"] == 1
    assert np.isfinite(r0["weights"]).all()
    assert r0["weights"] == r1["weights"]


def test_nan_guard_raises_on_every_rank(two_ranks, tmp_path):
    """Without --skip_nonfinite every rank raises at the same step; rank 1 names its images."""
    two_ranks(_nonfinite_worker, False, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert "error" in r0 and "error" in r1
    assert r0["step"] == r1["step"] == 2
    assert r1["names"] == ["r1_b1"] and "r1_b1" in r1["error"]
    assert r0["names"] == [] and "another rank" in r0["error"]


def _gather_worker(info: DistInfo, out: Path) -> None:
    mine = np.arange(info.rank + 1, dtype=np.float64) + 10 * info.rank  # ranks hold 1 and 2
    joined = gather_arrays(mine, info)
    nothing = gather_arrays(None, info)
    (out / f"rank{info.rank}.json").write_text(json.dumps(
        {"joined": joined.tolist(), "nothing": nothing}))


def test_epoch_figures_join_every_rank(two_ranks, tmp_path):
    """Training predictions for the epoch's SRCC come from every rank's shard, in rank order."""
    two_ranks(_gather_worker, tmp_path)
    for rank in (0, 1):
        record = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert record == {"joined": [0.0, 10.0, 11.0], "nothing": None}


def _rng_worker(info: DistInfo, path: Path, out: Path) -> None:
    model = TinyConv()
    optimizer = _optimizer(model)
    torch.manual_seed(100 + info.rank)  # each rank's own stream, as pretraining seeds them
    torch.rand(5)
    rank_rngs = all_rank_rngs(info)
    if info.is_main:
        save_train_state(path, model, optimizer, None, None, 1, {}, {}, "micro", rank_rngs)
    expected = torch.rand(3).tolist()  # what this rank would draw next without a stop
    barrier(info)
    torch.manual_seed(999)  # a fresh process after the stop
    load_train_state(path, model, optimizer, None, None, rank=info.rank)
    (out / f"rank{info.rank}.json").write_text(json.dumps(
        {"expected": expected, "resumed": torch.rand(3).tolist()}))


def test_resume_restores_each_ranks_rng_stream(two_ranks, tmp_path):
    """last.pkl holds every rank's RNG state; each rank resumes its own stream."""
    two_ranks(_rng_worker, tmp_path / "last.pkl", tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["resumed"] == r0["expected"] and r1["resumed"] == r1["expected"]
    assert r0["expected"] != r1["expected"]
