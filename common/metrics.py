"""IQA correlation metrics: SRCC, PLCC, KRCC, RMSE and PLCC after the 4-parameter logistic fit."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

from common.errors import UserError

ArrayLike = Sequence[float] | np.ndarray

METRIC_KEYS = ("srcc", "plcc", "krcc", "rmse", "plcc_logistic", "n")


class MetricError(UserError, ValueError):
    """Predictions and targets cannot be compared (too few, mismatched, constant, NaN)."""


class LogisticFitWarning(UserWarning):
    """The 4-parameter logistic did not converge; PLCC of the raw prediction is reported instead."""


def _as_pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert pred/target to float64 vectors of equal length >= 3."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise MetricError(
            f"predictions and targets must have the same length: got {p.size} predictions and "
            f"{t.size} targets (check that every image was scored exactly once)"
        )
    if p.size < 3:
        raise MetricError(f"correlations need at least 3 items, got {p.size}")
    for label, values in (("predictions", p), ("targets", t)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise MetricError(
                f"{label} contain {bad.size} non-finite value(s) (first at index {int(bad[0])}); "
                "check the model output or the label file"
            )
    if np.ptp(p) == 0:
        raise MetricError(
            f"predictions are constant (all {p[0]:.6g}); correlations are undefined "
            "(the model may have collapsed or not been trained)"
        )
    if np.ptp(t) == 0:
        raise MetricError(f"targets are constant (all {t[0]:.6g}); correlations are undefined")
    return p, t


def srcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Spearman rank-order correlation coefficient."""
    p, t = _as_pair(pred, target)
    return float(stats.spearmanr(p, t)[0])


def plcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Pearson linear correlation coefficient of the raw predictions."""
    p, t = _as_pair(pred, target)
    return float(stats.pearsonr(p, t)[0])


def krcc(pred: ArrayLike, target: ArrayLike) -> float:
    """Kendall rank correlation coefficient (tau-b)."""
    p, t = _as_pair(pred, target)
    return float(stats.kendalltau(p, t)[0])


def rmse(pred: ArrayLike, target: ArrayLike) -> float:
    """Root mean squared error between raw predictions and targets."""
    p, t = _as_pair(pred, target)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def logistic_4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """4-parameter logistic of IQA papers: (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""
    z = np.clip(-(x - b3) / (abs(b4) + 1e-12), -500.0, 500.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def fit_logistic(pred: ArrayLike, target: ArrayLike) -> np.ndarray | None:
    """Fit the 4-parameter logistic mapping pred -> target; None when the fit does not converge."""
    p, t = _as_pair(pred, target)
    slope_sign = 1.0 if stats.pearsonr(p, t)[0] >= 0 else -1.0
    b1, b2 = (t.max(), t.min()) if slope_sign > 0 else (t.min(), t.max())
    scale = float(np.std(p)) or 1.0
    p0 = [b1, b2, float(np.mean(p)), scale]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            params, _ = optimize.curve_fit(logistic_4, p, t, p0=p0, maxfev=10000)
    except (RuntimeError, ValueError, TypeError, optimize.OptimizeWarning):
        return None  # TypeError: fewer items than the logistic's 4 parameters
    if not np.all(np.isfinite(params)):
        return None
    return params


def plcc_logistic(pred: ArrayLike, target: ArrayLike) -> float:
    """PLCC after mapping predictions through the fitted 4-parameter logistic (IQA protocol)."""
    p, t = _as_pair(pred, target)
    params = fit_logistic(p, t)
    if params is not None:
        mapped = logistic_4(p, *params)
        if np.ptp(mapped) > 0 and np.all(np.isfinite(mapped)):
            return float(stats.pearsonr(mapped, t)[0])
    warnings.warn(
        f"4-parameter logistic fit did not converge on {p.size} items; "
        "reporting PLCC of the raw predictions as plcc_logistic",
        LogisticFitWarning,
        stacklevel=2,
    )
    return float(stats.pearsonr(p, t)[0])


def evaluate_predictions(pred: ArrayLike, target: ArrayLike, strict: bool = True) -> dict:
    """All metrics as a dict (srcc, plcc, krcc, rmse, plcc_logistic, n).

    strict=False returns NaN for correlations that are undefined (too few items, constant or
    non-finite values) instead of raising; a length mismatch always raises.
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    try:
        _as_pair(p, t)
    except MetricError:
        if strict or p.shape != t.shape:
            raise
        defined = p.size > 0 and bool(np.all(np.isfinite(p)) and np.all(np.isfinite(t)))
        err = float(np.sqrt(np.mean((p - t) ** 2))) if defined else math.nan
        return {
            "srcc": math.nan,
            "plcc": math.nan,
            "krcc": math.nan,
            "rmse": err,
            "plcc_logistic": math.nan,
            "n": int(p.size),
        }
    return {
        "srcc": srcc(p, t),
        "plcc": plcc(p, t),
        "krcc": krcc(p, t),
        "rmse": rmse(p, t),
        "plcc_logistic": plcc_logistic(p, t),
        "n": int(p.size),
    }
