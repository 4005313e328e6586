"""Result tables: KonIQ-10k main comparison, cross-dataset, repeats, per-epoch curves."""

from __future__ import annotations

import statistics

from data.readers.kadid10k import DISTORTION_TYPES
from tools.markdown import duration, is_number, num, sci, signed, table
from tools.reference import CROSS_PUBLISHED, CROSS_SOURCE, KONIQ_PUBLISHED, dataset_name
from tools.rundata import MATCHED, RunData, classical_names, seed_runs
from tools.timings import stage_wall_time

CROSS_ORDER = ("spaq", "kadid10k", "agiqa3k", "livec", "koniq10k")
ROW_LABELS = {"baseline": "Swin-HyperIQA without QualiCLIP pretraining (baseline)",
              "pretrained": "Swin-HyperIQA, QualiCLIP-pretrained encoder",
              "pretrained_matched": "Swin-HyperIQA, QualiCLIP-pretrained encoder at the "
              "baseline's encoder rate",
              "zero_shot": "QualiCLIP-pretrained encoder, zero-shot (no MOS)",
              "zero_shot_untrained": "The same encoder before pretraining, zero-shot (control)"}
CLASSICAL_NOTE = ("Classical rows (NIQE, BRISQUE, PIQE: opinion-unaware, no MOS) score whole "
                  "images with the pinned PyPI package named in the row; their raw scores fall "
                  "as quality rises, so they are used as minus the raw score and their SRCC and "
                  "PLCC have the sign of every other row (docs/BASELINES.md).")


def row_label(run: RunData, name: str) -> str:
    """Report label of an evaluated model or classical baseline."""
    info = run.evals[name].classical if name in run.evals else None
    if info:
        return (f"{info.get('method', name)}, classical opinion-unaware baseline "
                f"({info.get('package')} {info.get('installed_version')})")
    return ROW_LABELS.get(name, name)


def _not_run(name: str) -> str:
    return f"not available: the {name} run has not finished in this folder"


def pretrain_time(run: RunData) -> float | None:
    """Measured pretraining wall time: the chain's stage timing, else the epochs' time_s sum."""
    wall = stage_wall_time(run.timings.get("stages", {}).get("pretrain", {}))
    if wall is not None:
        return wall
    if run.pretrain and run.pretrain.metrics:
        times = [m.get("time_s") for m in run.pretrain.metrics]
        if all(is_number(t) for t in times):
            return sum(times)
    return None


def main_table(run: RunData, paired: dict | None = None) -> str:
    """Baseline vs pretrained on the KonIQ-10k test split, the improvement (with the paired
    bootstrap interval of `paired`, comparisons.json's KonIQ-10k entry) and published rows."""
    header = ["Model", "Test SRCC", "Test PLCC", "Test KRCC", "Test RMSE", "n test",
              "Best epoch (val)", "Fine-tuning time", "Source"]
    rows = []
    for name in ("baseline", "pretrained"):
        ft = run.finetunes.get(name)
        if ft is None or not ft.test:
            rows.append([ROW_LABELS[name], *[_not_run(name)] * 7, "this run"])
            continue
        res, test = ft.results or {}, ft.test
        time_s = duration(res.get("train_time_s"), "not recorded in results.json")
        if name == "pretrained":
            time_s += f" (+ pretraining {duration(pretrain_time(run))})"
        rows.append([ROW_LABELS[name], num(test.get("srcc")), num(test.get("plcc")),
                     num(test.get("krcc")), num(test.get("rmse")), num(test.get("n")),
                     num(res.get("best_epoch")), time_s, "this run"])
    base, pre = run.finetunes.get("baseline"), run.finetunes.get("pretrained")
    if base and pre and base.test and pre.test:
        deltas = [signed(_diff(pre.test, base.test, k)) for k in ("srcc", "plcc", "krcc")]
        for i, key in enumerate(("srcc", "plcc")):
            d = (paired or {}).get(key, {}).get("diff", {})
            deltas[i] += (f" (95 % CI {d['low']:+.4f} to {d['high']:+.4f})"
                          if is_number(d.get("low")) and is_number(d.get("high"))
                          else " (no interval: no per-image KonIQ-10k predictions in eval/)")
        rmse = signed(_diff(pre.test, base.test, "rmse"))
        rows.append(["Improvement (pretrained minus baseline)", *deltas,
                     f"{rmse} (lower is better)", "same split", "", "", "this run"])
    n_test = (base or pre).test.get("n") if (base or pre) and (base or pre).test else None
    for name in ("zero_shot", "zero_shot_untrained", *classical_names(run)):
        zs = (run.evals.get(name) and run.evals[name].results.get("koniq10k")) or None
        if not zs:
            continue
        n_cell = num(zs.get("n"))
        if is_number(n_test) and zs.get("n") != n_test:
            n_cell += " (all KonIQ images, incl. those pretraining saw without labels)"
        rows.append([row_label(run, name), num(zs.get("srcc")), num(zs.get("plcc")),
                     num(zs.get("krcc")), "not comparable (not on the MOS scale)", n_cell,
                     "no fine-tuning", "no fine-tuning", "this run (test_swin.py)"])
    for method, backbone, srcc, plcc, source in KONIQ_PUBLISHED:
        rows.append([f"{method} ({backbone}), published figure", num(srcc, 3),
                     num(plcc, 3, "not published"), "not published", "not published",
                     "official test split", "see source", "not published", source])
    return table(header, [[c if c != "" else "does not apply" for c in r] for r in rows])


def _diff(a: dict, b: dict, key: str) -> float | None:
    x, y = a.get(key), b.get(key)
    return x - y if is_number(x) and is_number(y) else None


def cross_table(run: RunData) -> str:
    """SRCC / PLCC per test set for both fine-tuned models and the zero-shot encoder."""
    keys = [k for k in CROSS_ORDER if any(k in e.results for e in run.evals.values())]
    keys += sorted({k for e in run.evals.values() for k in e.results} - set(keys))
    if not keys:
        return ("No cross-dataset test has finished in this folder (eval/*.json absent), "
                "so there are no cross-dataset figures yet.")
    header = ["Model"] + [f"{dataset_name(k)} SRCC / PLCC" for k in keys]
    rows = []
    for name in (*ROW_LABELS, *classical_names(run)):
        ev = run.evals.get(name)
        if ev is None:
            rows.append([ROW_LABELS[name]] + [f"not tested: eval/{name}.json absent"] * len(keys))
            continue
        cells = []
        for k in keys:
            m = ev.results.get(k)
            cells.append(f"{num(m.get('srcc'), 3)} / {num(m.get('plcc'), 3)} (n={m.get('n')})"
                         if m else "dataset not present at test time")
        rows.append([row_label(run, name), *cells])
    rows.append(["Swin-HyperIQA trained on KonIQ, published figure (SRCC only)"]
                + [f"{CROSS_PUBLISHED[k]:.3f} / not published" if k in CROSS_PUBLISHED
                   else "not published" for k in keys])
    note = (f"Published row: {CROSS_SOURCE}. The KonIQ-10k column, when present, is the "
            "in-domain test split, not a cross-dataset figure."
            + (f" {CLASSICAL_NOTE}" if classical_names(run) else ""))
    return table(header, rows) + "\n\n" + note


def kadid_types_table(run: RunData) -> str:
    """SRCC within each KADID-10k distortion type per evaluated model; pretraining types marked."""
    per_model = {name: ev.data.get("by_distortion", {}).get("kadid10k")
                 for name, ev in run.evals.items()}
    per_model = {name: types for name, types in per_model.items() if types}
    if not per_model:
        return ("No KADID-10k test with per-type metrics in this folder (eval/*.json of "
                "test_swin.py on kadid10k), so there is no per-type breakdown.")
    types = [t for t in DISTORTION_TYPES if any(t in by_type for by_type in per_model.values())]
    pretrain_config = (run.pretrain.config.get("config") or {}) if run.pretrain else {}
    seen = set(pretrain_config.get("distortions") or [])
    header = ["Model"] + [f"{t} *" if t in seen else t for t in types]
    rows = [[row_label(run, name)]
            + [f"{num(by_type[t].get('srcc'), 3)} (n={by_type[t].get('n')})" if t in by_type
               else "not tested" for t in types]
            for name, by_type in per_model.items()]
    note = ("SRCC within each distortion type (all its references and levels). "
            + ("* marks the types QualiCLIP pretraining used; the unmarked ones it never saw, so "
               "the zero-shot rows on them measure transfer to unseen distortions."
               if seen else "The pretraining distortion types are not recorded in this folder."))
    return table(header, rows) + "\n\n" + note


def repeats_groups(run: RunData, metric: str = "srcc") -> dict[str, list[float]]:
    """Test metric of the main run and its repeats, per model (the matched-rate arm when it ran)."""
    groups: dict[str, list[float]] = {}
    for name in ("baseline", "pretrained", MATCHED):
        runs = [r for _, r in sorted(seed_runs(run, name).items())]
        if runs or name != MATCHED:
            groups[name] = [r.test[metric] for r in runs if is_number(r.test.get(metric))]
    return groups


def repeats_table(run: RunData) -> str:
    """Median and spread of the test SRCC / PLCC over repeated fine-tuning runs."""
    header = ["Model", "Runs", "Median SRCC", "SRCC IQR (q25 to q75)", "SRCC min to max",
              "SRCC std", "Median PLCC", "PLCC std"]
    srcc, plcc = repeats_groups(run, "srcc"), repeats_groups(run, "plcc")
    rows = []
    for name in srcc:
        s, p = srcc[name], plcc[name]
        if not s:
            rows.append([ROW_LABELS[name], "0", *[_not_run(name)] * 6])
            continue
        q = statistics.quantiles(s, n=4, method="inclusive") if len(s) > 1 else [s[0]] * 3
        one = "single run, no spread"
        rows.append([ROW_LABELS[name], str(len(s)), num(statistics.median(s)),
                     f"{q[0]:.4f} to {q[2]:.4f}" if len(s) > 1 else one,
                     f"{min(s):.4f} to {max(s):.4f}" if len(s) > 1 else one,
                     num(statistics.stdev(s)) if len(s) > 1 else one,
                     num(statistics.median(p)) if p else "not recorded",
                     num(statistics.stdev(p)) if len(p) > 1 else one])
    return table(header, rows)


def pretrain_epochs_table(run: RunData) -> str:
    """Losses, collapse signals and label-free validation per pretraining epoch."""
    if run.pretrain is None:
        return ("Pretraining has not run in this folder (checkpoints/pretrain/pretrain_config.json "
                "absent), so there is no pretraining loss to show.")
    if not run.pretrain.metrics:
        return "The pretraining run has not finished an epoch yet (metrics.jsonl is empty)."
    rows = [[num(m.get("epoch")), num(m.get("loss")), num(m.get("consistency")),
             num(m.get("ranking")), num(m.get("rank_accuracy")), sci(m.get("level_spread")),
             num(m.get("val_srcc")), sci(m.get("lr")), duration(m.get("time_s"))]
            for m in run.pretrain.metrics]
    terms = []
    for term in ("Consistency", "Ranking"):
        weight = run.pretrain.loss_weight(term.lower())
        terms.append(term if weight is None else f"{term} (weight {weight:g}"
                     + (": logged, not in the loss)" if weight == 0 else ")"))
    return table(["Epoch", "Total loss", *terms, "Rank accuracy",
                  "Level spread", "Validation SRCC (held-out types)", "Learning rate",
                  "Epoch time"], rows)


def finetune_epochs_table(run: RunData) -> str:
    """Per-epoch fine-tuning curves of both models side by side."""
    if not run.finetunes:
        return "No fine-tuning run has started in this folder, so there are no curves yet."
    names = [n for n in ("baseline", "pretrained") if n in run.finetunes]
    by_epoch: dict[int, dict[str, dict]] = {}
    for name in names:
        for m in run.finetunes[name].metrics:
            by_epoch.setdefault(m.get("epoch"), {})[name] = m
    if not by_epoch:
        return "The fine-tuning runs have not finished an epoch yet (metrics.jsonl is empty)."
    header = ["Epoch"]
    for name in names:
        header += [f"{name} train loss", f"{name} train SRCC", f"{name} val SRCC",
                   f"{name} val PLCC", f"{name} epoch time"]
    rows = []
    for epoch in sorted(by_epoch, key=lambda e: e if is_number(e) else -1):
        row = [num(epoch)]
        for name in names:
            m = by_epoch[epoch].get(name)
            if m is None:
                row += ["run stopped before this epoch"] * 5
            else:
                row += [num(m.get("train_loss")), num(m.get("train_srcc")),
                        num(m.get("val_srcc")), num(m.get("val_plcc")), duration(m.get("time_s"))]
        rows.append(row)
    return table(header, rows)
