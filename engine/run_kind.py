"""The two kinds of run folder (fine-tuning, pretraining): how to tell them apart, and the one
message for a run or train state of the wrong kind (--resume of either stage, test_swin.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import CheckpointError

LAST_STATE_NAME = "last.pkl"
PRETRAIN_STAGE = "qualiclip_pretrain"  # the "stage" of a pretraining run's checkpoint config


@dataclass(frozen=True)
class RunKind:
    """A stage's run folder: the script that writes it, its config file and what to use of it."""

    name: str
    script: str
    config_name: str
    product: str  # glob of the file other stages use
    use: str  # how another script uses `product`

    def product_in(self, folder: Path) -> Path:
        """The product file in `folder` (its pattern with <size> when not written yet)."""
        found = sorted(folder.glob(self.product))
        return found[0] if found else folder / self.product.replace("*", "<size>")


FINETUNE = RunKind("fine-tuning (Stage 2)", "train_swin.py", "finetune_config.json",
                   "best_model.pkl", "score it with test_swin.py --model_path")
PRETRAIN = RunKind("pretraining (Stage 1)", "pretrain_qualiclip.py", "pretrain_config.json",
                   "swin_*_qualiclip_pretrained.pkl",
                   "fine-tune from it with train_swin.py --pretrained_encoder")
RUN_KINDS = (FINETUNE, PRETRAIN)


def kind_of_folder(folder: Path) -> RunKind | None:
    """The kind of run whose config file `folder` holds, or None."""
    return next((kind for kind in RUN_KINDS if (folder / kind.config_name).is_file()), None)


def kind_of_config(config: dict) -> RunKind:
    """The kind of run that wrote a train state, from the config stored in it."""
    return PRETRAIN if config.get("stage") == PRETRAIN_STAGE else FINETUNE


def wrong_kind_message(path: Path, found: RunKind, wanted: str) -> str:
    """One line: `path` (a run folder or its train state) is of kind `found`, not `wanted`; how
    to resume it, or how to use what it produced."""
    folder = path.parent if path.is_file() else path
    subject = (f"{path} is the train state of a {found.name} run" if path.is_file()
               else f"{path} is a {found.name} run")
    return (f"{subject} of {found.script}, not {wanted}; resume it with {found.script} --resume "
            f"{folder}, or {found.use} {found.product_in(folder)}")


def resume_state(resume: str | None, run_dir: Path, expected: RunKind) -> Path | None:
    """The train state --resume points at (None: start a new run), after checking that its
    folder is a run of the `expected` kind; the error names the folder's kind and what to do."""
    if resume is None:
        return None
    path = run_dir if resume == "auto" else Path(resume)
    folder = path if path.is_dir() or not path.suffix else path.parent
    found = kind_of_folder(folder)
    if found is not None and found != expected:
        raise CheckpointError(
            f"--resume: {wrong_kind_message(folder, found, f'a {expected.name} run')}")
    state = folder / LAST_STATE_NAME if folder == path else path
    if state.is_file():
        return state
    if resume == "auto":
        return None  # nothing saved yet under this --model_name: a new run
    if found is None and folder == path:
        runs = sorted(p.parent.name for p in folder.glob(f"*/{LAST_STATE_NAME}"))
        inside = f"; run folders in it: {', '.join(runs[:5])}" if runs else ""
        raise CheckpointError(
            f"--resume {resume}: {folder} holds no run of either stage (no {LAST_STATE_NAME}, "
            f"{FINETUNE.config_name} or {PRETRAIN.config_name}){inside}; pass a run folder "
            f"(<output_dir>/<model_name>) of {expected.script}, or its {LAST_STATE_NAME}")
    raise CheckpointError(
        f"--resume {resume}: no train state found at {state} (expected a {LAST_STATE_NAME} "
        "written by an earlier run, or use a bare --resume with the same --model_name)")
