"""The report's settings: the flags that differ between the fine-tuning runs (main text), every
flag and the saved configs verbatim (appendix)."""

from __future__ import annotations

import json
from collections.abc import Callable

from engine.protocols import describe
from tools.markdown import section, table
from tools.rundata import MAIN_RUNS, RunData

APPENDIX_TITLE = "Appendix: every flag and the saved configs"
APPENDIX_ANCHOR = "#appendix-every-flag-and-the-saved-configs"


def _scheduler_reason(args: dict) -> str | None:
    return None if args.get("scheduler") == "step" else f"--scheduler {args.get('scheduler')}"


# Flags that take effect only with another flag: flag -> why it has no effect in a run with these
# flags (None: it takes effect). From engine.protocols.learning_rates and engine.optim.
UNUSED: dict[str, Callable[[dict], str | None]] = {
    "lr_encoder_pretrained": lambda a: None if a.get("pretrained_encoder")
    else "no --pretrained_encoder",
    "lr_ratio": lambda a: None if a.get("lr_hyper") is None else "--lr_hyper given",
    "lr_step_size": _scheduler_reason,
    "lr_gamma": _scheduler_reason,
}
ABSENT = "flag absent in this run"
# The pretraining flags the main text names; the appendix has all of them.
PRETRAIN_KEYS = ("model_size", "epochs", "batch_size", "lr", "crop_size", "views_per_image",
                 "distortions", "num_levels", "loss_type", "consistency_weight", "ranking_weight")


def cell(value: object) -> str:
    """A flag value in words: not set, yes/no, comma lists, empty."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) if value else "none"
    if value == "":
        return "empty"
    return str(value)


def _flag_cell(flag: str, args: dict) -> tuple[str, bool]:
    """(cell text, whether the run uses the flag)."""
    if flag not in args:
        return ABSENT, False
    reason = UNUSED[flag](args) if flag in UNUSED else None
    if reason:
        return f"{cell(args[flag])} (unused: {reason})", False
    return cell(args[flag]), True


def flag_rows(run: RunData, names: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """(every row, the rows that differ): one row per flag, one cell per run; a flag differs only
    between runs that use it (an arm that ignores a flag is no difference)."""
    keys = list(dict.fromkeys(k for n in names for k in run.finetunes[n].args))
    rows, differ = [], []
    for key in keys:
        runs = [run.finetunes[n].args for n in names]
        cells = [_flag_cell(key, args) for args in runs]
        used = {cell(args[key]) for args, (_, uses) in zip(runs, cells, strict=True) if uses}
        texts = [text for text, _ in cells]
        if len(used) > 1:
            differ.append([f"`{key}`", *texts])
            rows.append([f"**`{key}`**", *texts])
        else:
            rows.append([f"`{key}`", *texts])
    return rows, differ


def setup_section(run: RunData) -> str:
    """What the fine-tuning runs differ in and their protocol; every flag is in the appendix."""
    parts = []
    names = [n for n in MAIN_RUNS if n in run.finetunes]
    if not names:
        parts.append("Fine-tuning: no run has started in this folder "
                     "(finetune_config.json absent).")
    else:
        _, differ = flag_rows(run, names)
        parts.append("Flags in which the fine-tuning runs differ (a flag one run does not use is "
                     f"no difference; every flag of every stage: [appendix]({APPENDIX_ANCHOR}))"
                     "\n\n" + (table(["Flag", *names], differ) if differ
                               else "No flag differs: the runs share every flag they use."))
        protocols = [f"- {n}: {describe(run.finetunes[n].config)}" for n in names
                     if "protocol" in run.finetunes[n].config]
        if protocols:
            parts.append("**Fine-tuning protocol** (train_swin.py `--protocol`, "
                         "docs/PROTOCOLS.md; each flag given against its preset)\n\n"
                         + "\n".join(protocols))
    if run.pretrain is None:
        parts.append("Pretraining: not run in this folder "
                     "(checkpoints/pretrain/pretrain_config.json absent).")
    else:
        args = run.pretrain.args
        parts.append("Pretraining: " + ", ".join(f"`--{k}` {cell(args[k])}"
                                                  for k in PRETRAIN_KEYS if k in args) + ".")
    return section("Setup and hyperparameters", *parts)


def appendix_section(run: RunData) -> str:
    """Every flag of pretraining and of the main fine-tuning runs, then the saved configs,
    folded."""
    parts = []
    if run.pretrain is not None:
        parts.append("**Pretraining** (`checkpoints/pretrain/pretrain_config.json`)\n\n"
                     + table(["Flag", "Value"],
                             [[f"`{k}`", cell(v)] for k, v in run.pretrain.args.items()]))
    names = [n for n in MAIN_RUNS if n in run.finetunes]
    if names:
        rows, _ = flag_rows(run, names)
        parts.append("**Fine-tuning** (`finetune_config.json` of each run; flags that differ "
                     "between the runs that use them are in bold)\n\n"
                     + table(["Flag", *names], rows))
    files = [run.pretrain.path / "pretrain_config.json"] if run.pretrain else []
    files += [r.path / "finetune_config.json" for r in run.finetunes.values()]
    for path in files:
        text = json.dumps(json.loads(path.read_text()), indent=2)
        parts.append(f"<details><summary>{path.relative_to(run.run_dir)}</summary>\n\n```json\n"
                     f"{text}\n```\n\n</details>")
    return section(APPENDIX_TITLE, *(parts or ["No config was written in this folder yet."]))
