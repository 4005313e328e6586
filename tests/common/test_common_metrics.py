"""Metrics agree with scipy, the logistic fit behaves, and bad inputs fail clearly."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from common import metrics
from common.metrics import MetricError, evaluate_predictions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.uniform(0, 100, size=257)
    pred = 0.01 * target + rng.normal(size=257)
    assert metrics.srcc(pred, target) == pytest.approx(stats.spearmanr(pred, target)[0], abs=1e-6)
    assert metrics.plcc(pred, target) == pytest.approx(stats.pearsonr(pred, target)[0], abs=1e-6)
    assert metrics.krcc(pred, target) == pytest.approx(stats.kendalltau(pred, target)[0], abs=1e-6)
    assert metrics.rmse(pred, target) == pytest.approx(
        math.sqrt(np.mean((pred - target) ** 2)), abs=1e-6
    )


def test_ties_and_lists_are_handled_like_scipy() -> None:
    pred = [1, 2, 2, 3, 3, 3, 4]
    target = [1.0, 3.0, 2.0, 5.0, 4.0, 4.0, 7.0]
    assert metrics.srcc(pred, target) == pytest.approx(stats.spearmanr(pred, target)[0], abs=1e-6)
    assert metrics.krcc(pred, target) == pytest.approx(stats.kendalltau(pred, target)[0], abs=1e-6)


def test_logistic_fit_linearises_a_monotone_nonlinear_mapping() -> None:
    rng = np.random.default_rng(0)
    pred = rng.uniform(-4, 4, size=300)
    target = 80 / (1 + np.exp(-1.5 * pred)) + 10 + rng.normal(scale=0.5, size=300)
    raw = metrics.plcc(pred, target)
    fitted = metrics.plcc_logistic(pred, target)
    assert fitted > raw
    assert fitted > 0.99


def test_logistic_fit_handles_negative_correlation() -> None:
    rng = np.random.default_rng(1)
    pred = rng.uniform(0, 1, size=100)
    target = -5 * pred + rng.normal(scale=0.1, size=100)
    assert metrics.plcc_logistic(pred, target) > 0.9


def test_logistic_fallback_warns_and_returns_raw_plcc(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_convergence(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(metrics.optimize, "curve_fit", no_convergence)
    pred, target = [0.1, 0.4, 0.3, 0.9, 0.7], [1.0, 2.0, 3.0, 4.0, 5.0]
    with pytest.warns(metrics.LogisticFitWarning, match=r"did not converge"):
        value = metrics.plcc_logistic(pred, target)
    assert value == pytest.approx(stats.pearsonr(pred, target)[0], abs=1e-12)


def test_three_items_fall_back_to_raw_plcc() -> None:
    pred, target = [0.1, 0.4, 0.3], [1.0, 3.0, 2.0]  # fewer items than the logistic's parameters
    with pytest.warns(metrics.LogisticFitWarning, match=r"did not converge on 3 items"):
        result = metrics.evaluate_predictions(pred, target)
    assert result["plcc_logistic"] == pytest.approx(stats.pearsonr(pred, target)[0], abs=1e-12)


def test_evaluate_predictions_keys_and_values() -> None:
    rng = np.random.default_rng(3)
    target = rng.normal(size=50)
    pred = target + rng.normal(scale=0.3, size=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate_predictions(pred, target)
    assert set(result) == {"srcc", "plcc", "krcc", "rmse", "plcc_logistic", "n"}
    assert result["n"] == 50
    assert all(isinstance(result[k], float) for k in ("srcc", "plcc", "krcc", "rmse"))


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        ([1.0, 2.0], [1.0, 2.0], "at least 3"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "same length"),
        ([2.0, 2.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0], "constant"),
        ([1.0, 2.0, 3.0], [5.0, 5.0, 5.0], "targets are constant"),
        ([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0], "non-finite"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, float("inf")], "non-finite"),
    ],
)
def test_bad_inputs_raise_metric_error(pred: list, target: list, message: str) -> None:
    with pytest.raises(MetricError, match=message):
        evaluate_predictions(pred, target)
    with pytest.raises(MetricError, match=message):
        metrics.srcc(pred, target)


def test_non_strict_returns_nan_for_undefined_correlations() -> None:
    result = evaluate_predictions([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], strict=False)
    assert math.isnan(result["srcc"]) and math.isnan(result["plcc_logistic"])
    assert result["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert result["n"] == 3
    two = evaluate_predictions([1.0, 2.0], [1.0, 2.0], strict=False)
    assert math.isnan(two["krcc"])
    with pytest.raises(MetricError, match=r"same length"):
        evaluate_predictions([1.0, 2.0, 3.0], [1.0], strict=False)
