"""Stage 2: fine-tune Swin-HyperIQA on one dataset; select on validation, test the best once."""

from __future__ import annotations

import argparse
import copy
import logging
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from common.checkpoint import atomic_save, make_checkpoint
from common.cli import save_args
from common.distributed import (
    DistInfo,
    barrier,
    gather_arrays,
    reduce_mean,
    unwrap,
    wrap_ddp,
)
from common.files import atomic_write_json, check_writable, json_safe
from common.metrics import MetricError, evaluate_predictions
from common.runlog import MetricsJournal, RunClock, setup_logger
from common.runtime import (
    compile_or_eager,
    count_parameters,
    make_grad_scaler,
)
from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import IQACropSamples
from data.registry import (
    canonical_key,
    check_split_sizes,
    dataset_label,
    drop_missing,
    read_rows,
    resize_policy,
)
from data.rows import SPLITS, DatasetError, Row, label_subset
from engine.epoch_state import MidEpoch, ResumableSampler, position_for_rank, save_mid_epoch
from engine.evaluate import eval_batch_size, load_model_for_eval, metrics_for, predict_rows
from engine.loop import StepOutput, to_device_images, train_one_epoch, training_loader
from engine.optim import (
    build_optimizer,
    build_scheduler,
    optimizer_steps_per_epoch,
    param_groups,
    reset_moments,
)
from engine.protocols import apply_protocol, describe, learning_rates
from engine.resume_check import note_epochs_change
from engine.run_kind import FINETUNE, LAST_STATE_NAME
from engine.run_setup import open_run
from engine.train_state import (
    GracefulStop,
    NonFiniteGuard,
    all_rank_rngs,
    load_train_state,
    save_train_state,
)
from models.swin_hyperiqa import SwinHyperIQA, build_swin_hyperiqa, load_encoder

BEST_NAME = "best_model.pkl"
RESULTS_NAME = "results.json"
CONFIG_NAME = FINETUNE.config_name
METRICS_NAME = "metrics.jsonl"
SELECTED_BY = {"val": "selected on validation", "last": "the last epoch, --select last"}
# best, last (weights + two AdamW moments) and a temp copy while writing: ~7x the weights
CHECKPOINT_BYTES_PER_PARAM = 4 * 7
# warnings of the data checks, made before the run's log exists (stderr)
CHECKS_LOGGER = logging.getLogger(__name__)


@dataclass
class FinetuneData:
    """Rows of one dataset split three ways, with how to load their images."""

    key: str
    splits: dict[str, list[Row]]
    policy: ResizePolicy
    cache: ImageCache

    @property
    def mos_range(self) -> tuple[float, float]:
        """(min, max) training MOS: the scale the model regresses."""
        scores = [row.mos for row in self.splits["train"]]
        return min(scores), max(scores)


def load_data(args: argparse.Namespace, logger: logging.Logger) -> FinetuneData:
    """Read and split the dataset; stop on missing images unless --skip_missing."""
    key = canonical_key(args.dataset)
    rows = read_rows(key, args.data_root, args.split, args.split_seed, args.split_ratios)
    rows = drop_missing(key, rows, args.skip_missing, logger)
    splits = {name: [row for row in rows if row.split == name] for name in SPLITS}
    if args.label_fraction < 1:  # label efficiency: fewer training labels, val/test unchanged
        splits["train"] = label_subset(splits["train"], args.label_fraction, args.label_seed)
    check_split_sizes(key, args.data_root, splits, args.split, args.split_ratios)
    return FinetuneData(key, splits, resize_policy(key, args.resize), ImageCache(args.cache_dir))


def build_model(args: argparse.Namespace, data: FinetuneData, logger: logging.Logger
                ) -> SwinHyperIQA:
    """Swin-HyperIQA per the flags, the pretrained encoder loaded, scores starting at mean MOS."""
    model = build_swin_hyperiqa(args.model_size, use_multiscale=args.use_multiscale,
                                use_attention=args.use_attention, dropout=args.dropout,
                                drop_path=args.drop_path, imagenet_weights=args.imagenet_weights,
                                crop_size=args.crop_size, attention_scope=args.attention_scope,
                                head_pooling=args.head_pooling,
                                generator_gain=args.generator_gain)
    if args.pretrained_encoder:
        load_encoder(model, args.pretrained_encoder, logger)
    model.encoder.set_grad_checkpointing(args.grad_checkpointing)
    # L1 gives a ranking signal only where predictions fall inside the MOS range, and the head
    # starts near 0 whatever the scale (KonIQ 0-100): start every score at the mean training MOS.
    train_mos = np.array([r.mos for r in data.splits["train"]], dtype=np.float64)
    if args.score_norm == "standardize":
        model.set_score_scale(train_mos.mean(), max(train_mos.std(), 1e-6))
    else:
        with torch.no_grad():
            model.head.last_bias_fc.bias.add_(float(train_mos.mean()))
    return model


def finetune_param_groups(model: SwinHyperIQA, encoder_lr: float, hyper_lr: float,
                          weight_decay: float, lda_group: str = "encoder",
                          decay_all: bool = False) -> list[dict]:
    """Optimizer groups "encoder" (with the LDA layers when lda_group is "encoder", as both
    references) and "hyper" (the rest of the head), each with its no-decay twin."""
    content = model.head.content_modules()
    encoder_part = [model.encoder, *content] if lda_group == "encoder" else [model.encoder]
    hyper_part = model.head.hyper_modules() + ([] if lda_group == "encoder" else content)
    return param_groups({"encoder": (nn.ModuleList(encoder_part), encoder_lr),
                         "hyper": (nn.ModuleList(hyper_part), hyper_lr)}, weight_decay,
                        decay_all)


def train_loader(args: argparse.Namespace, data: FinetuneData, info: DistInfo) -> DataLoader:
    """Shuffled batches of `batch_size` crops per process, `train_patches` per image an epoch."""
    dataset = IQACropSamples(data.splits["train"], data.policy, data.cache,
                             crop_size=args.crop_size, patches=args.train_patches, train=True,
                             seed=args.seed)
    if len(dataset) // info.world_size < args.batch_size:
        raise DatasetError(
            f"the training split gives {len(dataset)} crops ({len(data.splits['train'])} images "
            f"x {args.train_patches}), fewer than one batch of {args.batch_size} per process x "
            f"{info.world_size} process(es); lower --batch_size"
        )
    sampler = ResumableSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                               shuffle=True, seed=args.seed, drop_last=True)
    return training_loader(dataset, sampler, args.batch_size, args.num_workers, info.device,
                           drop_last=True)


def l1_step(device: torch.device):
    """Step function: L1 between every crop's score and its image's MOS (HyperIQA)."""

    def step(model: torch.nn.Module, batch: dict) -> StepOutput:
        images = batch["image"]  # (B, P, 3, H, W) uint8
        b, p = images.shape[:2]
        mos = batch["mos"].to(device, non_blocking=True).float()  # (B,)
        pred = model(to_device_images(images.flatten(0, 1), device)).float().view(b, p)
        loss = F.l1_loss(pred, mos[:, None].expand(b, p))
        return StepOutput(loss=loss, logs={}, predictions=pred.detach().mean(dim=1), targets=mos)

    return step


def maybe_compile(model: torch.nn.Module, args: argparse.Namespace, device: torch.device,
                  amp: str, logger: logging.Logger) -> torch.nn.Module:
    """torch.compile the training model when --compile, tried on a batch of the training shape."""
    if not args.compile:
        return model
    example = torch.zeros(args.batch_size, 3, args.crop_size, args.crop_size,
                          device=device).contiguous(memory_format=torch.channels_last)
    return compile_or_eager(model, example, amp, logger)


@dataclass
class FinetuneState:
    """What a fine-tuning run carries from epoch to epoch (last.pkl keeps it as its "extra")."""

    best_srcc: float | None = None
    best_epoch: int = 0
    best_val: dict | None = None
    bad_epochs: int = 0
    train_time_s: float = 0.0
    epochs_run: int = 0
    finished: bool = False
    stopped_early: bool = False


@dataclass
class FinetuneRun:
    """A fine-tuning run set up and ready for its first (or resumed) epoch."""

    name: str
    run_dir: Path
    logger: logging.Logger
    config: dict
    data: FinetuneData
    model: SwinHyperIQA
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    scaler: torch.amp.GradScaler
    amp: str
    start_epoch: int
    state: FinetuneState
    steps_per_epoch: int
    resume: MidEpoch | None = None  # where a run saved inside an epoch continues

    @property
    def last_path(self) -> Path:
        """The train state written after every epoch."""
        return self.run_dir / LAST_STATE_NAME


def setup_run(args: argparse.Namespace, info: DistInfo) -> FinetuneRun:
    """Check flags and outputs, then build data, model, optimizer and schedule (and resume)."""
    protocol = apply_protocol(args)
    folder = open_run(args, info, args.model_name, kind=FINETUNE,
                      markers=(LAST_STATE_NAME, BEST_NAME), seed=args.seed,
                      checks=lambda: load_data(args, CHECKS_LOGGER))
    logger, run_dir, device = folder.logger, folder.run_dir, info.device
    logger.info("%s", describe(protocol))
    data: FinetuneData = folder.checked
    model = build_model(args, data, logger).to(device, memory_format=torch.channels_last)
    if info.is_main:
        check_writable(run_dir, count_parameters(model) * CHECKPOINT_BYTES_PER_PARAM)
    encoder_lr, hyper_lr = learning_rates(args)
    if "lr_encoder_pretrained" in protocol["overrides"] and not args.pretrained_encoder:
        logger.warning("--lr_encoder_pretrained is ignored without --pretrained_encoder")
    groups = finetune_param_groups(model, encoder_lr, hyper_lr, args.weight_decay, args.lda_group,
                                   args.decay_all)
    optimizer = build_optimizer(groups, device, kind=args.optimizer)
    loader = train_loader(args, data, info)
    steps_per_epoch = optimizer_steps_per_epoch(len(loader), args.accum_steps,
                                                args.max_steps_per_epoch)
    scheduler = build_scheduler(optimizer, args.scheduler, args.epochs, steps_per_epoch,
                                args.warmup_epochs, args.lr_step_size, args.lr_gamma,
                                hyper_ratio=hyper_lr / args.lr if args.lr > 0 else 1.0)
    scaler = make_grad_scaler(device, folder.amp)
    low, high = data.mos_range
    config = {**model.config, "dataset": data.key, "mos_range": [low, high],
              "split": args.split, "split_seed": args.split_seed,
              "split_ratios": list(args.split_ratios), "test_patches": args.test_patches,
              "resize": args.resize, "protocol": args.protocol}
    run = FinetuneRun(folder.name, run_dir, logger, config, data, model, loader, optimizer,
                      scheduler, scaler, folder.amp, start_epoch=1, state=FinetuneState(),
                      steps_per_epoch=steps_per_epoch)
    if folder.resume_path is not None:
        restored = load_train_state(folder.resume_path, model, optimizer, scheduler, scaler,
                                    info.rank, expected=FINETUNE)
        run.state = FinetuneState(**restored["extra"])
        run.start_epoch = restored["epoch"] + 1
        # a run that reached its --epochs continues when resumed with more of them
        run.state.finished = run.state.stopped_early or run.start_epoch > args.epochs
        if restored["position"] is not None:
            run.resume = position_for_rank(restored["position"], folder.resume_path, info)
        logger.info("resumed from %s %s", folder.resume_path, run.resume.where(steps_per_epoch)
                    if run.resume else f"after epoch {restored['epoch']}")
        note_epochs_change(folder.saved_args, args.epochs, optimizer, scheduler, args.scheduler,
                           restored["epoch"], logger)
    elif args.resume:
        logger.info("--resume: no %s in %s yet, starting a new run", LAST_STATE_NAME, run_dir)
    if info.is_main:
        save_args(args, run_dir / CONFIG_NAME, extra={
            "dataset": data.key, "images": {k: len(v) for k, v in data.splits.items()},
            "mos_range": [low, high], "lr_encoder": encoder_lr, "lr_hyper": hyper_lr,
            "amp": folder.amp, "device": str(device), "world_size": info.world_size,
            "effective_batch": args.batch_size * args.accum_steps * info.world_size,
            "parameters": count_parameters(model),
            "resumed_from": str(folder.resume_path or ""), **protocol})
        MetricsJournal(run_dir / METRICS_NAME).truncate_from(run.start_epoch)
        if folder.resume_path is None:  # a resume point before epoch 1: a stop there loses nothing
            _save_last(run, 0, None)
    logger.info("%s: %s images train/val/test, MOS %.4g..%.4g, %s parameters, lr encoder %.3g "
                "hyper %.3g, %d steps/epoch, device %s, amp %s", data.key,
                "/".join(str(len(v)) for v in data.splits.values()), low, high,
                f"{count_parameters(model):,}", encoder_lr, hyper_lr, steps_per_epoch, device,
                folder.amp)
    return run


def _save_last(run: FinetuneRun, epoch: int, rank_rngs: list[dict] | None,
               position: dict | None = None) -> None:
    """Main process: last.pkl after `epoch` (0: before the first), or at `position` inside the
    epoch after it."""
    save_train_state(run.last_path, run.model, run.optimizer, run.scheduler, run.scaler, epoch,
                     asdict(run.state), run.config, run.model.config["model_size"], rank_rngs,
                     position)


def _score_split(run: FinetuneRun, args: argparse.Namespace, info: DistInfo,
                 model: torch.nn.Module, split: str, patches: int) -> dict:
    """Metrics of `model` on one split of the run's dataset, `patches` crops per image."""
    data = run.data
    pred = predict_rows(model, data.splits[split], policy=data.policy, cache=data.cache,
                        crop_size=args.crop_size, patches=patches,
                        batch_size=eval_batch_size(args.eval_batch_size, args.batch_size, patches),
                        device=info.device, amp=run.amp, num_workers=args.num_workers, info=info,
                        desc=f"{split} ({data.key})")
    return metrics_for(pred, data.splits[split], strict=False, logger=run.logger)


def _finish_epoch(run: FinetuneRun, args: argparse.Namespace, info: DistInfo, epoch: int,
                  out: dict, clock: RunClock) -> None:
    """Validation, best checkpoint, metrics line (with the run's time left), early stopping and
    last.pkl of one epoch."""
    epoch_time = out["time_s"]
    state = run.state
    val = _score_split(run, args, info, run.model, "val", args.val_patches)
    # the epoch's training figures over every rank's shard, not rank 0's alone
    train_loss = reduce_mean(torch.tensor(out["loss"], dtype=torch.float64), info).item()
    train_pred = gather_arrays(out["predictions"], info)
    train_mos = gather_arrays(out["targets"], info)
    train_srcc = (evaluate_predictions(train_pred, train_mos, strict=False)["srcc"]
                  if train_pred is not None else math.nan)
    record = {"epoch": epoch, "train_loss": train_loss, "train_srcc": train_srcc,
              "val_srcc": val["srcc"], "val_plcc": val["plcc"],
              "lr": run.optimizer.param_groups[0]["lr"], "time_s": epoch_time,
              "steps": out["steps"]}
    run.logger.info("epoch %d/%d | train loss %.4f | train SRCC %.4f | val SRCC %.4f | val PLCC "
                    "%.4f | lr %.3g | time %.1fs | %s", epoch, args.epochs, train_loss, train_srcc,
                    val["srcc"], val["plcc"], record["lr"], epoch_time,
                    clock.eta(epoch * run.steps_per_epoch))
    if out["skipped_batches"] or out["skipped_images"]:
        run.logger.warning("epoch %d skipped %d batch(es) and %d unreadable image(s)",
                           epoch, out["skipped_batches"], out["skipped_images"])
    if info.is_main:
        MetricsJournal(run.run_dir / METRICS_NAME).append(json_safe(record))
    state.train_time_s += epoch_time
    state.epochs_run = epoch
    improved = math.isfinite(val["srcc"]) and (state.best_srcc is None
                                               or val["srcc"] > state.best_srcc)
    if improved or args.select == "last":
        state.best_srcc, state.best_epoch, state.bad_epochs = val["srcc"], epoch, 0
        state.best_val = json_safe(val)
        if info.is_main:
            atomic_save(make_checkpoint("full", run.model.config["model_size"],
                                        unwrap(run.model).state_dict(), run.config, epoch,
                                        json_safe(val)), run.run_dir / BEST_NAME)
    else:
        state.bad_epochs += 1
    if args.patience and state.bad_epochs >= args.patience:
        state.finished = state.stopped_early = True
        run.logger.info("early stopping: no validation SRCC gain for %d epoch(s) (best at epoch "
                        "%d)", args.patience, state.best_epoch)
    state.finished = state.finished or epoch == args.epochs
    rank_rngs = all_rank_rngs(info)
    if info.is_main:
        _save_last(run, epoch, rank_rngs)
    barrier(info)


def finetune(args: argparse.Namespace, info: DistInfo, command: str) -> dict:
    """Train one run per the flags; returns the results.json dict (rank 0 writes the files)."""
    run = setup_run(args, info)
    train_model = maybe_compile(wrap_ddp(run.model, info), args, info.device, run.amp, run.logger)
    guard = NonFiniteGuard(skip=args.skip_nonfinite, last_checkpoint=str(run.last_path),
                           info=info)
    step = l1_step(info.device)
    spe = run.steps_per_epoch
    clock = RunClock(args.epochs * spe,
                     (run.start_epoch - 1) * spe + (run.resume.steps if run.resume else 0))

    def save_position(mid: MidEpoch) -> None:
        save_mid_epoch(mid, info, lambda done, position: _save_last(run, done, None, position))

    with GracefulStop(run.logger) as stop:
        for epoch in range(run.start_epoch, args.epochs + 1):
            if run.state.finished:
                break
            resume, run.resume = run.resume, None
            out = train_one_epoch(train_model, run.loader, run.optimizer, run.scheduler,
                                  run.scaler, step, device=info.device, amp=run.amp,
                                  accum_steps=args.accum_steps, guard=guard, stop=stop,
                                  epoch=epoch, desc=f"epoch {epoch}/{args.epochs}",
                                  is_main=info.is_main, max_steps=args.max_steps_per_epoch,
                                  info=info, resume=resume, checkpoint=save_position,
                                  save_every_s=60 * args.save_every_minutes)
            if out["stopped"]:
                stop.stop_run(run.last_path, out["position"].where(spe), command, run.logger,
                              info.is_main)
            if args.scheduler == "hyperiqa":
                reset_moments(run.optimizer)  # HyperIQA's solver rebuilds Adam after every epoch
            _finish_epoch(run, args, info, epoch, out, clock)
            if not run.state.finished and stop.any_rank_requested(info):
                stop.stop_run(run.last_path, f"after epoch {epoch}", command, run.logger,
                              info.is_main)
    return _final_test(run, args, info)


def _final_test(run: FinetuneRun, args: argparse.Namespace, info: DistInfo) -> dict:
    """Score the test split once with best_model.pkl and write results.json."""
    barrier(info)
    state = run.state
    if not state.best_epoch:
        raise MetricError("no epoch gave a finite validation SRCC, so there is no best model to "
                          "test; check the labels, lower the learning rate or train longer")
    best = load_model_for_eval(run.run_dir / BEST_NAME, info.device)
    test = _score_split(run, args, info, best.model, "test", args.test_patches)
    results = json_safe({
        "model_name": args.model_name, "dataset": run.data.key, "best_epoch": state.best_epoch,
        "selected_by": args.select,
        "epochs_run": state.epochs_run,
        "stopped_early": state.stopped_early, "train_time_s": state.train_time_s,
        "val": state.best_val, "test": test})
    if info.is_main:
        atomic_write_json(results, run.run_dir / RESULTS_NAME)
    run.logger.info("test (epoch %d, %s): SRCC %.4f PLCC %.4f KRCC %.4f RMSE %.4g n %d -> %s",
                    state.best_epoch, SELECTED_BY[args.select], test["srcc"], test["plcc"],
                    test["krcc"], test["rmse"], test["n"], run.run_dir / RESULTS_NAME)
    return results


def _spread(values: list[float]) -> dict:
    """Median and spread of a metric over repeats."""
    return {"median": statistics.median(values), "mean": statistics.fmean(values),
            "std": statistics.pstdev(values), "min": min(values), "max": max(values)}


def run(args: argparse.Namespace, info: DistInfo, command: str) -> dict:
    """One run, or --repeats runs NAME_r{i} with split_seed+i and seed+i and a summary JSON."""
    args.model_name = args.model_name or f"swin_{args.model_size}_{dataset_label(args.dataset)}"
    if args.repeats <= 1:
        return finetune(args, info, command)
    runs = []
    for i in range(args.repeats):
        sub = copy.copy(args)
        sub.split_seed, sub.seed = args.split_seed + i, args.seed + i
        sub.model_name = f"{args.model_name}_r{i}"
        result = finetune(sub, info, command)
        runs.append({"model_name": sub.model_name, "split_seed": sub.split_seed, "seed": sub.seed,
                     "test_srcc": result["test"]["srcc"], "test_plcc": result["test"]["plcc"]})
    summary = {"model_name": args.model_name, "repeats": args.repeats, "runs": runs}
    for key in ("test_srcc", "test_plcc"):
        values = [r[key] for r in runs if r[key] is not None]
        summary[key] = _spread(values) if values else None
    if info.is_main:
        atomic_write_json(summary, Path(args.output_dir) / f"{args.model_name}_repeats.json")
        logger = setup_logger(args.model_name, args.log_dir, info.is_main)
        logger.info("%d repeats: test SRCC %s, PLCC %s", args.repeats, summary["test_srcc"],
                    summary["test_plcc"])
    return summary
