"""Convergence from the validation curves: epochs and time to reach 95 % of the best SRCC."""

from __future__ import annotations

from collections.abc import Sequence

from tools.markdown import is_number
from tools.rundata import FinetuneRun
from tools.stats import seed_test

TARGET = 0.95


def reach(metrics: Sequence[dict], target: float) -> dict | None:
    """First epoch whose validation SRCC is >= target, and the wall time of the epochs up to it
    (training + validation; GPU time on a GPU run); None when no epoch reaches it."""
    elapsed = 0.0
    for record in sorted(metrics, key=lambda r: r.get("epoch", 0)):
        elapsed += record.get("time_s") if is_number(record.get("time_s")) else 0.0
        if is_number(record.get("val_srcc")) and record["val_srcc"] >= target:
            return {"epoch": record["epoch"], "time_s": elapsed}
    return None


def best_val(metrics: Sequence[dict]) -> float | None:
    """Best validation SRCC of a run's curve."""
    values = [r["val_srcc"] for r in metrics if is_number(r.get("val_srcc"))]
    return max(values) if values else None


def pair_convergence(base: FinetuneRun, pre: FinetuneRun) -> dict:
    """One seed: each run's own 95 % point, and both runs timed to a common target, 95 % of the
    lower of the two best validation SRCCs (a level both reach, so a run that peaks early at a low
    value does not count as fast)."""
    out: dict = {}
    bests = {}
    for name, run in (("baseline", base), ("pretrained", pre)):
        best = best_val(run.metrics)
        bests[name] = best
        own = reach(run.metrics, TARGET * best) if best is not None and best > 0 else None
        out[name] = {"best_val_srcc": best, "own_95": own}
    if any(b is None or b <= 0 for b in bests.values()):
        out["reason"] = "a run has no positive validation SRCC: nothing to converge to"
        return out
    target = TARGET * min(bests.values())
    out["target"] = target
    for name, run in (("baseline", base), ("pretrained", pre)):
        out[name]["common"] = reach(run.metrics, target)
    b, p = out["baseline"]["common"], out["pretrained"]["common"]
    out["epochs_gain"] = b["epoch"] - p["epoch"]  # positive: the pretrained run is faster
    out["time_gain_s"] = b["time_s"] - p["time_s"]
    return out


def convergence(pairs: Sequence[tuple[FinetuneRun, FinetuneRun]]) -> dict:
    """Per seed pair the convergence numbers; with >= 2 pairs, paired intervals of the gains."""
    if not pairs:
        return {"reason": "the baseline and pretrained runs have not both run", "pairs": []}
    done = [pair_convergence(b, p) for b, p in pairs]
    out: dict = {"target_fraction": TARGET, "pairs": done}
    gains = [d for d in done if "epochs_gain" in d]
    if len(gains) >= 2:
        # seed_test(reference, new) gives new - reference: baseline epochs - pretrained epochs
        out["epochs_gain"] = seed_test([d["pretrained"]["common"]["epoch"] for d in gains],
                                       [d["baseline"]["common"]["epoch"] for d in gains])
        out["time_gain_s"] = seed_test([d["pretrained"]["common"]["time_s"] for d in gains],
                                       [d["baseline"]["common"]["time_s"] for d in gains])
    elif len(done) == 1:
        out["reason"] = ("one training run per model: no interval for the difference in epochs "
                         "(--repeats N gives one)")
    else:
        out["reason"] = "fewer than two seeds where both runs reach the common target"
    return out
