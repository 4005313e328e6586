"""Statistical power of the pretrained-minus-baseline comparison: the smallest gain it could detect
(minimum detectable effect, MDE) and the number of repeats a given gain needs.

Seed basis: the paired t-test over per-seed differences, solved exactly with the noncentral t
distribution. One-run basis: the normal approximation on the bootstrap standard error, which holds
test-image noise only (seed-to-seed variance is not in it, so that MDE is optimistic).
Every test is two-sided at ALPHA, matching the 95 % intervals behind the yes / no / inconclusive
verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.80
TARGETS = (0.01, 0.02, 0.03)  # SRCC gains worth detecting
MAX_REPEATS = 100


def _check_sd(sd: float, name: str = "sd") -> None:
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"{name} must be a positive finite number, got {sd!r}: with zero or "
                         "unknown spread the power is undefined")


def _check_n(n: int) -> None:
    if n < 2:
        raise ValueError(f"the paired t-test needs n >= 2 seed differences, got {n}")


def _check_levels(alpha: float, power: float) -> None:
    if not (0 < alpha < 1 and alpha < power < 1):
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha}, power={power}")


def z_multiplier(alpha: float = ALPHA, power: float = POWER) -> float:
    """z_{1-alpha/2} + z_{power}: the MDE in standard errors under the normal approximation."""
    _check_levels(alpha, power)
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def _two_sided(crit: float, df: int, nc: float) -> float:
    """P(|T| > crit) for T ~ noncentral t(df, nc)."""
    # the far tail as sf at -nc: scipy's nct.cdf(-crit, df, nc) returns NaN there for large nc
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def paired_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Exact power of the two-sided paired t-test with n differences of true mean `effect`."""
    _check_sd(sd)
    _check_n(n)
    df = n - 1
    return _two_sided(float(stats.t.ppf(1 - alpha / 2, df)), df, effect * math.sqrt(n) / sd)


def mde_paired(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true mean difference the two-sided paired t-test over n seeds detects with
    `power` (exact, noncentral t)."""
    _check_sd(sd)
    _check_n(n)
    _check_levels(alpha, power)
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))

    def gap(nc: float) -> float:
        return _two_sided(crit, df, nc) - power

    high = crit + float(stats.norm.ppf(power)) + 1.0  # power rises with nc; widen until it passes
    while gap(high) < 0:
        high *= 2
    nc = optimize.brentq(gap, 0.0, high, xtol=1e-10)
    return nc * sd / math.sqrt(n)


def mde_normal(sd: float, n: int = 1, alpha: float = ALPHA, power: float = POWER) -> float:
    """Normal-approximation MDE, (z_{1-alpha/2} + z_{power}) * sd / sqrt(n); below the exact
    paired-t MDE for small n."""
    _check_sd(sd)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return z_multiplier(alpha, power) * sd / math.sqrt(n)


def mde_bootstrap(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """MDE of one run per arm from the bootstrap standard error of the difference (normal
    approximation)."""
    _check_sd(se, "se")
    return z_multiplier(alpha, power) * se


def se_from_interval(low: float, high: float, level: float = 1 - ALPHA) -> float:
    """Approximate standard error behind a central `level` interval, (high - low) / (2 z)."""
    if not (math.isfinite(low) and math.isfinite(high) and high >= low):
        raise ValueError(f"need a finite interval with low <= high, got ({low}, {high})")
    return (high - low) / (2 * float(stats.norm.ppf(0.5 + level / 2)))


def repeats_needed(effect: float, sd: float, alpha: float = ALPHA, power: float = POWER,
                   max_repeats: int = MAX_REPEATS) -> int | None:
    """Smallest number of paired repeats n (2..max_repeats) whose exact paired-t power for
    `effect` reaches `power`; None when max_repeats is not enough."""
    _check_sd(sd)
    _check_levels(alpha, power)
    if effect == 0:
        return None  # power stays at alpha for every n
    for n in range(2, max_repeats + 1):
        if paired_power(effect, sd, n, alpha) >= power:
            return n
    return None


def unpaired_sd(sd_a: float, sd_b: float) -> float:
    """SD of a difference of independent runs, sqrt(sd_a^2 + sd_b^2).

    Conservative when the seeds were in fact shared: pairing removes the covariance
    (sd_a^2 + sd_b^2 - 2 cov), which is positive when a seed/split is easy for both arms.
    """
    for name, value in (("sd_a", sd_a), ("sd_b", sd_b)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return math.hypot(sd_a, sd_b)


def _finite(values: Sequence[float | None] | None) -> np.ndarray:
    """The finite numbers among `values` (None and NaN left out) as float64."""
    if values is None:
        return np.empty(0)
    nums = [float(v) for v in values if v is not None]
    arr = np.asarray(nums, dtype=np.float64)
    return arr[np.isfinite(arr)]


def _key(target: float) -> str:
    return f"{target:g}"


def power_summary(diffs: Sequence[float | None] | None,
                  boot_interval: tuple[float | None, float | None] | None,
                  targets: Sequence[float] = TARGETS, *,
                  arms: tuple[Sequence[float | None], Sequence[float | None]] | None = None,
                  alpha: float = ALPHA, power: float = POWER,
                  max_repeats: int = MAX_REPEATS) -> dict:
    """JSON-able power of one metric's comparison: basis, n, sd or se, MDE, repeats needed and
    whether each target gain is detectable now.

    Basis, first that applies: "seeds" (>= 2 finite per-seed differences, paired t, exact);
    "unpaired seeds" (>= 2 finite values in each of `arms` = (baseline, pretrained) values,
    sd from unpaired_sd, n the smaller arm: conservative); "bootstrap" (one run per arm, the 95 %
    interval `boot_interval` of the difference; repeats_needed is None since seed variance is
    unknown). Values that cannot be computed are None and "note" says why.
    """
    _check_levels(alpha, power)
    targets = [float(t) for t in targets]
    if any(not (math.isfinite(t) and t > 0) for t in targets):
        raise ValueError(f"target gains must be positive numbers, got {targets}")
    out: dict = {"basis": None, "n": None, "sd": None, "se": None, "alpha": alpha,
                 "power": power, "mde": None, "mde_normal": None,
                 "targets": targets, "max_repeats": max_repeats,
                 "repeats_needed": {_key(t): None for t in targets},
                 "detectable": {_key(t): None for t in targets}, "note": None}
    d = _finite(diffs)
    arm_a, arm_b = (_finite(arms[0]), _finite(arms[1])) if arms else (np.empty(0), np.empty(0))
    if d.size >= 2:
        out["basis"], n, sd = "seeds", int(d.size), float(d.std(ddof=1))
    elif arm_a.size >= 2 and arm_b.size >= 2:
        out["basis"], n = "unpaired seeds", int(min(arm_a.size, arm_b.size))
        sd = unpaired_sd(float(arm_a.std(ddof=1)), float(arm_b.std(ddof=1)))
        out["note"] = ("seeds not paired: sd of the difference from per-arm spreads, "
                       "sqrt(sd_a^2 + sd_b^2), conservative")
    else:
        return _bootstrap_summary(out, boot_interval, targets, alpha, power)
    out["n"], out["sd"] = n, sd
    if sd == 0:
        out["note"] = (f"the {n} per-seed differences are all equal (sd 0): power cannot be "
                       "estimated; check that the runs of the two arms really differ")
        return out
    out["se"] = sd / math.sqrt(n)
    out["mde"] = mde_paired(sd, n, alpha, power)
    out["mde_normal"] = mde_normal(sd, n, alpha, power)
    for t in targets:
        need = repeats_needed(t, sd, alpha, power, max_repeats)
        out["repeats_needed"][_key(t)] = need
        out["detectable"][_key(t)] = need is not None and need <= n
    return out


def _bootstrap_summary(out: dict, boot_interval: tuple[float | None, float | None] | None,
                       targets: list[float], alpha: float, power: float) -> dict:
    """Fill `out` on the one-run basis: the bootstrap interval of the difference."""
    out["basis"], out["n"] = "bootstrap", 1
    low, high = boot_interval if boot_interval is not None else (None, None)
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)) \
            or high < low:
        out["note"] = (f"no usable bootstrap interval (got {boot_interval}) and fewer than 2 "
                       "per-seed differences: power cannot be estimated")
        return out
    se = se_from_interval(float(low), float(high), 1 - alpha)
    out["se"] = se
    if se == 0:
        out["note"] = ("the bootstrap interval has zero width (se 0): power cannot be "
                       "estimated; check the predictions of the two arms differ")
        return out
    out["mde"] = out["mde_normal"] = mde_bootstrap(se, alpha, power)
    out["detectable"] = {_key(t): t >= out["mde"] for t in targets}
    out["note"] = ("one run per arm: the bootstrap se holds test-image noise only, so this MDE "
                   "is optimistic; repeats needed cannot be computed without seed variance "
                   "(run with --repeats >= 2)")
    return out


def power_sentence(summary: dict, metric: str = "SRCC") -> str:
    """One report sentence: the smallest detectable gain and the repeats the target gains need."""
    level = f"{100 * (1 - summary['alpha']):g} %, {100 * summary['power']:g} % power"
    if summary["mde"] is None:
        return f"No power estimate for {metric}: {summary['note']}."
    head = f"the smallest gain this comparison could detect ({level}) is +{summary['mde']:.3f} " \
           f"{metric}"
    if summary["basis"] == "bootstrap":
        return (f"With one run per model (bootstrap se {summary['se']:.3f} over test images) "
                f"{head}; seed-to-seed variance is not in it, so the true MDE is larger and the "
                "repeats needed are unknown (run with --repeats >= 2).")
    n, sd = summary["n"], summary["sd"]
    spread = (f"{n} repeats (seed sd {sd:.3f})" if summary["basis"] == "seeds" else
              f"{n} repeats per model (unpaired, sd of the difference {sd:.3f}, conservative)")
    needs, ready = [], []
    for t in summary["targets"]:
        key = _key(t)
        if summary["detectable"][key]:
            ready.append(f"+{key}")
            continue
        need = summary["repeats_needed"][key]
        count = f"{need}" if need is not None else f"more than {summary['max_repeats']}"
        needs.append(f"+{key} needs {count} repeats")
    tail = ("detecting " + ", ".join(needs)) if needs else ""
    if ready:
        verb = "is" if len(ready) == 1 else "are"
        tail += ("; " if needs else "") + f"{', '.join(ready)} {verb} detectable already"
    return f"With {spread} {head}; {tail}."
