"""Stage 1: QualiCLIP pretraining of the Swin encoder (run setup, checkpoints, epoch loop)."""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from common.checkpoint import atomic_save
from common.cli import save_args
from common.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    reduce_mean,
    wrap_ddp,
)
from common.errors import CheckpointError, InvalidValueError, RunStopped
from common.runlog import MetricsJournal, RunClock
from common.runtime import (
    compile_or_eager,
    count_parameters,
    make_grad_scaler,
)
from common.vocabulary import EXIT_COLLAPSE
from data.degradations import parse_distortions
from data.images import ImageCache
from data.iqa_dataset import UnlabeledPairDataset
from engine.epoch_state import MidEpoch, ResumableSampler, position_for_rank, save_mid_epoch
from engine.loop import train_one_epoch, training_loader
from engine.optim import (
    build_optimizer,
    build_scheduler,
    optimizer_steps_per_epoch,
    param_groups,
)
from engine.pretrain_monitor import (
    ZeroShotValidation,
    build_validation,
    collapse_message,
    persistent_collapse,
)
from engine.pretrain_setup import (
    PretrainImages,
    QualiCLIPStep,
    build_pretrain_model,
    pretrain_images,
    resolve_size_defaults,
)
from engine.resume_check import note_epochs_change
from engine.run_kind import LAST_STATE_NAME, PRETRAIN, PRETRAIN_STAGE
from engine.run_setup import open_run
from engine.train_state import (
    GracefulStop,
    NonFiniteGuard,
    all_rank_rngs,
    load_train_state,
    save_train_state,
)
from models import clip_anchors
from models.pretrain_model import QualityPretrainModel, make_encoder_checkpoint
from models.swin_encoder import canonical_model_size

RUN_PREFIX = "qualiclip_pretrain"
# warnings of the data checks, made before the run's log exists (stderr)
CHECKS_LOGGER = logging.getLogger(__name__)
CONFIG_NAME = PRETRAIN.config_name
METRICS_NAME = "metrics.jsonl"
# Flags recorded in every checkpoint's config (with model size, distortions, prompts, data).
CONFIG_FLAGS = ("loss_type", "score_activation", "pooling", "crop_size", "num_levels",
                "train_prompt_pairs", "margin", "val_distortions", "val_images",
                "consistency_margin", "consistency_form", "consistency_weight", "ranking_weight",
                "epochs", "batch_size", "views_per_image", "lr", "weight_decay", "warmup_epochs",
                "seed")


def epoch_checkpoint_name(model_size: str, epoch: int) -> str:
    """File name of the encoder checkpoint written after `epoch`."""
    return f"swin_{model_size}_epoch{epoch}.pkl"


def best_checkpoint_name(model_size: str) -> str:
    """File name of the encoder checkpoint of the epoch with the best label-free validation."""
    return f"swin_{model_size}_qualiclip_best.pkl"


def final_checkpoint_name(model_size: str) -> str:
    """File name of the encoder checkpoint written at the end of pretraining."""
    return f"swin_{model_size}_qualiclip_pretrained.pkl"


def _stream_seed(*values: int) -> int:
    """A 63-bit seed from several integers (seed, epoch, rank)."""
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))


def _run_name(args: argparse.Namespace, info: DistInfo) -> str:
    """--model_name, the folder of a --resume PATH, or a fresh timestamped name (rank 0's)."""
    if args.model_name:
        return args.model_name
    if args.resume == "auto":
        raise CheckpointError(
            "a bare --resume needs --model_name to find <output_dir>/<model_name>/last.pkl; pass "
            "--model_name or --resume PATH/TO/last.pkl"
        )
    if args.resume is not None:
        resume = Path(args.resume)
        return (resume if resume.is_dir() else resume.parent).name
    return broadcast_object(f"{RUN_PREFIX}_{time.strftime('%Y%m%d_%H%M%S')}", info)


def _run_config(args: argparse.Namespace, distortions: list[str], pairs: Sequence[tuple[str, str]],
                source: str, n_images: int) -> dict:
    """The JSON-able description of the run stored in every checkpoint."""
    full = args.loss_type == "full"
    return {
        "stage": PRETRAIN_STAGE,
        "model_size": canonical_model_size(args.model_size),
        **{flag: getattr(args, flag) for flag in CONFIG_FLAGS},
        "distortions": distortions,
        "prompt_pairs": [list(pair) for pair in pairs],
        "clip_model": args.clip_model if full else None,
        "clip_weights": args.clip_weights if full else None,
        "source": source,
        "n_images": n_images,
    }


def _make_loader(dataset: UnlabeledPairDataset, args: argparse.Namespace, info: DistInfo,
                 logger: logging.Logger) -> DataLoader:
    """Shuffled loader (order fixed by --seed and the epoch); each process reads its share."""
    sampler = ResumableSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                               shuffle=True, seed=args.seed)
    drop_last = len(sampler) >= args.batch_size
    if not drop_last:
        logger.warning("only %d image(s) per process, fewer than --batch_size %d: one smaller "
                       "batch per epoch", len(sampler), args.batch_size)
    return training_loader(dataset, sampler, args.batch_size, args.num_workers, info.device,
                           drop_last)


@dataclass
class PretrainRun:
    """A pretraining run set up and ready for its first (or resumed) epoch."""

    name: str
    run_dir: Path
    logger: logging.Logger
    config: dict
    distortions: list[str]
    model: QualityPretrainModel
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR
    scaler: torch.amp.GradScaler
    amp: str
    start_epoch: int
    steps_per_epoch: int
    validation: ZeroShotValidation | None = None
    resume: MidEpoch | None = None  # where a run saved inside an epoch continues

    @property
    def last_path(self) -> Path:
        """The train state written after every epoch."""
        return self.run_dir / LAST_STATE_NAME

    def summary(self, epochs_done: int, final: Path) -> dict:
        """What a finished pretraining returns: run folder, final checkpoint, metrics."""
        metrics = MetricsJournal(self.run_dir / METRICS_NAME).read()
        return {"run_dir": str(self.run_dir), "epochs_done": epochs_done,
                "final_checkpoint": str(final), "metrics": metrics}


def setup_run(args: argparse.Namespace, info: DistInfo) -> PretrainRun:
    """Check flags and outputs, then build data, model, optimizer and schedule (and resume)."""
    filled = resolve_size_defaults(args)
    distortions = parse_distortions(args.distortions)
    pairs = clip_anchors.check_prompt_pairs(
        args.prompt_pairs or clip_anchors.QUALICLIP_PROMPT_PAIRS)
    if args.loss_type == "full" and args.train_prompt_pairs > len(pairs):
        raise InvalidValueError(f"--train_prompt_pairs {args.train_prompt_pairs} exceeds the "
                                f"{len(pairs)} prompt pairs; use at most {len(pairs)}")
    folder = open_run(args, info, _run_name(args, info), kind=PRETRAIN,
                      markers=(LAST_STATE_NAME,), seed=args.seed + info.rank,
                      checks=lambda: pretrain_images(args, CHECKS_LOGGER))
    name, run_dir, logger, amp = folder.name, folder.run_dir, folder.logger, folder.amp
    state_path = folder.resume_path
    images: PretrainImages = folder.checked
    cache = ImageCache(args.cache_dir)
    dataset = UnlabeledPairDataset(images.train, images.policy, cache, crop_size=args.crop_size,
                                   seed=args.seed, views=args.views_per_image)
    loader = _make_loader(dataset, args, info, logger)
    config = _run_config(args, distortions, pairs, images.source, len(images.train))
    val_distortions = parse_distortions(args.val_distortions) if args.val_distortions else []
    validation = build_validation(images.val, images.policy, cache, val_distortions, args,
                                  info.device, logger) if info.is_main else None
    model = build_pretrain_model(args, pairs).to(info.device, memory_format=torch.channels_last)
    groups = param_groups({"encoder": (model.encoder, args.lr), "head": (model.head, args.lr)},
                          args.weight_decay)
    optimizer = build_optimizer(groups, info.device)
    steps_per_epoch = optimizer_steps_per_epoch(len(loader), args.accum_steps,
                                                args.max_steps_per_epoch)
    # --epochs 0 never steps: the horizon of one epoch only keeps the scheduler well defined
    scheduler = build_scheduler(optimizer, "cosine", max(args.epochs, 1), steps_per_epoch,
                                args.warmup_epochs)
    scaler = make_grad_scaler(info.device, amp)
    run = PretrainRun(name, run_dir, logger, config, distortions, model, loader, optimizer,
                      scheduler, scaler, amp, start_epoch=1, steps_per_epoch=steps_per_epoch,
                      validation=validation)
    if state_path is not None:
        state = load_train_state(state_path, model, optimizer, scheduler, scaler, info.rank,
                                 expected=PRETRAIN)
        run.start_epoch = state["epoch"] + 1
        if state["position"] is not None:
            run.resume = position_for_rank(state["position"], state_path, info)
        logger.info("resumed from %s %s", state_path, run.resume.where(steps_per_epoch)
                    if run.resume else f"after epoch {state['epoch']}")
        note_epochs_change(folder.saved_args, args.epochs, optimizer, scheduler, "cosine",
                           state["epoch"], logger)
    if info.is_main:
        MetricsJournal(run_dir / METRICS_NAME).truncate_from(run.start_epoch)  # redo, never twice
        save_args(args, run_dir / CONFIG_NAME, extra={
            "run_name": name, "run_dir": str(run_dir), "config": config, "amp": amp,
            "world_size": info.world_size, "resumed_from": str(state_path) if state_path else None,
        })
    logger.info("QualiCLIP pretraining %s: Swin %s (%d parameters), %d images (%s), %d steps per "
                "epoch, %s, amp %s; loss %s, distortions %s", name, model.encoder.model_size,
                count_parameters(model), len(images.train), images.source, steps_per_epoch,
                info.device, amp, args.loss_type, ", ".join(distortions))
    if filled:
        logger.info("defaults of model size %s: %s", model.encoder.model_size,
                    ", ".join(f"--{key} {value:g}" for key, value in filled.items()))
    return run


def _epoch_record(epoch: int, result: dict, lr: float, info: DistInfo) -> dict:
    """metrics.jsonl record of one epoch: losses and collapse signals averaged, images and skips
    summed over ranks."""
    names = ("loss", "consistency", "ranking", "rank_accuracy", "level_spread", "images",
             "skipped_batches")
    values = torch.tensor([result.get(key, math.nan) for key in names], dtype=torch.float64)
    record = dict(zip(names, reduce_mean(values, info).tolist(), strict=True))
    for key in ("images", "skipped_batches"):
        record[key] = round(record[key] * info.world_size)
    return {"epoch": epoch, **record, "lr": lr, "time_s": round(result["time_s"], 3),
            "steps": result["steps"]}


def _validate(run: PretrainRun, record: dict) -> bool:
    """Add the label-free validation to the epoch record; True when it is the best so far."""
    if run.validation is None:
        return False
    record.update(run.validation.evaluate(run.model))
    earlier = [r.get("val_srcc") for r in MetricsJournal(run.run_dir / METRICS_NAME).read()
               if r["epoch"] < record["epoch"]]
    return all(value is None or record["val_srcc"] > value for value in earlier)


def _finish_epoch(run: PretrainRun, args: argparse.Namespace, epoch: int, record: dict,
                  rank_rngs: list[dict] | None, clock: RunClock) -> str | None:
    """Main process: validation, epoch and best checkpoints, metrics line, last.pkl, log line
    (with the run's time left); warns of a collapsed epoch and returns the collapse that
    --stop_on_collapse stops on (engine.pretrain_monitor.persistent_collapse), if any."""
    size = run.model.encoder.model_size
    if _validate(run, record):
        atomic_save(make_encoder_checkpoint(run.model, run.config, epoch, record),
                    run.run_dir / best_checkpoint_name(size))
    if args.save_every and epoch % args.save_every == 0:
        atomic_save(make_encoder_checkpoint(run.model, run.config, epoch, record),
                    run.run_dir / epoch_checkpoint_name(size, epoch))
    # metrics before last.pkl: a kill in between redoes this epoch and its line is replaced
    MetricsJournal(run.run_dir / METRICS_NAME).append(record)
    save_train_state(run.last_path, run.model, run.optimizer, run.scheduler, run.scaler, epoch,
                     {"run_name": run.name}, run.config, size, rank_rngs)
    skipped = record["skipped_batches"]
    val = f" | val SRCC {record['val_srcc']:.4f}" if "val_srcc" in record else ""
    run.logger.info(
        "epoch %d/%d | loss %.4f | consistency %.4f | ranking %.4f | rank acc %.3f | spread %.2e"
        "%s | lr %.2e | time %.1fs | %s%s", epoch, args.epochs, record["loss"],
        record["consistency"], record["ranking"], record["rank_accuracy"],
        record["level_spread"], val, record["lr"], record["time_s"],
        clock.eta(epoch * run.steps_per_epoch), f" | skipped {skipped} batches" if skipped else "")
    warning = collapse_message(record, args.margin)
    if warning:
        run.logger.warning("%s\n%s\n%s", "!" * 78, warning, "!" * 78)
    return persistent_collapse(MetricsJournal(run.run_dir / METRICS_NAME).read(), args.margin,
                               args.epochs)


def _validate_untrained(run: PretrainRun) -> None:
    """--epochs 0: the label-free validation of the untrained encoder and head as an epoch-0
    metrics line (the control that a pretrained run's validation SRCC is compared with)."""
    if run.validation is None:
        return
    record = {"epoch": 0, **run.validation.evaluate(run.model)}
    MetricsJournal(run.run_dir / METRICS_NAME).append(record)
    run.logger.info("untrained encoder: val SRCC %.4f (epoch 0, before any step)",
                    record["val_srcc"])


def _save_position(run: PretrainRun, info: DistInfo, mid: MidEpoch) -> None:
    """Every rank: last.pkl at `mid`, a point inside an epoch (rank 0 writes it)."""
    save_mid_epoch(mid, info, lambda done, position: save_train_state(
        run.last_path, run.model, run.optimizer, run.scheduler, run.scaler, done,
        {"run_name": run.name}, run.config, run.model.encoder.model_size, position=position))


def pretrain(args: argparse.Namespace, info: DistInfo, command: str) -> dict:
    """Run (or resume) QualiCLIP pretraining; returns the run folder, final checkpoint, metrics.

    `command` (the command line) is quoted in the message that tells how to resume after a stop.
    """
    run = setup_run(args, info)
    ddp_model = wrap_ddp(run.model, info)
    if args.compile:  # checkpoints save run.model, so their keys carry no compile prefix
        crops = args.batch_size * 2 * (args.num_levels + 1)
        example = torch.zeros(crops, 3, args.crop_size, args.crop_size, device=info.device)
        ddp_model = compile_or_eager(ddp_model, example.contiguous(
            memory_format=torch.channels_last), run.amp, run.logger)
    guard = NonFiniteGuard(skip=args.skip_nonfinite,
                           last_checkpoint=str(run.last_path) if run.start_epoch > 1 else None,
                           info=info)
    spe = run.steps_per_epoch
    clock = RunClock(args.epochs * spe,
                     (run.start_epoch - 1) * spe + (run.resume.steps if run.resume else 0))
    with GracefulStop(run.logger) as stop:
        for epoch in range(run.start_epoch, args.epochs + 1):
            step_fn = QualiCLIPStep(args, run.distortions, info.device,
                                    seed=_stream_seed(args.seed, epoch, info.rank))
            resume, run.resume = run.resume, None
            result = train_one_epoch(
                ddp_model, run.loader, run.optimizer, run.scheduler, run.scaler, step_fn,
                device=info.device, amp=run.amp, accum_steps=args.accum_steps, guard=guard,
                stop=stop, epoch=epoch, desc=f"pretrain {epoch}/{args.epochs}",
                is_main=info.is_main, max_steps=args.max_steps_per_epoch, info=info,
                resume=resume, checkpoint=lambda mid: _save_position(run, info, mid),
                save_every_s=60 * args.save_every_minutes,
            )
            if result["stopped"]:
                stop.stop_run(run.last_path, result["position"].where(spe), command,
                              run.logger, info.is_main)
            record = _epoch_record(epoch, result, run.optimizer.param_groups[0]["lr"], info)
            rank_rngs = all_rank_rngs(info)
            collapse = (_finish_epoch(run, args, epoch, record, rank_rngs, clock)
                        if info.is_main else None)
            guard.last_checkpoint = str(run.last_path)
            collapse = broadcast_object(collapse, info)
            if collapse and args.stop_on_collapse:
                message = f"stopped after epoch {epoch} (--stop_on_collapse): {collapse}"
                if info.is_main:
                    run.logger.error(message)
                # torchrun ends the other ranks as soon as one exits: no rank leaves before the
                # stop line is in the log, where the chain reads why the stage stopped
                barrier(info)
                raise RunStopped(message, EXIT_COLLAPSE)
            barrier(info)
            if stop.any_rank_requested(info):
                stop.stop_run(run.last_path, f"after epoch {epoch}", command, run.logger,
                              info.is_main)

    final = run.run_dir / final_checkpoint_name(run.model.encoder.model_size)
    if info.is_main and args.epochs == 0:
        _validate_untrained(run)
    if info.is_main:
        metrics = MetricsJournal(run.run_dir / METRICS_NAME).read()
        atomic_save(make_encoder_checkpoint(run.model, run.config, args.epochs,
                                            metrics[-1] if metrics else {}), final)
        state = "pretrained" if args.epochs else "untrained (--epochs 0)"
        run.logger.info("%s encoder saved to %s (zero-shot: test_swin.py --model_path %s; "
                        "fine-tuning: train_swin.py --pretrained_encoder %s)", state, final, final,
                        final)
    barrier(info)
    return run.summary(args.epochs, final)
