"""Power of the paired seed comparison and of one bootstrapped run, checked against simulation."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest
from scipy import stats

from tools.compare import power_comparisons
from tools.power import (
    ALPHA,
    POWER,
    mde_bootstrap,
    mde_normal,
    mde_paired,
    paired_power,
    power_sentence,
    power_summary,
    repeats_needed,
    se_from_interval,
    unpaired_sd,
)
from tools.verdicts import power_section

SIMS = 4000
SD = 0.02


def _rejection_rate(mean: float, sd: float, n: int, seed: int) -> float:
    """Share of SIMS simulated seed sets (n normal differences) the two-sided t-test rejects."""
    d = np.random.default_rng(seed).normal(mean, sd, size=(SIMS, n))
    return float(np.mean(stats.ttest_1samp(d, 0.0, axis=1).pvalue < ALPHA))


@pytest.mark.parametrize("n", [3, 5])
def test_exact_mde_has_the_stated_power_in_simulation(n: int) -> None:
    mde = mde_paired(SD, n)
    tol = 4 * math.sqrt(POWER * (1 - POWER) / SIMS)  # 4 binomial sd, about 0.025
    assert abs(_rejection_rate(mde, SD, n, seed=n) - POWER) < tol
    assert paired_power(mde, SD, n) == pytest.approx(POWER, abs=1e-8)


@pytest.mark.parametrize("n", [3, 5])
def test_no_effect_rejects_at_alpha(n: int) -> None:
    tol = 4 * math.sqrt(ALPHA * (1 - ALPHA) / SIMS)
    assert abs(_rejection_rate(0.0, SD, n, seed=10 + n) - ALPHA) < tol
    assert paired_power(0.0, SD, n) == pytest.approx(ALPHA, abs=1e-12)


def test_normal_approximation_underpowers_few_seeds() -> None:
    rate = _rejection_rate(mde_normal(SD, 3), SD, 3, seed=7)
    assert rate < POWER - 0.2  # the z-based MDE at n = 3 is detected far less than 80 % of the time


def test_normal_approximation_close_for_many_seeds_and_far_below_for_three() -> None:
    assert mde_normal(SD, 200) == pytest.approx(mde_paired(SD, 200), rel=0.02)
    assert mde_normal(SD, 200) < mde_paired(SD, 200)
    assert mde_normal(SD, 3) < 0.6 * mde_paired(SD, 3)


def test_mde_scales_with_sd_and_shrinks_with_n() -> None:
    assert mde_paired(2 * SD, 5) == pytest.approx(2 * mde_paired(SD, 5), rel=1e-6)
    mdes = [mde_paired(SD, n) for n in range(2, 30)]
    assert all(a > b for a, b in pairwise(mdes))


def test_power_is_symmetric_and_rises_with_effect() -> None:
    assert paired_power(-0.03, SD, 4) == pytest.approx(paired_power(0.03, SD, 4))
    powers = [paired_power(e, SD, 4) for e in (0.0, 0.01, 0.02, 0.04, 0.08)]
    assert all(a < b for a, b in pairwise(powers))
    assert powers[-1] > 0.95


@pytest.mark.parametrize("effect", [0.01, 0.02, 0.03])
def test_repeats_needed_is_the_first_n_reaching_power(effect: float) -> None:
    n = repeats_needed(effect, SD)
    assert n is not None and n > 2
    assert paired_power(effect, SD, n) >= POWER
    assert paired_power(effect, SD, n - 1) < POWER


def test_repeats_needed_monotone_in_effect_and_capped() -> None:
    needs = [repeats_needed(e, SD) for e in (0.01, 0.015, 0.02, 0.03, 0.05)]
    assert None not in needs
    assert all(a >= b for a, b in pairwise(needs))
    assert needs[0] > needs[-1]
    assert repeats_needed(0.001, SD) is None  # needs ~3000 repeats, past the cap of 100
    n = repeats_needed(0.01, SD)
    assert repeats_needed(0.01, SD, max_repeats=n - 1) is None
    assert repeats_needed(0.01, SD, max_repeats=n) == n
    assert repeats_needed(0.0, SD) is None


def test_bootstrap_mde_from_known_se() -> None:
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.80)  # 1.960 + 0.842 = 2.802
    assert mde_bootstrap(0.01) == pytest.approx(z * 0.01)
    assert mde_bootstrap(0.01) == pytest.approx(0.02802, abs=1e-5)
    assert mde_normal(0.01, 1) == pytest.approx(mde_bootstrap(0.01))


def test_interval_to_se_round_trip() -> None:
    se = 0.0137
    half = stats.norm.ppf(0.975) * se
    assert se_from_interval(0.05 - half, 0.05 + half) == pytest.approx(se)
    assert se_from_interval(-0.1, 0.1) == pytest.approx(0.1 / 1.96, rel=1e-3)
    reps = np.random.default_rng(0).normal(0.02, se, 20000)  # bootstrap-like replicates
    low, high = np.percentile(reps, [2.5, 97.5])
    assert se_from_interval(low, high) == pytest.approx(se, rel=0.03)


def test_unpaired_sd_is_conservative() -> None:
    assert unpaired_sd(0.03, 0.04) == pytest.approx(0.05)
    rng = np.random.default_rng(1)
    split = rng.normal(0, 0.03, 500)  # shared seed/split effect that pairing cancels
    a, b = split + rng.normal(0, 0.01, 500), split + rng.normal(0, 0.01, 500)
    assert np.std(b - a, ddof=1) < unpaired_sd(np.std(a, ddof=1), np.std(b, ddof=1))


def test_summary_on_seeds() -> None:
    diffs = [0.01, 0.03, -0.01]
    s = power_summary(diffs, (0.0, 0.02))
    sd = float(np.std(diffs, ddof=1))
    assert s["basis"] == "seeds" and s["n"] == 3 and s["sd"] == pytest.approx(sd)
    assert s["mde"] == pytest.approx(mde_paired(sd, 3))
    assert s["repeats_needed"] == {k: repeats_needed(float(k), sd) for k in ("0.01", "0.02",
                                                                              "0.03")}
    assert s["detectable"] == {"0.01": False, "0.02": False, "0.03": False}
    assert s["note"] is None
    json.dumps(s, allow_nan=False)
    tight = power_summary([0.1, 0.12, 0.11, 0.13], None)
    assert tight["detectable"] == {"0.01": False, "0.02": False, "0.03": True}
    assert tight["repeats_needed"]["0.03"] <= 4 < tight["repeats_needed"]["0.02"]


def test_summary_falls_back_to_bootstrap_with_one_difference() -> None:
    half = stats.norm.ppf(0.975) * 0.01
    s = power_summary([0.02, math.nan], (0.02 - half, 0.02 + half))
    assert s["basis"] == "bootstrap" and s["n"] == 1 and s["sd"] is None
    assert s["se"] == pytest.approx(0.01)
    assert s["mde"] == pytest.approx(mde_bootstrap(0.01))
    assert s["repeats_needed"] == {"0.01": None, "0.02": None, "0.03": None}
    assert s["detectable"] == {"0.01": False, "0.02": False, "0.03": True}
    assert "seed variance" in s["note"]
    json.dumps(s, allow_nan=False)


def test_summary_unpaired_arms() -> None:
    s = power_summary(None, None, arms=([0.50, 0.52, 0.51, None], [0.53, 0.50, 0.55]))
    sd = unpaired_sd(float(np.std([0.50, 0.52, 0.51], ddof=1)),
                     float(np.std([0.53, 0.50, 0.55], ddof=1)))
    assert s["basis"] == "unpaired seeds" and s["n"] == 3 and s["sd"] == pytest.approx(sd)
    assert "conservative" in s["note"]


@pytest.mark.parametrize(("diffs", "interval"), [
    ([0.02, 0.02, 0.02], None),  # zero spread across seeds
    ([0.02], (0.01, 0.01)),  # zero-width bootstrap interval
    ([math.nan, None], (math.nan, 0.02)),
    (None, None),
    ([], (0.03, 0.01)),  # reversed interval
])
def test_summary_degenerate_inputs_give_none_with_a_note(diffs: list | None,
                                                          interval: tuple | None) -> None:
    s = power_summary(diffs, interval)
    assert s["mde"] is None and s["note"]
    assert all(v is None for v in s["repeats_needed"].values())
    assert all(v is None for v in s["detectable"].values())
    json.dumps(s, allow_nan=False)
    assert power_sentence(s).startswith("No power estimate for SRCC:")


def test_low_level_functions_reject_bad_input() -> None:
    for bad in (0.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="positive finite"):
            mde_paired(bad, 3)
    with pytest.raises(ValueError, match="n >= 2"):
        paired_power(0.01, SD, 1)
    with pytest.raises(ValueError, match="low <= high"):
        se_from_interval(0.02, 0.01)


def test_sentences() -> None:
    seeds = power_sentence(power_summary([0.01, 0.03, -0.01], None))
    assert seeds.startswith("With 3 repeats (seed sd 0.020) the smallest gain this comparison "
                            "could detect (95 %, 80 % power) is +0.065 SRCC; detecting +0.01 "
                            "needs 34 repeats")
    assert "\n" not in seeds and seeds.endswith(".")
    mixed = power_sentence(power_summary([0.1, 0.12, 0.11, 0.13], None), metric="PLCC")
    assert "PLCC" in mixed and mixed.endswith("+0.03 is detectable already.")
    capped = power_sentence(power_summary([0.1, 0.2], None))
    assert "+0.01 needs more than 100 repeats" in capped
    boot = power_sentence(power_summary(None, (0.0, 0.04)))
    assert boot.startswith("With one run per model (bootstrap se 0.010")
    assert "--repeats >= 2" in boot


def test_comparisons_carry_power_from_seeds_or_else_the_bootstrap():
    """comparisons.json "power": seed differences when repeated, else the one-run interval."""
    boot = {"low": -0.02, "high": 0.04}
    one_run = {"finetuned": {"koniq10k": {"srcc": {"diff": boot}}},
               "finetuned_cross_mean": {"srcc": boot}, "seeds": {"repeats": 1}}
    power = power_comparisons(one_run)
    assert power["koniq10k_srcc"]["basis"] == "bootstrap"
    assert power["koniq10k_srcc"]["mde"] == pytest.approx(mde_bootstrap(0.06 / (2 * 1.959964)))
    assert power["cross_mean_srcc"]["expected"] == [0.01, 0.05]

    diffs = [0.01, 0.03, -0.01, 0.02]
    repeated = {**one_run, "seeds": {"koniq10k_srcc": {"diff": diffs}}}
    koniq = power_comparisons(repeated)["koniq10k_srcc"]
    assert koniq["basis"] == "seeds" and koniq["n"] == 4
    assert koniq["mde"] == pytest.approx(mde_paired(float(np.std(diffs, ddof=1)), 4))
    text = power_section({"power": power_comparisons(repeated)})
    assert "KonIQ-10k test SRCC | seeds | 4 |" in text and "cross-dataset mean SRCC" in text
