"""Ablation tables: pretraining epochs, distortion set and loss type, each variant pretrained,
fine-tuned on KonIQ-10k and tested across datasets."""

from __future__ import annotations

from tools.markdown import is_number, num, table
from tools.reference import dataset_name
from tools.results_tables import CROSS_ORDER
from tools.rundata import AblationVariant, PretrainRun, RunData

TITLES = {
    "epochs": "Pretraining epochs",
    "distortions": "Distortion types used in pretraining",
    "loss": "Pretraining loss (simplified scalar head vs full CLIP-prompt loss)",
}
SETTING_KEYS = {"epochs": "epochs", "distortions": "distortions", "loss": "loss_type"}


def _setting_of(args: dict, kind: str) -> str | None:
    value = args.get(SETTING_KEYS[kind])
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return None if value is None else str(value)


def _setting(variant: AblationVariant) -> str:
    value = _setting_of(variant.pretrain.args if variant.pretrain else {}, variant.kind)
    return value if value is not None else f"{variant.variant} (config not written yet)"


def _same(a: str, b: str) -> bool:
    return sorted(a.split(",")) == sorted(b.split(","))


def _final_loss(pretrain: PretrainRun | None) -> str:
    if pretrain is None:
        return "pretraining not run"
    if not pretrain.metrics:
        return "no finished pretraining epoch"
    return num(pretrain.metrics[-1].get("loss"))


def _sort_key(setting: str) -> tuple:
    head = setting.split(" ")[0]
    return (0, float(head), "") if head.replace(".", "").isdigit() else (1, 0.0, setting)


def ablation_table(run: RunData, kind: str) -> str:
    """One ablation table; the main runs fill the rows whose setting they share (0 pretraining
    epochs = the baseline run; the main pretrained run's own epochs, distortions or loss)."""
    variants = sorted(run.ablations.get(kind, []), key=lambda v: _sort_key(_setting(v)))
    keys = [k for k in CROSS_ORDER if k != "koniq10k"
            and any(v.evaluation and k in v.evaluation.results for v in variants)]
    header = [TITLES[kind].split(" (")[0], "Final pretraining loss", "KonIQ-10k test SRCC",
              "KonIQ-10k test PLCC"] + [f"{dataset_name(k)} SRCC" for k in keys]
    rows = []
    baseline = run.finetunes.get("baseline")
    if kind == "epochs" and baseline is not None and baseline.test:
        cross = run.evals.get("baseline")
        rows.append(["0 (no pretraining: the baseline run)", "no pretraining",
                     num(baseline.test.get("srcc")), num(baseline.test.get("plcc"))]
                    + [_cross(cross.results if cross else {}, k) for k in keys])
    entries = [(_setting(v), v.pretrain, v.finetune, v.evaluation) for v in variants]
    main = _setting_of(run.pretrain.args, kind) if run.pretrain else None
    if main is not None and not any(_same(main, e[0]) for e in entries):
        entries.append((f"{main} (the main pretrained run)", run.pretrain,
                        run.finetunes.get("pretrained"), run.evals.get("pretrained")))
        entries.sort(key=lambda e: _sort_key(e[0]))
    for setting, pretrain, finetune, evaluation in entries:
        test = finetune.test if finetune else {}
        ft_missing = "fine-tuning not finished" if not test else None
        rows.append([setting, _final_loss(pretrain),
                     ft_missing or num(test.get("srcc")), ft_missing or num(test.get("plcc"))]
                    + [_cross(evaluation.results if evaluation else {}, k) for k in keys])
    return table(header, rows)


def _cross(results: dict, key: str) -> str:
    m = results.get(key)
    if not m:
        return "not tested"
    return num(m.get("srcc"), 3) if is_number(m.get("srcc")) else "undefined (non-finite value)"


def ablation_sections(run: RunData) -> list[tuple[str, str]]:
    """(title, markdown table) for every ablation kind that has at least one variant."""
    return [(TITLES[kind], ablation_table(run, kind))
            for kind in ("epochs", "distortions", "loss") if run.ablations.get(kind)]
