"""Paired bootstrap and seed test on constructed predictions whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tools.stats import combine, mean_of_bootstraps, paired_bootstrap, seed_test, verdict


def _models(n: int, noise_a: float, noise_b: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    mos = rng.uniform(0, 100, n)
    return mos, mos + rng.normal(0, noise_a, n), mos + rng.normal(0, noise_b, n)


def test_identical_models_give_a_zero_interval() -> None:
    mos, pred, _ = _models(200, 20, 20)
    result = paired_bootstrap(mos, pred, pred, resamples=1000, seed=3).summary()
    for metric in ("srcc", "plcc"):
        diff = result[metric]["diff"]
        assert diff["value"] == diff["low"] == diff["high"] == 0.0
        assert result[metric]["verdict"] == "inconclusive"
    assert result["srcc"]["a"]["value"] == pytest.approx(stats.spearmanr(pred, mos)[0])
    assert result["plcc"]["a"]["value"] == pytest.approx(stats.pearsonr(pred, mos)[0])
    assert result["resamples"] == 1000 and result["n"] == 200


def test_equally_good_models_interval_covers_zero() -> None:
    # 40 independent pairs of equally noisy models: a 95% interval should hold zero ~95% of the time
    covered = {"srcc": 0, "plcc": 0}
    for s in range(40):
        mos, a, b = _models(100, 25, 25, seed=100 + s)
        result = paired_bootstrap(mos, a, b, resamples=400, seed=s).summary()
        for metric in covered:
            diff = result[metric]["diff"]
            assert diff["low"] <= diff["value"] <= diff["high"]
            covered[metric] += diff["low"] < 0 < diff["high"]
    assert all(count >= 34 for count in covered.values()), covered


def test_clearly_better_model_interval_excludes_zero() -> None:
    mos, worse, better = _models(300, 40, 5, seed=2)
    result = paired_bootstrap(mos, worse, better, resamples=1000, seed=0).summary()
    assert result["srcc"]["diff"]["low"] > 0 and result["srcc"]["verdict"] == "yes"
    assert result["plcc"]["diff"]["low"] > 0 and result["plcc"]["verdict"] == "yes"
    swapped = paired_bootstrap(mos, better, worse, resamples=1000, seed=0).summary()
    assert swapped["srcc"]["diff"]["high"] < 0 and swapped["srcc"]["verdict"] == "no"
    # each model's own interval holds its full-data value
    for part in ("a", "b"):
        own = result["srcc"][part]
        assert own["low"] <= own["value"] <= own["high"]


def test_bootstrap_is_seeded() -> None:
    mos, a, b = _models(100, 20, 15, seed=4)
    first = paired_bootstrap(mos, a, b, resamples=200, seed=7).summary()
    again = paired_bootstrap(mos, a, b, resamples=200, seed=7).summary()
    other = paired_bootstrap(mos, a, b, resamples=200, seed=8).summary()
    assert first == again
    assert first["srcc"]["diff"]["low"] != other["srcc"]["diff"]["low"]


def test_bootstrap_rejects_unpaired_predictions() -> None:
    with pytest.raises(ValueError, match="one prediction per image"):
        paired_bootstrap([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3])


def test_mean_over_test_sets() -> None:
    runs = [paired_bootstrap(*_models(150, 40, 5, seed=s)[0:3], resamples=500) for s in (5, 6)]
    mean = mean_of_bootstraps(runs)
    assert mean["sets"] == 2 and mean["verdict"] == "yes"
    assert mean["value"] == pytest.approx(np.mean([r.point["srcc"]["diff"] for r in runs]))


def test_seed_test_on_known_values() -> None:
    # differences 1, 2, 3: mean 2, sd 1, t = 2 * sqrt(3) with 2 degrees of freedom
    result = seed_test([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert result["mean_diff"] == 2.0 and result["median_diff"] == 2.0
    assert (result["low"], result["high"]) == pytest.approx((2 - half, 2 + half))
    assert result["p_ttest"] == pytest.approx(0.0742, abs=1e-4)
    assert result["p_wilcoxon"] == pytest.approx(0.25)  # exact: 2 of the 8 sign patterns
    assert result["verdict"] == "inconclusive"  # the interval (-0.48, 4.48) holds zero


def test_seed_test_clear_gain_and_loss() -> None:
    base = [0.80, 0.82, 0.79, 0.81, 0.80, 0.83]
    gain = [0.85, 0.88, 0.83, 0.86, 0.85, 0.89]
    result = seed_test(base, gain)
    assert result["verdict"] == "yes" and result["p_ttest"] < 0.001
    assert result["median_new"] == pytest.approx(0.855)
    assert seed_test(gain, base)["verdict"] == "no"
    single = seed_test([0.8], [0.9])
    assert single["n"] == 1 and math.isnan(single["low"]) and single["verdict"] == "inconclusive"


def test_verdict_and_combine() -> None:
    assert verdict(0.01, 0.2) == "yes" and verdict(-0.2, -0.01) == "no"
    assert verdict(-0.1, 0.1) == "inconclusive" and verdict(None, 0.1) == "inconclusive"
    assert verdict(math.nan, 0.1) == "inconclusive"
    assert combine(["yes", "yes"]) == "yes"
    assert combine(["yes", "inconclusive"]) == "inconclusive"
    assert combine(["yes", "no"]) == "inconclusive"
    assert combine(["no", "inconclusive"]) == "no"
    assert combine([]) == "inconclusive"
