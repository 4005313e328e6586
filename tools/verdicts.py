"""Report sections written from comparisons.json: the evidence and recommendations behind the four
verdicts, the power table, the uncertainty tables, the linear probe and label efficiency."""

from __future__ import annotations

from tools.markdown import duration, is_number, num, table
from tools.power import power_sentence
from tools.reference import PROBE_PUBLISHED, dataset_name

QUESTIONS = {
    "cross_dataset": "Better cross-dataset?",
    "koniq": "Better on KonIQ-10k?",
    "convergence": "Faster convergence?",
    "features": "Better quality-aware features?",
}


def interval(entry: dict | None, digits: int = 4) -> str:
    """'+0.0123 (95 % CI -0.0100 to +0.0350)' or why there is no interval."""
    if not entry or not is_number(entry.get("value")):
        return "not measured"
    value = f"{entry['value']:+.{digits}f}"
    if not (is_number(entry.get("low")) and is_number(entry.get("high"))):
        return f"{value} (no interval: one run)"
    return f"{value} (95 % CI {entry['low']:+.{digits}f} to {entry['high']:+.{digits}f})"


def _value_ci(entry: dict | None) -> str:
    """'0.7000 [0.6500, 0.7400]' for one model's own metric."""
    if not entry or not is_number(entry.get("value")):
        return "not measured"
    return f"{entry['value']:.4f} [{num(entry.get('low'))}, {num(entry.get('high'))}]"


def evidence(key: str, v: dict) -> str:
    """The numbers behind one answer: the gain with its interval (its basis is stated once,
    beside the verdict table), p-values across seeds, or the lines of feature evidence."""
    if key == "features":
        parts = [f"{name}: {interval(e)} -> {e['verdict']}" for name, e in v["evidence"].items()]
        text = "; ".join(parts) or "no linear probe and no zero-shot comparison in this folder"
        if v.get("stage1_gate"):
            text = (f"not answered: {v['stage1_gate']}; the evidence alone says "
                    f"{v.get('evidence_verdict', 'inconclusive')} ({text})")
        return text
    unit, digits = (" epochs saved", 1) if key == "convergence" else (" SRCC", 4)
    if not is_number(v.get("value")):
        return f"no gain measured ({v['basis']})"
    text = f"gain {interval(v, digits)}{unit}"
    if is_number(v.get("p_ttest")) or is_number(v.get("p_wilcoxon")):
        text += (f"; paired t-test p = {num(v.get('p_ttest'), 3)}, Wilcoxon p = "
                 f"{num(v.get('p_wilcoxon'), 3)}")
    return text


WHERE = {"koniq": "KonIQ-10k", "cross_dataset": "cross-dataset"}


def recommendations(comp: dict) -> list[str]:
    """Recommendations that follow from the verdicts (and only from them)."""
    v = comp["verdicts"]
    out = []
    single = not (comp.get("seeds") or {}).get("koniq10k_srcc")
    if any(x["verdict"] == "inconclusive" for x in v.values()) and single:
        out.append("Repeat the fine-tuning (`--repeats 5`) for intervals across seeds, "
                   "convergence included.")
    for answer, action in (("yes", "starting fine-tuning from the QualiCLIP encoder"),
                           ("no", "not using the QualiCLIP encoder for fine-tuning")):
        seeds = " and ".join(WHERE[k] for k in ("koniq", "cross_dataset")
                             if v[k]["verdict"] == answer and not v[k].get("one_run"))
        single = " and ".join(WHERE[k] for k in ("koniq", "cross_dataset")
                              if v[k].get("test_interval_verdict") == answer)
        if seeds:
            out.append(f"{action[0].upper()}{action[1:]} is supported for {seeds} across seeds.")
        if single:
            out.append(f"The test-image interval for {single} says {answer}, but it rests on one "
                       f"training run per model; repeat with `--repeats 5` before {action}.")
    if v["features"]["verdict"] == "yes" and v["koniq"]["verdict"] != "yes":
        out.append("The encoder's features are more quality-aware, but full-label fine-tuning "
                   "does not show it: compare with fewer labels (`--ablation labels`).")
    if v["features"].get("stage1_gate"):
        out.append("Fix Stage 1 before reading any answer that rests on its encoder "
                   "(docs/STAGE1.md); the Stage-1 section below gives the encoder's figures.")
    elif v["features"]["verdict"] == "inconclusive" and not v["features"]["evidence"]:
        out.append("Run the linear probe and zero-shot stages to answer the feature question.")
    if not out:
        out.append("No change follows from these verdicts.")
    return out


def one_run_note(v: dict) -> str:
    """What the test-image interval of a one-run answer says, beside its verdict."""
    if not v.get("one_run"):
        return ""
    if v["test_interval_verdict"] == "inconclusive":
        return " (one training run)"
    return f" (one training run; its test-image interval alone says {v['test_interval_verdict']})"


POWER_ROWS = {"koniq10k_srcc": "KonIQ-10k test SRCC", "cross_mean_srcc": "cross-dataset mean SRCC"}


def expected_seen(p: dict) -> str:
    """Could the comparison detect the plan's expected gain: yes, only its upper end, no, or not
    estimable."""
    low, high = p["expected"]
    mde = p.get("mde")
    return ("not estimable" if mde is None else "yes" if mde <= low else
            "only its upper end" if mde <= high else "no")


def power_section(comp: dict) -> str:
    """"Could this run have seen the expected gain?": minimum detectable effect per answer and
    the repeats that +0.01 / +0.02 / +0.03 would need."""
    power = comp.get("power") or {}
    if not power:
        return "Not computed (comparisons.json predates the power analysis)."
    rows, sentences = [], []
    for key, name in POWER_ROWS.items():
        p = power.get(key)
        if not p:
            continue
        low, high = p["expected"]
        mde = p.get("mde")
        seen = expected_seen(p)
        needs = [str(p["repeats_needed"][t]) if p["repeats_needed"][t] is not None else
                 ("unknown" if p["basis"] == "bootstrap" else f"> {p['max_repeats']}")
                 for t in p["repeats_needed"]]
        rows.append([name, p["basis"] or "none", str(p.get("n") or "-"),
                     f"+{mde:.4f}" if mde is not None else "-", *needs,
                     f"+{low:g} to +{high:g}", seen])
        sentences.append(f"- {name}: " + (power_sentence(p) if mde is not None else
                         "not estimable: no pair of fine-tuned models was scored with a spread "
                         "between them"))
    targets = [f"repeats for +{t}" for t in next(iter(power.values()))["repeats_needed"]]
    head = ["Answer", "Basis", "Runs", "Smallest detectable gain", *targets,
            "Plan's expected gain", "Expected gain detectable?"]
    return "\n\n".join([
        "The smallest gain each fine-tuning answer could have detected (95 % two-sided, 80 % "
        "power): from the spread of the per-seed differences (paired t, exact, noncentral t) "
        "with `--repeats N >= 2`, else from the one-run bootstrap interval over test images, "
        "which leaves out seed-to-seed variance and so understates it.",
        table(head, rows), "\n".join(sentences)])


def differences_table(results: dict, ref: str, new: str) -> str:
    """Per test set: both models' SRCC with intervals and the paired difference."""
    if not results:
        return f"No test set was scored by both the {ref} and the {new} (eval/*.json)."
    rows = []
    for key, r in results.items():
        rows.append([dataset_name(key), str(r["n"]), _value_ci(r["srcc"]["a"]),
                     _value_ci(r["srcc"]["b"]), interval(r["srcc"]["diff"]),
                     r["srcc"]["verdict"], interval(r["plcc"]["diff"]), r["plcc"]["verdict"]])
    return table(["Test set", "n", f"{ref} SRCC [95 % CI]", f"{new} SRCC [95 % CI]",
                  "SRCC difference", "SRCC verdict", "PLCC difference", "PLCC verdict"], rows)


def seeds_table(seeds: dict) -> str:
    """Per-seed values, medians, spread and paired tests across seeds."""
    rows = []
    entries = [(seeds.get(key), label) for key, label in (
        ("koniq10k_srcc", "KonIQ-10k test SRCC (results.json)"),
        ("koniq10k_plcc", "KonIQ-10k test PLCC (results.json)"),
        ("cross_mean_srcc", "mean cross-dataset SRCC"))]
    entries += [(m, f"{dataset_name(key)} {metric.upper()} (test_swin.py)")
                for key, by_metric in (seeds.get("per_test_set") or {}).items()
                for metric, m in by_metric.items()]
    for s, label in entries:
        if not s:
            continue
        per_seed = ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(s["reference"], s["new"],
                                                                 strict=True))
        rows.append([label, str(s["n"]), per_seed, num(s["median_reference"]),
                     num(s["median_new"]), num(s["std_diff"]),
                     interval({"value": s["mean_diff"], "low": s["low"], "high": s["high"]}),
                     num(s["p_ttest"], 3), num(s["p_wilcoxon"], 3), s["verdict"]])
    if not rows:
        return ""
    return ("Across seeds (repeat i of both models shares seed and split i):\n\n"
            + table(["Metric", "Seeds", "baseline/pretrained per seed", "Median baseline",
                     "Median pretrained", "Std of difference", "Mean difference",
                     "Paired t-test p", "Wilcoxon p", "Verdict"], rows))


def uncertainty_section(comp: dict) -> str:
    """Body of the uncertainty section."""
    head = (f"Paired bootstrap over the test images ({comp['resamples']} resamples, seed "
            f"{comp['seed']}): both models are scored on the same resampled images; the "
            "interval is the central 95 % of the resampled differences.")
    parts = [head, "**Fine-tuned: QualiCLIP-pretrained minus baseline**",
             differences_table(comp["finetuned"], "baseline", "pretrained")]
    mean = comp.get("finetuned_cross_mean")
    if mean:
        parts.append(f"Mean over the {mean['srcc']['sets']} cross-dataset test sets: SRCC "
                     f"{interval(mean['srcc'])}, PLCC {interval(mean['plcc'])}.")
    parts += ["**Zero-shot: QualiCLIP-pretrained encoder minus the untrained control**",
              differences_table(comp["zero_shot"], "untrained", "pretrained")]
    for entry in (comp.get("classical") or {}).values():
        method = entry.get("method", entry.get("name"))
        parts += [f"**Zero-shot: QualiCLIP-pretrained encoder minus {method} (classical, "
                  f"{entry.get('package')} {entry.get('installed_version')}; minus its raw "
                  "score)**", differences_table(entry["zero_shot_minus"], method, "zero-shot")]
    parts.append(seeds_table(comp.get("seeds") or {}))
    return "\n\n".join(p for p in parts if p)


def convergence_table(comp: dict) -> str:
    """Epochs and time to 95 % of the best validation SRCC, per seed."""
    conv = comp.get("convergence") or {}
    rows = []
    for i, pair in enumerate(conv.get("pairs", [])):
        cells = [str(i)]
        for name in ("baseline", "pretrained"):
            m = pair[name]
            own, common = m.get("own_95"), m.get("common")
            cells += [num(m.get("best_val_srcc")),
                      f"epoch {own['epoch']}, {duration(own['time_s'])}" if own else "undefined",
                      f"epoch {common['epoch']}, {duration(common['time_s'])}" if common
                      else pair.get("reason", "not reached")]
        cells.append(str(pair["epochs_gain"]) if "epochs_gain" in pair else "not computable")
        rows.append(cells)
    if not rows:
        return conv.get("reason", "No fine-tuning curves in this folder.")
    header = ["Seed"]
    for name in ("baseline", "pretrained"):
        header += [f"{name} best val SRCC", f"{name}: 95 % of own best",
                   f"{name}: common target"]
    header.append("Epochs saved by pretraining")
    note = ("Common target: 95 % of the lower of the two best validation SRCCs, a level both runs "
            "reach. Times are the wall time of the epochs up to that point (training and "
            "validation; GPU time on a GPU run); the pretrained run's time excludes pretraining.")
    return table(header, rows) + "\n\n" + note


def probe_section(probe: dict | None, comp: dict) -> str:
    """Linear-probe table per dataset and feature kind, gains with intervals, published anchors."""
    if not probe:
        return ("The linear probe has not run in this folder (probe/probe.json absent; the chain's "
                "`probe` stage writes it).")
    encoders = probe.get("encoders", [])
    gains = (comp.get("probe") or {}).get("datasets", {})
    reference = (comp.get("probe") or {}).get("reference") or "random"
    rows = []
    for key, by_enc in probe.get("results", {}).items():
        for kind, label in (("last", "last stage"), ("all", "all four stages")):
            cells = [dataset_name(key), label]
            for enc in encoders:
                m = (by_enc.get(enc) or {}).get(kind) or {}
                cells.append(f"{num(m.get('srcc'), 3)} / {num(m.get('plcc'), 3)}")
            g = (gains.get(key) or {}).get(kind)
            cells.append(interval(g["srcc"]["diff"], 3) + f" -> {g['srcc']['verdict']}" if g
                         else "not computable")
            n = (by_enc.get(encoders[0]) or {}).get(kind, {}) if encoders else {}
            cells.append(f"{n.get('n_train', '?')} / {n.get('n_test', '?')}")
            rows.append(cells)
    header = ["Dataset", "Features", *[f"{e} SRCC / PLCC" for e in encoders],
              f"SRCC gain, qualiclip minus {reference}", "n train / test"]
    for method, srcc, source in PROBE_PUBLISHED:
        rows.append(["KonIQ-10k", f"{method}, published figure", *["" for _ in encoders],
                     f"SRCC {srcc:.3f} ({source})", "published"])
    rows = [[c or "not measured for this row" for c in r] for r in rows]
    skipped = probe.get("skipped_encoders") or {}
    notes = [f"Frozen encoders of size `{probe.get('model_size')}`, {probe.get('patches')} fixed "
             f"crops of {probe.get('crop_size')} px per image, features mean-pooled; ridge "
             f"regression on standardised features, penalty chosen by {probe.get('cv_folds')}-fold "
             "cross-validation on the training split only (content-grouped folds where images "
             "share content), scored once on the test split."]
    notes += [f"Encoder `{k}`: {v}." for k, v in skipped.items()]
    notes += [f"Dataset {dataset_name(k)}: not probed ({v})."
              for k, v in (probe.get("skipped_datasets") or {}).items()]
    return table(header, rows) + "\n\n" + " ".join(notes)


def labels_section(comp: dict, figure: str) -> str:
    """KonIQ-10k test SRCC per fraction of training labels, with intervals."""
    labels = comp.get("labels") or {}
    rows = []
    for pct, r in labels.items():
        if r is None:
            rows.append([f"{pct} %", *["runs not finished or not tested"] * 4])
            continue
        rows.append([f"{pct} %", _value_ci(r["srcc"]["a"]), _value_ci(r["srcc"]["b"]),
                     interval(r["srcc"]["diff"]), r["srcc"]["verdict"]])
    text = table(["Training labels", "baseline SRCC [95 % CI]", "pretrained SRCC [95 % CI]",
                  "Difference", "Verdict"], rows)
    return (text + "\n\nThe same seeded subset of the training split for both models at each "
            "fraction (smaller fractions nested in larger ones); validation and test unchanged; "
            "100 % is the main pair of runs.\n\n" + figure)
