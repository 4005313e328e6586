"""Stopping inside an epoch and resuming it: the batches trained are not trained again, and the
resumed run ends with the weights of a run that was never stopped (one rank and two)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import engine.loop
from common.distributed import DistInfo, unwrap, wrap_ddp
from common.errors import CheckpointError
from common.runtime import make_grad_scaler
from engine.epoch_state import ResumableSampler, position_for_rank, save_mid_epoch
from engine.loop import StepOutput, to_device_images, train_one_epoch, training_loader
from engine.optim import build_optimizer, build_scheduler, param_groups
from engine.train_state import GracefulStop, load_train_state, save_train_state

CPU = torch.device("cpu")
ITEMS, BATCH, EPOCHS = 24, 2, 2  # one rank: 12 steps an epoch; two ranks: 6 each
ONE_RANK = DistInfo(0, 1, 0, CPU, True)


class Numbered(Dataset):
    """Item i: one 3 x 8 x 8 crop drawn from seed i, MOS its mean brightness."""

    def __init__(self, items: int) -> None:
        self.items = items

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(index)
        image = torch.randint(0, 256, (1, 3, 8, 8), generator=generator, dtype=torch.uint8)
        return {"image": image, "mos": image.float().mean() / 255, "index": index,
                "name": f"img{index}"}


class DropoutScorer(nn.Module):
    """A linear score of pooled pixels behind dropout: training draws from the global RNG."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # the same start on every rank
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x.mean(dim=(2, 3)))).squeeze(1)


class NoisyStep:
    """L1 step weighted by noise from its own generator; records the items it trains and asks
    the run to stop after `stop_after` calls (the way a signal sets the flag)."""

    def __init__(self, seen: list[int], seed: int, stop: GracefulStop | None = None,
                 stop_after: int = 0) -> None:
        self.seen, self.stop, self.stop_after = seen, stop, stop_after
        self.generator = torch.Generator().manual_seed(seed)
        self.calls = 0

    def rng_state(self) -> dict:
        return {"noise": self.generator.get_state()}

    def restore_rng_state(self, state: dict) -> None:
        self.generator.set_state(state["noise"])

    def __call__(self, model: nn.Module, batch: dict) -> StepOutput:
        self.calls += 1
        if self.stop is not None and self.calls == self.stop_after:
            self.stop.requested = True
        self.seen.extend(batch["index"].tolist())
        pred = model(to_device_images(batch["image"].flatten(0, 1), CPU))
        weight = 1 + torch.rand(pred.shape, generator=self.generator)
        loss = ((pred - batch["mos"]).abs() * weight).mean()
        return StepOutput(loss, {}, pred.detach(), batch["mos"])


def run(info: DistInfo, path: Path, *, stop_after: int = 0, stop_rank: int = 0,
        resume: bool = False, save_every_s: float = 0.0, items: int = ITEMS) -> dict:
    """Train EPOCHS epochs (or resume `path`); a stop asked for on `stop_rank` in the last
    epoch saves the position to `path`. Returns what was trained and the final weights."""
    dataset = Numbered(items)
    model = wrap_ddp(DropoutScorer(), info)
    optimizer = build_optimizer(param_groups({"all": (unwrap(model), 0.05)}, 0.0), CPU)
    sampler = ResumableSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                               shuffle=True, seed=0, drop_last=True)
    loader = training_loader(dataset, sampler, BATCH, 0, CPU, drop_last=True)
    scheduler = build_scheduler(optimizer, "cosine", EPOCHS, len(loader))
    scaler = make_grad_scaler(CPU, "off")
    stop = GracefulStop()
    start, position = 1, None
    if resume:
        torch.manual_seed(999)  # another RNG state, which the saved position must undo
        state = load_train_state(path, model, optimizer, scheduler, scaler, info.rank)
        start = state["epoch"] + 1
        position = position_for_rank(state["position"], path, info)
    saves: list[int] = []

    def checkpoint(mid) -> None:
        saves.append(mid.steps)
        save_mid_epoch(mid, info, lambda done, pos: save_train_state(
            path, model, optimizer, scheduler, scaler, done, {}, {}, "micro", position=pos))

    seen: list[int] = []
    out: dict = {}
    for epoch in range(start, EPOCHS + 1):
        asked = stop_after and epoch == EPOCHS and info.rank == stop_rank
        step = NoisyStep(seen, seed=epoch, stop=stop if asked else None, stop_after=stop_after)
        out = train_one_epoch(model, loader, optimizer, scheduler, scaler, step, device=CPU,
                              amp="off", accum_steps=1, guard=None, stop=stop, epoch=epoch,
                              desc="t", is_main=False, info=info, resume=position,
                              checkpoint=checkpoint, save_every_s=save_every_s)
        position = None
        if out["stopped"]:
            break
    weights = torch.cat([p.detach().flatten() for p in unwrap(model).parameters()])
    return {"seen": seen, "weights": weights.tolist(), "steps": out["steps"],
            "loss": out["loss"], "stopped": out["stopped"], "saves": saves,
            "position": out["position"].steps if out["position"] else None}


def test_stop_inside_an_epoch_then_resume_trains_each_batch_once(tmp_path: Path) -> None:
    """Stopped after step 5 of epoch 2, resumed: steps 6-12 only, and the very same weights."""
    whole = run(ONE_RANK, tmp_path / "unused.pkl")
    path = tmp_path / "last.pkl"
    stopped = run(ONE_RANK, path, stop_after=5)
    assert stopped["stopped"] and stopped["position"] == 5 and stopped["saves"] == [5]
    resumed = run(ONE_RANK, path, resume=True)
    per_epoch = ITEMS // BATCH * BATCH
    assert resumed["seen"] == whole["seen"][per_epoch + 5 * BATCH:]  # nothing trained twice
    assert stopped["seen"] + resumed["seen"] == whole["seen"]
    assert resumed["steps"] == whole["steps"] == ITEMS // BATCH  # the epoch's steps, in total
    assert resumed["weights"] == whole["weights"]
    assert resumed["loss"] == pytest.approx(whole["loss"], rel=1e-6)


def test_periodic_saves_and_a_changed_epoch_are_refused(tmp_path: Path) -> None:
    """--save_every_minutes as short as can be: a save before every step but the first of an
    epoch (its end is the stage's); resuming such a save into an epoch of another length names
    both lengths."""
    path = tmp_path / "last.pkl"
    assert run(ONE_RANK, path, save_every_s=1e-9)["saves"] == [*range(1, 12)] * 2
    with pytest.raises(CheckpointError, match=r"after batch 11 of epoch 2, an epoch of 12 "
                       r"batches; this run's epoch 2 has 10: resume with the data and flags"):
        run(ONE_RANK, path, resume=True, items=ITEMS - 4)
    assert run(ONE_RANK, path, save_every_s=3600)["saves"] == []


def test_a_position_saved_by_two_ranks_needs_two() -> None:
    with pytest.raises(CheckpointError, match=r"by 2 process\(es\).*--nproc_per_node 2"):
        position_for_rank({"epoch": 3, "batches": 1, "steps": 1, "epoch_batches": 4,
                           "time_s": 0.0, "ranks": [{}, {}]}, "last.pkl", ONE_RANK)


def _two_rank_worker(info: DistInfo, out: Path) -> None:
    engine.loop.STOP_CHECK_EVERY = 2  # the ranks' agreement every 2 steps keeps this short
    whole = run(info, out / "unused.pkl")
    stopped = run(info, out / "last.pkl", stop_after=3, stop_rank=1)
    resumed = run(info, out / "last.pkl", resume=True)
    periodic = run(info, out / "periodic.pkl", save_every_s=1e-9)
    (out / f"rank{info.rank}.json").write_text(json.dumps(
        {"whole": whole, "stopped": stopped, "resumed": resumed, "periodic": periodic}))


def test_two_ranks_stop_together_and_resume_where_each_stood(two_ranks, tmp_path: Path) -> None:
    """A stop asked on rank 1 at its 3rd step of epoch 2: both ranks save after step 4 (their
    agreement every 2 steps), each resumes its own share of the data at batch 5, and both end
    with the weights of an uninterrupted two-rank run. Periodic saves come at the agreements
    too, on both ranks alike."""
    two_ranks(_two_rank_worker, tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    steps = ITEMS // 2 // BATCH
    for rank in ranks:
        whole, stopped, resumed = rank["whole"], rank["stopped"], rank["resumed"]
        assert stopped["position"] == 4 and stopped["saves"] == [4]
        assert stopped["seen"] + resumed["seen"] == whole["seen"]
        assert len(resumed["seen"]) == (steps - 4) * BATCH
        assert resumed["steps"] == whole["steps"] == steps
        assert resumed["weights"] == whole["weights"]
        assert rank["periodic"]["saves"] == [2, 4, 2, 4]  # 6 steps an epoch, the end not saved
    assert ranks[0]["resumed"]["seen"] != ranks[1]["resumed"]["seen"]  # each its own share
    assert ranks[0]["resumed"]["weights"] == ranks[1]["resumed"]["weights"]
