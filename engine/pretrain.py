"""Stage 1: QualiCLIP pretraining of the Swin encoder (data, step, checkpoints, epoch loop)."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, DistributedSampler

from data.degradations import degrade_levels, parse_distortions
from data.images import ImageCache, ResizePolicy
from data.iqa_dataset import UnlabeledPairDataset, list_images
from data.registry import canonical_key, drop_missing, read_rows, resize_policy
from data.rows import DatasetError
from engine.checkpoint import CheckpointError, atomic_save, check_writable
from engine.cli import save_args
from engine.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    check_shared_folder,
    cleanup,
    init_distributed,
    reduce_mean,
    wrap_ddp,
)
from engine.loop import StepOutput, to_device_images, train_one_epoch, training_loader
from engine.optim import (
    build_optimizer,
    build_scheduler,
    optimizer_steps_per_epoch,
    param_groups,
)
from engine.resume_check import check_resume_flags, schedule_change_note
from engine.runlog import MetricsJournal, setup_logger
from engine.runtime import (
    compile_or_eager,
    configure_backends,
    count_parameters,
    make_grad_scaler,
    resolve_amp,
    seed_everything,
)
from engine.train_state import (
    LAST_STATE_NAME,
    GracefulStop,
    NonFiniteGuard,
    all_rank_rngs,
    load_train_state,
    resolve_resume_path,
    save_train_state,
)
from losses import LossTerms, qualiclip_full_loss, qualiclip_simplified_loss
from models import clip_anchors
from models.pretrain_heads import ClipQualityHead, ScalarQualityHead
from models.pretrain_model import QualityPretrainModel, make_encoder_checkpoint
from models.swin_encoder import build_encoder, canonical_model_size

RUN_PREFIX = "qualiclip_pretrain"
CONFIG_NAME = "pretrain_config.json"
METRICS_NAME = "metrics.jsonl"
LOSS_FLAGS = ("margin", "consistency_weight", "ranking_weight", "consistency_margin")
# Flags recorded in every checkpoint's config (with model size, distortions, prompts, data).
CONFIG_FLAGS = ("loss_type", "crop_size", "num_levels", "train_prompt_pairs", "margin",
                "consistency_margin", "consistency_weight", "ranking_weight", "epochs",
                "batch_size", "lr", "weight_decay", "warmup_epochs", "seed")


def epoch_checkpoint_name(model_size: str, epoch: int) -> str:
    """File name of the encoder checkpoint written after `epoch`."""
    return f"swin_{model_size}_epoch{epoch}.pkl"


def final_checkpoint_name(model_size: str) -> str:
    """File name of the encoder checkpoint written at the end of pretraining."""
    return f"swin_{model_size}_qualiclip_pretrained.pkl"


def pretrain_images(
    args: argparse.Namespace, logger: logging.Logger
) -> tuple[list[Path], ResizePolicy, str]:
    """Unlabelled images: every image of --image_dir, or the TRAINING split of --dataset.

    Training-split images missing on disk stop the run before training, unless --skip_missing.
    """
    if args.image_dir:
        return list_images(args.image_dir), ResizePolicy("none"), f"folder {args.image_dir}"
    key = canonical_key(args.dataset)
    rows = [row for row in read_rows(key, args.data_root, split="official") if row.split == "train"]
    paths = sorted({row.path for row in drop_missing(key, rows, args.skip_missing, logger)})
    if not paths:
        raise DatasetError(
            f"{key} under {args.data_root} has no training-split images to use; check "
            "--data_root, or pass --image_dir for a folder of unlabelled images"
        )
    return paths, resize_policy(key), f"{key} training split"


def build_pretrain_model(
    args: argparse.Namespace, pairs: Sequence[tuple[str, str]]
) -> QualityPretrainModel:
    """Swin encoder plus the head of --loss_type (scalar, or CLIP prompt anchors)."""
    encoder = build_encoder(
        args.model_size, imagenet_weights=args.imagenet_weights, img_size=args.crop_size
    )
    encoder.set_grad_checkpointing(args.grad_checkpointing)
    if args.loss_type == "simplified":
        head = ScalarQualityHead(encoder.num_features)
    else:
        anchors, logit_scale = clip_anchors.embed_prompt_pairs(
            pairs, clip_model=args.clip_model, clip_weights=args.clip_weights
        )
        head = ClipQualityHead(encoder.num_features, anchors, logit_scale, prompt_pairs=pairs)
    return QualityPretrainModel(encoder, head)


class QualiCLIPStep:
    """One batch: degrade both crops on the device, score every level, QualiCLIP loss.

    Each image gets one distortion type drawn from `distortions`; its two crops share the type
    and the random choices of every level. Randomness comes from generators seeded by `seed`.
    """

    def __init__(self, args: argparse.Namespace, distortions: Sequence[str],
                 device: torch.device, seed: int) -> None:
        self.distortions = list(distortions)
        self.num_levels = args.num_levels
        self.loss_type = args.loss_type
        self.train_pairs = args.train_prompt_pairs
        self.loss_kwargs = {key: getattr(args, key) for key in LOSS_FLAGS}
        self.device = device
        self.type_generator = torch.Generator().manual_seed(seed)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def degrade(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 2, 3, H, W) float crops -> (2, B, L+1, 3, H, W), the same type per image pair."""
        b = crops.shape[0]
        picks = torch.randint(len(self.distortions), (b,), generator=self.type_generator)
        names = [self.distortions[i] for i in picks.tolist()]
        stack = crops.transpose(0, 1).flatten(0, 1)  # (2B, 3, H, W): all first crops, then seconds
        # Degradations run in float32 whatever the autocast of the model.
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            levels = degrade_levels(stack, names + names, self.num_levels,
                                    generator=self.generator, pair_ids=list(range(b)) * 2)
        return levels.view(2, b, *levels.shape[1:])

    def __call__(self, model: torch.nn.Module, batch: dict) -> StepOutput:
        """QualiCLIP loss of one batch of crop pairs."""
        crops = to_device_images(batch["image"], self.device)  # (B, 2, 3, H, W)
        levels = self.degrade(crops)  # (2, B, L+1, 3, H, W)
        x = levels.flatten(0, 2).contiguous(memory_format=torch.channels_last)
        out = model(x)
        lead = levels.shape[:3]  # (2, B, L+1)
        if self.loss_type == "simplified":
            scores = out["score"].float().view(lead)
            terms: LossTerms = qualiclip_simplified_loss(scores[0], scores[1], **self.loss_kwargs)
        else:
            sims = out["sims"].float().view(*lead, *out["sims"].shape[1:])
            sims = sims[..., : self.train_pairs, :]  # (2, B, L+1, P_train, 2)
            terms = qualiclip_full_loss(sims[0], sims[1], **self.loss_kwargs)
        logs = {"consistency": terms.consistency.detach(), "ranking": terms.ranking.detach()}
        return StepOutput(loss=terms.total, logs=logs)


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
        "stage": "qualiclip_pretrain",
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
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
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

    @property
    def last_path(self) -> Path:
        """The train state written after every epoch."""
        return self.run_dir / LAST_STATE_NAME

    def summary(self, epochs_done: int, final: Path | None = None, exit_code: int = 0) -> dict:
        """What run_pretraining returns (exit_code 128 + signal number after a stop)."""
        metrics = MetricsJournal(self.run_dir / METRICS_NAME).read()
        return {"run_dir": str(self.run_dir), "stopped": exit_code != 0, "exit_code": exit_code,
                "epochs_done": epochs_done, "final_checkpoint": str(final) if final else None,
                "metrics": metrics}


def setup_run(args: argparse.Namespace, info: DistInfo) -> PretrainRun:
    """Check flags and outputs, then build data, model, optimizer and schedule (and resume)."""
    distortions = parse_distortions(args.distortions)
    pairs = clip_anchors.check_prompt_pairs(
        args.prompt_pairs or clip_anchors.QUALICLIP_PROMPT_PAIRS)
    if args.loss_type == "full" and args.train_prompt_pairs > len(pairs):
        raise ValueError(f"--train_prompt_pairs {args.train_prompt_pairs} exceeds the {len(pairs)} "
                         f"prompt pairs; use at most {len(pairs)}")
    name = _run_name(args, info)
    run_dir = Path(args.output_dir) / name
    if info.is_main:  # fail in the first second, not after an epoch, when outputs cannot be written
        check_writable(run_dir)
        check_writable(args.log_dir)
    check_shared_folder(run_dir, info)
    logger = setup_logger(name, args.log_dir, info.is_main)
    state_path = resolve_resume_path(args.resume, run_dir)
    saved = check_resume_flags(args, state_path, CONFIG_NAME, logger)
    if state_path is None and (run_dir / LAST_STATE_NAME).is_file():
        raise CheckpointError(f"{run_dir} already holds a run ({LAST_STATE_NAME}); add --resume to "
                              "continue it or choose another --model_name")
    seed_everything(args.seed + info.rank)
    configure_backends(info.device)
    amp = resolve_amp(args.amp, info.device)

    paths, policy, source = pretrain_images(args, logger)
    dataset = UnlabeledPairDataset(paths, policy, ImageCache(args.cache_dir),
                                   crop_size=args.crop_size, seed=args.seed)
    loader = _make_loader(dataset, args, info, logger)
    config = _run_config(args, distortions, pairs, source, len(paths))
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
                      scheduler, scaler, amp, start_epoch=1)
    if state_path is not None:
        state = load_train_state(state_path, model, optimizer, scheduler, scaler, info.rank)
        run.start_epoch = state["epoch"] + 1
        logger.info("resumed from %s after epoch %d", state_path, state["epoch"])
        if saved.get("epochs", args.epochs) != args.epochs:
            logger.warning(schedule_change_note(optimizer, scheduler, "cosine", saved["epochs"],
                                                args.epochs, state["epoch"]))
    if info.is_main:
        MetricsJournal(run_dir / METRICS_NAME).truncate_from(run.start_epoch)  # redo, never twice
        save_args(args, run_dir / CONFIG_NAME, extra={
            "run_name": name, "run_dir": str(run_dir), "config": config, "amp": amp,
            "world_size": info.world_size, "resumed_from": str(state_path) if state_path else None,
        })
    logger.info("QualiCLIP pretraining %s: Swin %s (%d parameters), %d images (%s), %d steps per "
                "epoch, %s, amp %s; loss %s, distortions %s", name, model.encoder.model_size,
                count_parameters(model), len(paths), source, steps_per_epoch, info.device, amp,
                args.loss_type, ", ".join(distortions))
    return run


def _epoch_record(epoch: int, result: dict, lr: float, info: DistInfo) -> dict:
    """metrics.jsonl record of one epoch: losses averaged, images and skips summed over ranks."""
    values = torch.tensor([result["loss"], result.get("consistency", math.nan),
                           result.get("ranking", math.nan), result["images"],
                           result["skipped_batches"]], dtype=torch.float64)
    loss, consistency, ranking, images, skipped = reduce_mean(values, info).tolist()
    return {"epoch": epoch, "loss": loss, "consistency": consistency, "ranking": ranking,
            "lr": lr, "time_s": round(result["time_s"], 3), "steps": result["steps"],
            "images": round(images * info.world_size),
            "skipped_batches": round(skipped * info.world_size)}


def _save_epoch(run: PretrainRun, args: argparse.Namespace, epoch: int, record: dict,
                rank_rngs: list[dict] | None) -> None:
    """Main process: epoch encoder checkpoint, metrics line, last.pkl, then the log line."""
    size = run.model.encoder.model_size
    if args.save_every and epoch % args.save_every == 0:
        atomic_save(make_encoder_checkpoint(run.model, run.config, epoch, record),
                    run.run_dir / epoch_checkpoint_name(size, epoch))
    # metrics before last.pkl: a kill in between redoes this epoch and its line is replaced
    MetricsJournal(run.run_dir / METRICS_NAME).append(record)
    save_train_state(run.last_path, run.model, run.optimizer, run.scheduler, run.scaler, epoch,
                     {"run_name": run.name}, run.config, size, rank_rngs)
    skipped = record["skipped_batches"]
    run.logger.info(
        "epoch %d | loss %.4f | consistency %.4f | ranking %.4f | lr %.2e | time %.1fs%s", epoch,
        record["loss"], record["consistency"], record["ranking"], record["lr"], record["time_s"],
        f" | skipped {skipped} batches" if skipped else "")


def _stopped(run: PretrainRun, stop: GracefulStop, epochs_done: int, command: str | None,
             info: DistInfo) -> dict:
    """After SIGTERM/SIGINT: say how to resume, return the summary with exit code 128 + signal."""
    if info.is_main and run.last_path.is_file():
        run.logger.warning("%s; for example: %s --resume %s",
                           stop.resume_message(run.last_path, epochs_done),
                           command or "python pretrain_qualiclip.py <same flags>", run.last_path)
    elif info.is_main:
        run.logger.warning("stopped by %s before the first epoch ended: nothing to resume, run the "
                           "command again", stop.signal_name)
    signum = signal.Signals[stop.signal_name] if stop.signal_name else signal.SIGTERM
    return run.summary(epochs_done, exit_code=128 + int(signum))


def run_pretraining(args: argparse.Namespace, command: str | None = None) -> dict:
    """Run (or resume) QualiCLIP pretraining; returns the run folder, final checkpoint, metrics.

    `command` (the command line) is quoted in the message that tells how to resume after a stop.
    """
    info = init_distributed(args.device)
    try:
        return _pretrain(args, info, command)
    finally:
        cleanup(info)


def _pretrain(args: argparse.Namespace, info: DistInfo, command: str | None) -> dict:
    """Epoch loop of run_pretraining inside the process group."""
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
    with GracefulStop(run.logger) as stop:
        for epoch in range(run.start_epoch, args.epochs + 1):
            step_fn = QualiCLIPStep(args, run.distortions, info.device,
                                    seed=_stream_seed(args.seed, epoch, info.rank))
            result = train_one_epoch(
                ddp_model, run.loader, run.optimizer, run.scheduler, run.scaler, step_fn,
                device=info.device, amp=run.amp, accum_steps=args.accum_steps, guard=guard,
                stop=stop, epoch=epoch, desc=f"pretrain {epoch}/{args.epochs}",
                is_main=info.is_main, max_steps=args.max_steps_per_epoch, info=info,
            )
            if result["stopped"]:  # the partial epoch is not saved: a resume redoes it whole
                run.logger.warning("stopped during epoch %d, which a resume redoes", epoch)
                return _stopped(run, stop, epoch - 1, command, info)
            record = _epoch_record(epoch, result, run.optimizer.param_groups[0]["lr"], info)
            rank_rngs = all_rank_rngs(info)
            if info.is_main:
                _save_epoch(run, args, epoch, record, rank_rngs)
            guard.last_checkpoint = str(run.last_path)
            barrier(info)
            if stop.any_rank_requested(info):
                return _stopped(run, stop, epoch, command, info)

    final = run.run_dir / final_checkpoint_name(run.model.encoder.model_size)
    if info.is_main:
        metrics = MetricsJournal(run.run_dir / METRICS_NAME).read()
        atomic_save(make_encoder_checkpoint(run.model, run.config, args.epochs,
                                            metrics[-1] if metrics else {}), final)
        state = "pretrained" if args.epochs else "untrained (--epochs 0)"
        run.logger.info("%s encoder saved to %s (zero-shot: test_swin.py --model_path %s; "
                        "fine-tuning: train_swin.py --pretrained_encoder %s)", state, final, final,
                        final)
    barrier(info)
    return run.summary(args.epochs, final=final)
