"""The report's first screen: the four answers with their evidence, the caveat once (with the
variance the seed intervals carry), the matched-rate answer or the rate confound, what the
controls and the power analysis conclude, warnings, and the next step."""

from __future__ import annotations

from tools.arms import rate_line, stage1_warnings
from tools.controls import POWER_ANCHOR, POWER_TITLE
from tools.markdown import is_number, num, table
from tools.rundata import RunData
from tools.verdicts import (
    POWER_ROWS,
    QUESTIONS,
    WHERE,
    evidence,
    expected_seen,
    one_run_note,
    recommendations,
)

CONTROLS_TITLE = "Can this experiment detect a gain?"
CONTROLS_ANCHOR = "#can-this-experiment-detect-a-gain"
ORDER = ("koniq", "cross_dataset", "convergence", "features")
RULE = ("**yes** / **no**: the 95 % interval of the gain lies above / below zero; "
        "**inconclusive**: it holds zero or was not measured.")


def _koniq_evidence(run: RunData, v: dict) -> str:
    """The KonIQ-10k answer's evidence, led by both models' test SRCC."""
    base, pre = run.finetunes.get("baseline"), run.finetunes.get("pretrained")
    if not (base and pre and base.test and pre.test):
        return ("the baseline and pretrained runs have not both finished: "
                + evidence("koniq", v))
    return (f"test SRCC {num(base.test.get('srcc'))} without, {num(pre.test.get('srcc'))} with "
            f"pretraining: {evidence('koniq', v)}")


def _caveat(verdicts: dict, variance: dict | None = None) -> str:
    """What the fine-tuning intervals carry, said once for every answer."""
    fine = {k: verdicts[k] for k in ("koniq", "cross_dataset") if k in verdicts}
    one = [WHERE[k] for k, v in fine.items() if v.get("one_run")]
    seeded = [f"the {WHERE[k]} answer rests on a {v['basis']}"
              for k, v in fine.items() if not v.get("one_run") and v["basis"] != "not measured"]
    parts = []
    if one:
        answers, its = ("answers", "Their intervals are") if len(one) > 1 else ("answer",
                                                                                 "Its interval is")
        parts.append(f"**Caveat:** one training run per model behind the {' and '.join(one)} "
                     f"{answers}. {its} a paired bootstrap over the test images: test-sample "
                     "noise only, not seed-to-seed variance, so such an answer stays "
                     "**inconclusive** whatever the interval says (`--repeats 5` gives intervals "
                     "across seeds).")
    if seeded:
        text = "; ".join(seeded)
        carries = (variance or {}).get("statement") or "training noise"
        parts.append(f"{text[0].upper()}{text[1:]}. Intervals over seeds carry {carries}.")
    return " ".join(parts)


def controls_line(comp: dict) -> str:
    """One line: did the positive and sham controls pass?"""
    ctl = comp.get("controls") or {}
    head = f"**[{CONTROLS_TITLE}]({CONTROLS_ANCHOR})**"
    if not ctl:
        return (f"{head} Not tested: the controls were not run (`--controls` adds a positive "
                "and a sham control).")
    parts = []
    for key, label in (("positive", "positive control"), ("negative", "sham control")):
        e = ctl[key]
        state = (f"not measured ({e['reason']})" if e.get("reason")
                 else f"{e['verdict']}, {'passed' if e['passed'] else 'failed'}")
        parts.append(f"{label} (expected {e['expected']}): {state}")
    if ctl["positive"]["passed"] and ctl["negative"]["passed"]:
        answer = "Yes"
    elif not ctl["positive"]["passed"]:
        answer = "No: an inconclusive main answer says nothing"
    else:
        answer = "Detects, but may invent gains"
    return f"{head} {answer}; {'; '.join(parts)}."


def power_line(comp: dict) -> str:
    """One line: could this run have detected the plan's expected gains?"""
    power = comp.get("power") or {}
    head = f"**[{POWER_TITLE}]({POWER_ANCHOR})**"
    rows = [(name, power[key]) for key, name in POWER_ROWS.items() if power.get(key)]
    if not rows:
        return f"{head} Not computed."
    seen = {expected_seen(p) for _, p in rows}
    answer = ("Yes" if seen == {"yes"} else "No" if seen == {"no"} else
              "Not estimable" if seen == {"not estimable"} else "In part")
    parts = [f"{name} +{p['mde']:.3f} (expected +{p['expected'][0]:g} to "
             f"+{p['expected'][1]:g})" if is_number(p.get("mde")) else f"{name} not estimable"
             for name, p in rows]
    one_run = any(p.get("basis") == "bootstrap" for _, p in rows)
    tail = " (from one run per model: an underestimate)" if one_run else ""
    return f"{head} {answer}: smallest detectable gain {'; '.join(parts)}{tail}."


def first_screen(run: RunData, comp: dict, warnings: list[str], demo_note: str) -> str:
    """"Does pretraining help?": answers, evidence, caveat, controls, power, next step."""
    verdicts = comp["verdicts"]
    rows = []
    for key in (k for k in ORDER if k in verdicts):
        v = verdicts[key]
        proof = _koniq_evidence(run, v) if key == "koniq" else evidence(key, v)
        if key == "cross_dataset" and v.get("n_sets"):
            proof = f"mean over {v['n_sets']} test sets: {proof}"
        rows.append([QUESTIONS[key], f"**{v['verdict']}**" + one_run_note(v), proof])
    parts = [table(["Question", "Answer", "Evidence"], rows),
             f"{RULE} {_caveat(verdicts, comp.get('variance'))}", rate_line(comp),
             controls_line(comp), power_line(comp),
             *warnings, *stage1_warnings(comp), demo_note,
             "**Next step:** " + " ".join(recommendations(comp))]
    return "\n\n".join(p for p in parts if p)
