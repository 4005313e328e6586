"""What the main comparison mixes, taken apart: pretraining at the baseline's encoder rate, the
plan's encoder rate alone, and which variance the intervals over seeds carry.

The plan fine-tunes the Stage-1 encoder at a lower rate (--lr_encoder_pretrained) than the
baseline's encoder trains at, so baseline vs pretrained changes the start and the rate at once.
The chain's matched-rate arm (pretrained_matched*, MATCHED_RATE) starts each seed from the same
Stage-1 encoder as that seed's pretrained run, at the baseline's encoder rate: matched minus
baseline is pretraining at one rate ("matched_rate" in comparisons.json), pretrained minus matched
the rate alone ("rate_effect"). One pretraining run serving every seed leaves Stage-1's own
variance out of the seed intervals; --pretrain_repeats N gives seed i the Stage-1 run i mod N
("variance").
"""

from __future__ import annotations

from pathlib import Path

from tools.markdown import is_number, table
from tools.rundata import MATCHED, FinetuneRun, PretrainRun, RunData, seed_runs
from tools.stage1 import stage1_health
from tools.verdicts import evidence, one_run_note

RATE_TITLE = "Pretraining at the baseline's encoder rate"
RATE_ANCHOR = "#pretraining-at-the-baselines-encoder-rate"
ARM_LABELS = {"baseline": "baseline", "pretrained": "pretrained", MATCHED: "matched-rate arm"}


def encoder_rate(run: FinetuneRun) -> float | None:
    """The rate the run trained its encoder at: its config's lr_encoder, else from its flags."""
    rate = run.config.get("lr_encoder")
    if is_number(rate):
        return float(rate)
    args = run.args
    if not is_number(args.get("lr")):
        return None
    given = args.get("lr_encoder_pretrained")  # engine.protocols.learning_rates
    return float(given if args.get("pretrained_encoder") and is_number(given) else args["lr"])


def encoder_rates(run: RunData) -> dict:
    """Each arm's encoder rate (main run) and whether baseline and pretrained differ in it."""
    rates = {arm: encoder_rate(run.finetunes[arm]) if arm in run.finetunes else None
             for arm in ARM_LABELS}
    base, pre = rates["baseline"], rates["pretrained"]
    rates["confounded"] = None if base is None or pre is None else base != pre
    return rates


def matched_absent(rates: dict) -> str:
    """Why comparisons.json has no matched-rate answer."""
    if rates.get("confounded") is False:
        return ("not needed: the pretrained runs fine-tuned the encoder at the baseline's rate, so "
                "the main answers compare at one rate already")
    text = ("the matched-rate arm did not run (MATCHED_RATE: auto runs it from 3 repeats, "
            "`--matched_rate 1` at any number)")
    if rates.get("confounded"):
        text += ", so the main answers mix pretraining with the lower encoder rate"
    return text


def _stage1_runs(run: RunData) -> dict[str, tuple[PretrainRun | None, PretrainRun | None]]:
    """Every Stage-1 run of the folder with its untrained control: pretrain, pretrain_r<j>."""
    runs = {"pretrain": (run.pretrain, run.untrained)}
    repeats = run.stage1_repeats
    for j, pre in sorted((repeats.get("pretrain") or {}).items()):
        runs[f"pretrain_r{j}"] = (pre, (repeats.get("untrained") or {}).get(j))
    return runs


def seed_variance(run: RunData) -> dict:
    """Which Stage-1 run each pretrained seed started from, whether the intervals over seeds carry
    Stage-1 variance (every seed its own run), and each Stage-1 run's health."""
    encoders = {i: ft.args.get("pretrained_encoder")
                for i, ft in seed_runs(run, "pretrained").items()}
    source = {i: Path(e).parent.name if e else None for i, e in sorted(encoders.items())}
    used = sorted({s for s in source.values() if s})
    n, k = len(source), len(used)
    hint = f"; `--pretrain_repeats {n}` gives each seed its own"
    if n < 2:
        kind, text = "not applicable", ""
    elif None in source.values():
        kind, text = "unknown", "the Stage-1 encoder of some pretrained runs is not recorded"
    elif k == n:
        kind, text = "included", (f"fine-tuning and Stage-1 variance: each of the {n} pretrained "
                                  "seeds started from its own pretraining run")
    elif k == 1:
        kind, text = "excluded", (f"fine-tuning variance only: one pretraining run, {used[0]}, "
                                  f"served all {n} seeds, so Stage-1 variance is not in them"
                                  + hint)
    else:
        kind, text = "partly", (f"fine-tuning variance and only part of Stage-1's: {k} "
                                f"pretraining runs served {n} seeds, and seeds that share a run "
                                "understate Stage-1 variance" + hint)
    runs = []
    for name, (pre, control) in _stage1_runs(run).items():
        if pre is None:
            continue
        served = [i for i, s in source.items() if s == name]
        file = next((Path(encoders[i]).name for i in served), None)
        file = file or next((p.name for p in (pre.best, pre.encoder) if p is not None), None)
        health = stage1_health(pre, control, file)
        runs.append({"name": name, "seed": pre.args.get("seed"), "seeds_served": served,
                     "status": health["status"], "reasons": health["reasons"]})
    return {"seeds": n, "stage1_of_seed": {str(i): s for i, s in source.items()},
            "stage1_runs": runs, "stage1_variance": kind, "statement": text}


def _rates_sentence(rates: dict) -> str:
    """The arms' encoder rates in words and what they mean for the main answers."""
    if rates.get("confounded") is None:
        return "The encoder rates of the fine-tuning runs are not recorded in their configs."
    if not rates["confounded"]:
        return (f"Baseline and pretrained runs fine-tuned the encoder at the same rate "
                f"({rates['baseline']:g}): the main answers change only the start.")
    arms = [f"{ARM_LABELS[a]} {rates[a]:g}" for a in ARM_LABELS if rates.get(a) is not None]
    return (f"Encoder learning rates: {', '.join(arms)}. Baseline vs pretrained changes the start "
            "and the encoder rate at once; the matched-rate arm (the pretrained runs' Stage-1 "
            "encoders at the baseline's rate) changes only the start.")


def _cell(v: dict, key: str) -> str:
    return f"**{v['verdict']}**{one_run_note(v)}: {evidence(key, v)}"


def _rate_question(rates: dict) -> str:
    """"Does the pretrained runs' encoder rate (1e-06 instead of 5e-06) help?"."""
    if is_number(rates.get("pretrained")) and is_number(rates.get("baseline")):
        return (f"Does the pretrained runs' encoder rate ({rates['pretrained']:g} instead of "
                f"{rates['baseline']:g}) help?")
    return "Does the pretrained runs' encoder rate help?"


def rate_section(comp: dict) -> str:
    """Body of "Pretraining at the baseline's encoder rate": the rates, the matched-rate answer,
    the rate effect beside the main answers, and the variance their intervals carry."""
    rates = comp.get("encoder_rates") or {}
    parts = [_rates_sentence(rates)]
    if "verdicts" not in (comp.get("matched_rate") or {}):
        reason = (comp.get("matched_rate") or {}).get("reason") or matched_absent(rates)
        return "\n\n".join([*parts, f"No matched-rate answer: {reason}."])
    rows = []
    for label, difference, v in (
            ("Does pretraining help at the baseline's encoder rate?",
             "matched-rate arm minus baseline", comp["matched_rate"]["verdicts"]),
            (_rate_question(rates), "pretrained minus matched-rate arm",
             comp["rate_effect"]["verdicts"]),
            ("Both at once (the main answers)", "pretrained minus baseline", comp["verdicts"])):
        rows.append([label, difference, _cell(v["koniq"], "koniq"),
                     _cell(v["cross_dataset"], "cross_dataset")])
    note = ("The three runs of a seed share its seed and split; the two pretrained arms start from "
            "the same Stage-1 encoder. Intervals and verdicts as in the main answers.")
    statement = (comp.get("variance") or {}).get("statement")
    if statement:
        note += f" The intervals over seeds carry {statement}."
    return "\n\n".join([*parts, table(["Question", "Difference", "KonIQ-10k test SRCC",
                                       "Cross-dataset mean SRCC"], rows), note])


def rate_line(comp: dict) -> str:
    """One first-screen line: the matched-rate answers, or the rate confound they would remove."""
    head = f"**[{RATE_TITLE}]({RATE_ANCHOR})**"
    rates = comp.get("encoder_rates") or {}
    if "verdicts" in (comp.get("matched_rate") or {}):
        answers = [f"{question} KonIQ-10k **{v['koniq']['verdict']}**, cross-dataset "
                   f"**{v['cross_dataset']['verdict']}**." for question, v in (
                       ("Does pretraining help at the baseline's encoder rate?",
                        comp["matched_rate"]["verdicts"]),
                       (_rate_question(rates), comp["rate_effect"]["verdicts"]))]
        return f"{head} {' '.join(answers)}"
    if rates.get("confounded"):
        return (f"{head} The pretrained runs fine-tuned the encoder at {rates['pretrained']:g}, "
                f"the baseline at {rates['baseline']:g}: the answers above mix pretraining with "
                "the encoder rate (`--matched_rate 1` separates them).")
    return ""


def stage1_warnings(comp: dict) -> list[str]:
    """A first-screen warning per further Stage-1 run (pretrain_r<j>) that failed its health
    check: the seeds fine-tuned from it rest on a failed encoder (pretrain's own health gates
    the feature answer)."""
    lines = []
    for r in (comp.get("variance") or {}).get("stage1_runs") or []:
        if r["name"] != "pretrain" and r["status"] == "fail":
            seeds = ", ".join(map(str, r["seeds_served"])) or "none"
            lines.append(f"**Stage-1 run {r['name']} failed its health check** "
                         f"({'; '.join(r['reasons'])}); fine-tuning seeds started from it: "
                         f"{seeds}.")
    return lines


def variance_section(comp: dict) -> str:
    """The variance the intervals over seeds carry and the Stage-1 runs behind the seeds."""
    var = comp.get("variance") or {}
    parts = [f"The intervals over seeds carry {var['statement']}."] if var.get("statement") else []
    runs = var.get("stage1_runs") or []
    if len(runs) > 1:
        rows = [[r["name"], "not recorded" if r["seed"] is None else str(r["seed"]),
                 ", ".join(map(str, r["seeds_served"])) or "none",
                 r["status"] + (f" ({'; '.join(r['reasons'])})" if r["reasons"] else "")]
                for r in runs]
        parts.append(table(["Stage-1 run", "Seed", "Fine-tuning seeds it started",
                            "Stage-1 health"], rows))
    return "\n\n".join(parts)
