"""Controls with known answers (run_qualiclip_experiments.sh --controls): can this experiment
detect a gain, and does it invent one?

Per seed i the chain fine-tunes on the same fraction of the KonIQ-10k training labels from the
usual initialisation (scratch, the reference), from the encoder of the baseline run, fine-tuned on
every training label (positive control: a real gain, expected "yes"), and from the untrained
Stage-1 encoder (sham control: no gain, expected "no" or "inconclusive"). Each run's test SRCC and
PLCC (results.json: validation-selected, test split scored once) enter a paired t test over seeds
against the scratch arm, as the main comparison's repeats do.
"""

from __future__ import annotations

from tools.markdown import is_number, num, table
from tools.rundata import FinetuneRun, RunData
from tools.stats import seed_test
from tools.verdicts import interval

# key in comparisons.json -> (arm folder name ctl_<arm>_s<i>, report label, what it starts from,
# expected answer)
CONTROLS = {
    "positive": ("positive", "positive control",
                 "the baseline run's encoder (fine-tuned on all training labels)", "yes"),
    "negative": ("sham", "sham control (negative)",
                 "the untrained Stage-1 encoder (pretraining with --epochs 0)",
                 "no or inconclusive"),
}
POWER_TITLE = "Could this run have seen the expected gain?"
POWER_ANCHOR = "#could-this-run-have-seen-the-expected-gain"


def _fraction(runs: list[FinetuneRun]) -> int | None:
    """Percent of training labels the control runs used (from their saved --label_fraction)."""
    for run in runs:
        if is_number(run.args.get("label_fraction")):
            return round(100 * float(run.args["label_fraction"]))
    return None


def _control(scratch: dict[int, FinetuneRun], arm: dict[int, FinetuneRun], expected: str
             ) -> dict:
    """Paired seed test of one control arm against scratch, with its verdict and pass/fail."""
    seeds = sorted(s for s in set(scratch) & set(arm)
                   if is_number(scratch[s].test.get("srcc")) and is_number(arm[s].test.get("srcc")))
    tests = {m: seed_test([scratch[s].test.get(m) for s in seeds],
                          [arm[s].test.get(m) for s in seeds]) for m in ("srcc", "plcc")}
    srcc = tests["srcc"]
    out = {"verdict": srcc["verdict"], "value": srcc["mean_diff"], "low": srcc["low"],
           "high": srcc["high"], "n": srcc["n"], "p_ttest": srcc["p_ttest"],
           "expected": expected, **tests}
    if srcc["n"] < 2:
        out["passed"] = False
        out["reason"] = (f"{srcc['n']} seed(s) with both runs finished: a paired interval needs 2")
    else:
        out["passed"] = (srcc["verdict"] == "yes") == (expected == "yes")
    return out


def control_comparisons(run: RunData) -> dict:
    """comparisons.json "controls": positive and negative control against scratch ({} when the
    controls were not run)."""
    if not run.controls:
        return {}
    scratch = run.controls.get("scratch", {})
    out: dict = {key: _control(scratch, run.controls.get(arm, {}), expected)
                 for key, (arm, _, _, expected) in CONTROLS.items()}
    out["fraction"] = _fraction([r for arm in run.controls.values() for r in arm.values()])
    out["seeds"] = len(scratch)
    return out


def _status(entry: dict) -> str:
    if entry.get("reason"):
        return f"no: not measured ({entry['reason']})"
    return "yes" if entry["passed"] else "no"


def _meaning(positive: dict, negative: dict) -> str:
    """What the two controls say about the main verdicts."""
    if positive["passed"] and negative["passed"]:
        return ("Both controls passed: the pipeline detects a gain of the positive control's "
                f"size (a mean of {positive['value']:+.4f} SRCC) and does not invent one; an "
                "inconclusive main answer means no detectable gain at this power (see "
                f"[{POWER_TITLE}]({POWER_ANCHOR})).")
    lines = []
    if not positive["passed"]:
        why = positive.get("reason") or f"it answered {positive['verdict']} where yes is true"
        lines.append(f"The positive control failed ({why}): this run could not have detected a "
                     "real gain, so its main 'inconclusive' answers say nothing.")
    if negative["verdict"] == "yes":
        lines.append("The sham control said yes where there is no gain: the comparison invents "
                     "gains, so the main 'yes' answers are not trustworthy.")
    elif not negative["passed"]:
        lines.append(f"The sham control was not measured ({negative['reason']}): whether the "
                     "comparison invents gains is not known.")
    else:
        lines.append("The sham control passed: the comparison does not invent gains.")
    return " ".join(lines)


def controls_section(comp: dict) -> str:
    """Body of "Can this experiment detect a gain?": both controls and what they mean."""
    ctl = comp.get("controls") or {}
    if not ctl:
        return ("The controls were not run in this folder: `bash run_qualiclip_experiments.sh "
                "--controls` adds a positive control (true answer yes) and a sham control (true "
                "answer no gain) that show whether this experiment can detect a gain at all.")
    fraction = f"{ctl['fraction']} %" if is_number(ctl.get("fraction")) else "a fraction"
    intro = (f"Two comparisons whose true answer is known, each over {ctl['seeds']} seeds of "
             f"fine-tuning on {fraction} of the KonIQ-10k training labels (the same subset for "
             "the three runs of a seed), against the same fine-tuning from the usual "
             "initialisation (scratch). The positive control starts from an encoder that "
             "certainly carries quality signal, the sham control from one that carries none. "
             "Only training labels are reused; the test split is scored once per run "
             "(results.json). Gain: the mean KonIQ-10k test SRCC difference, control minus "
             "scratch, with its 95 % paired t interval over seeds.")
    rows = []
    for key, (_, label, start, expected) in CONTROLS.items():
        e = ctl[key]
        rows.append([label, start, expected, interval(e), str(e["n"]),
                     num(e.get("p_ttest"), 3), e["verdict"], _status(e)])
    header = ["Control", "Started from", "Expected answer", "Gain in test SRCC", "Seeds",
              "Paired t-test p", "Verdict", "Passed?"]
    return "\n\n".join([intro, table(header, rows), _meaning(ctl["positive"], ctl["negative"])])
