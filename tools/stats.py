"""Uncertainty of metric differences: paired bootstrap over test images, paired tests over seeds,
and the yes / no / inconclusive reading of an interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
LEVEL = 0.95
CORRELATIONS = ("srcc", "plcc")
_CHUNK = 250  # resamples per vectorised block: bounds memory on 11k-image test sets


def _row_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of two (R, n) arrays; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (xc * yc).sum(axis=1) / denom, np.nan)


def resampled_correlations(target: np.ndarray, preds: Sequence[np.ndarray], indices: np.ndarray
                           ) -> list[dict[str, np.ndarray]]:
    """SRCC and PLCC of each prediction vector against `target` on each row of resampled
    indices (R, n); the target's ranks are computed once per block for all of them."""
    out = [{key: np.empty(len(indices)) for key in CORRELATIONS} for _ in preds]
    for start in range(0, len(indices), _CHUNK):
        idx = indices[start:start + _CHUNK]
        t = target[idx]  # (r, n)
        ranks_t = stats.rankdata(t, axis=1)
        block = slice(start, start + len(idx))
        for pred, res in zip(preds, out, strict=True):
            p = pred[idx]
            res["plcc"][block] = _row_pearson(p, t)
            res["srcc"][block] = _row_pearson(stats.rankdata(p, axis=1), ranks_t)
    return out


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Central percentile interval of bootstrap replicates (NaN replicates left out)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class PairedBootstrap:
    """Bootstrap replicates of two models scored on the same images (a = reference, b = new)."""

    n: int
    resamples: int
    seed: int
    point: dict[str, dict[str, float]]  # metric -> {"a", "b", "diff"} on all images
    replicates: dict[str, dict[str, np.ndarray]]  # metric -> {"a", "b", "diff"} (R,)

    def summary(self, level: float = LEVEL) -> dict:
        """JSON-able: per metric the value and interval of a, b and the difference b - a."""
        out: dict = {"n": self.n, "resamples": self.resamples, "seed": self.seed,
                     "level": level}
        for metric, parts in self.point.items():
            out[metric] = {}
            for part, value in parts.items():
                low, high = percentile_interval(self.replicates[metric][part], level)
                out[metric][part] = {"value": value, "low": low, "high": high}
            out[metric]["verdict"] = verdict(out[metric]["diff"]["low"],
                                             out[metric]["diff"]["high"])
        return out


def paired_bootstrap(target: Sequence[float], pred_a: Sequence[float], pred_b: Sequence[float],
                     resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
                     ) -> PairedBootstrap:
    """Resample the images with replacement (seeded) and score both models on every resample."""
    t, a, b = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (target, pred_a, pred_b))
    if not (t.shape == a.shape == b.shape):
        raise ValueError(f"paired bootstrap needs one prediction per image from both models: "
                         f"got {t.size} targets, {a.size} and {b.size} predictions")
    if t.size < 3:
        raise ValueError(f"paired bootstrap needs at least 3 images, got {t.size}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    indices = np.random.default_rng(seed).integers(0, t.size, size=(resamples, t.size))
    full = np.arange(t.size)[None, :]
    point, replicates = {}, {}
    rep_a, rep_b = resampled_correlations(t, [a, b], indices)
    full_a, full_b = resampled_correlations(t, [a, b], full)
    for metric in CORRELATIONS:
        va, vb = float(full_a[metric][0]), float(full_b[metric][0])
        point[metric] = {"a": va, "b": vb, "diff": vb - va}
        replicates[metric] = {"a": rep_a[metric], "b": rep_b[metric],
                              "diff": rep_b[metric] - rep_a[metric]}
    return PairedBootstrap(int(t.size), int(resamples), int(seed), point, replicates)


def mean_of_bootstraps(results: Sequence[PairedBootstrap], metric: str = "srcc",
                       level: float = LEVEL) -> dict:
    """The unweighted mean difference over several test sets, with its interval.

    Each test set is resampled on its own; replicate r of the mean is the mean of the test sets'
    replicate r, so the interval carries every set's sampling noise.
    """
    if not results:
        raise ValueError("no bootstrap result to average")
    counts = {r.resamples for r in results}
    if len(counts) != 1:
        raise ValueError(f"bootstraps to average need equal resample counts, got {counts}")
    diff = float(np.mean([r.point[metric]["diff"] for r in results]))
    reps = np.mean([r.replicates[metric]["diff"] for r in results], axis=0)
    low, high = percentile_interval(reps, level)
    return {"value": diff, "low": low, "high": high, "verdict": verdict(low, high),
            "sets": len(results)}


def seed_test(reference: Sequence[float], new: Sequence[float], level: float = LEVEL) -> dict:
    """Paired comparison over seeds (run i of both models shares seed and split i).

    Gives the per-seed values, medians, spread, the t interval of the mean difference (new minus
    reference) and the p-values of the paired t-test and the Wilcoxon signed-rank test.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(new, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"seed test needs paired runs: got {a.size} and {b.size} values")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    d = b - a
    n = int(d.size)
    out: dict = {"n": n, "reference": a.tolist(), "new": b.tolist(), "diff": d.tolist(),
                 "level": level, "median_reference": _median(a), "median_new": _median(b),
                 "median_diff": _median(d), "mean_diff": float(d.mean()) if n else math.nan,
                 "std_diff": float(d.std(ddof=1)) if n > 1 else math.nan,
                 "low": math.nan, "high": math.nan, "p_ttest": math.nan, "p_wilcoxon": math.nan}
    if n >= 2:
        sd = float(d.std(ddof=1))
        half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
        out["low"], out["high"] = float(d.mean()) - half, float(d.mean()) + half
        if sd > 0:
            out["p_ttest"] = float(stats.ttest_rel(b, a).pvalue)
        if np.any(d != 0):
            out["p_wilcoxon"] = float(stats.wilcoxon(b, a).pvalue)
    out["verdict"] = verdict(out["low"], out["high"])
    return out


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else math.nan


def verdict(low: float | None, high: float | None) -> str:
    """"yes" when the interval of a gain lies above zero, "no" below zero, else "inconclusive"."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    if low > 0:
        return "yes"
    if high < 0:
        return "no"
    return "inconclusive"


def combine(verdicts: Sequence[str]) -> str:
    """One answer from several lines of evidence: yes only when all say yes, no when at least one
    says no and none says yes, inconclusive otherwise (including mixed evidence)."""
    if verdicts and all(v == "yes" for v in verdicts):
        return "yes"
    if "no" in verdicts and "yes" not in verdicts:
        return "no"
    return "inconclusive"
