"""Cost of one mid-epoch save of last.pkl (weights, AdamW moments, schedule, RNG streams and the
epoch's position) against the training step it follows: the figures behind --save_every_minutes.

Example (the figures of docs/PERFORMANCE.md):
    python benchmarks/save_bench.py --device cpu --model_sizes micro mini
Each stage trains `--steps` batches of its size's default shape through engine.loop with a save
after every step but the last, written as a run writes it (torch.save, fsync, rename) into
--output_dir; the JSON goes to stdout.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: make the project's packages importable
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402 (after the path fix)

from benchmarks.pretrain_bench import pair_batch, pretrain_args  # noqa: E402
from benchmarks.train_bench import build_finetune_model, finetune_args, synthetic_batch  # noqa: E402
from common.cli import SAVE_EVERY_MINUTES, build_parser  # noqa: E402
from common.distributed import DistInfo  # noqa: E402
from common.runtime import make_grad_scaler, resolve_device  # noqa: E402
from data.degradations import parse_distortions  # noqa: E402
from engine.epoch_state import MidEpoch, save_mid_epoch  # noqa: E402
from engine.finetune import finetune_param_groups, l1_step  # noqa: E402
from engine.loop import train_one_epoch  # noqa: E402
from engine.optim import build_optimizer, build_scheduler, param_groups  # noqa: E402
from engine.pretrain_setup import QualiCLIPStep, build_pretrain_model  # noqa: E402
from engine.protocols import SIZE_DEFAULTS, learning_rates  # noqa: E402
from engine.train_state import save_train_state  # noqa: E402
from models.clip_anchors import QUALICLIP_PROMPT_PAIRS  # noqa: E402


def _finetune_parts(size: str, device: torch.device) -> tuple:
    """Swin-HyperIQA, its optimizer, a step function and a batch of the size's default shape."""
    batch_size = int(SIZE_DEFAULTS.get(size, {}).get("batch_size", 32))
    args = finetune_args(size, batch_size, 1, "off", device, False)
    model = build_finetune_model(args, device)
    encoder_lr, hyper_lr = learning_rates(args)
    optimizer = build_optimizer(finetune_param_groups(model, encoder_lr, hyper_lr,
                                                      args.weight_decay, args.lda_group,
                                                      args.decay_all), device, kind=args.optimizer)
    batch = synthetic_batch(batch_size, 1, args.crop_size, device)  # one crop per sample
    return model, optimizer, l1_step(device), batch


def _pretrain_parts(size: str, device: torch.device) -> tuple:
    """The QualiCLIP model, its optimizer, step function and a batch of default shape."""
    args = pretrain_args(size, 8, 5, "blur,jpeg,noise,brightness", "off", device, False)
    model = build_pretrain_model(args, QUALICLIP_PROMPT_PAIRS).to(device)
    optimizer = build_optimizer(param_groups({"encoder": (model.encoder, args.lr),
                                              "head": (model.head, args.lr)},
                                             args.weight_decay), device)
    step = QualiCLIPStep(args, parse_distortions(args.distortions), device, seed=0)
    return model, optimizer, step, pair_batch(args.batch_size, args.crop_size, device)


STAGES: dict[str, Callable[[str, torch.device], tuple]] = {
    "finetune": _finetune_parts, "pretrain": _pretrain_parts}


def bench_save(stage: str, size: str, device: torch.device, steps: int, folder: Path) -> dict:
    """Seconds of one mid-epoch save and of one training step, the file size, their ratio."""
    model, optimizer, step_fn, batch = STAGES[stage](size, device)
    scheduler = build_scheduler(optimizer, "cosine", 1, steps)
    scaler = make_grad_scaler(device, "off")
    path = folder / f"{stage}_{size}_last.pkl"
    info = DistInfo(0, 1, 0, device, True)
    save_s: list[float] = []

    def checkpoint(mid: MidEpoch) -> None:
        start = time.perf_counter()
        save_mid_epoch(mid, info, lambda done, position: save_train_state(
            path, model, optimizer, scheduler, scaler, done, {}, {}, size, position=position))
        save_s.append(time.perf_counter() - start)

    out = train_one_epoch(model, [batch] * steps, optimizer, scheduler, scaler, step_fn,
                          device=device, amp="off", accum_steps=1, guard=None, stop=None,
                          epoch=1, desc="bench", is_main=False, checkpoint=checkpoint,
                          save_every_s=1e-9)  # at every group boundary after a step
    step_s = (out["time_s"] - sum(save_s)) / steps
    save = statistics.median(save_s)
    return {"stage": stage, "model_size": size, "save_s": round(save, 4),
            "save_s_all": [round(s, 4) for s in save_s], "file_mb": round(
                path.stat().st_size / 2**20, 2), "step_s": round(step_s, 4),
            "save_in_steps": round(save / step_s, 3),
            f"share_of_{SAVE_EVERY_MINUTES:g}_minutes": round(save / (60 * SAVE_EVERY_MINUTES), 5)}


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse flags, time the saves of each stage and size, print the figures as JSON."""
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model_sizes", nargs="+", default=["micro", "mini"])
    parser.add_argument("--stages", nargs="+", choices=tuple(STAGES), default=list(STAGES))
    parser.add_argument("--steps", type=int, default=4, help="steps per stage; saves after all "
                        "but the last")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--output_dir", default=None,
                        help="where the saves go (default: a temporary folder)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(dir=args.output_dir) as folder:
        figures = [bench_save(stage, size, device, args.steps, Path(folder))
                   for size in args.model_sizes for stage in args.stages]
    print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
