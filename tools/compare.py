"""Every difference the report states, with its uncertainty, as JSON (RUN_DIR/comparisons.json).

    python -m tools.compare --runs_dir results/qualiclip_base [--resamples 2000 --seed 0]

Paired bootstrap over the test images for pretrained minus baseline (each test set, and their
mean over the cross-dataset sets), zero-shot minus the untrained control and minus each classical
baseline (NIQE, BRISQUE, PIQE: their metrics too), the linear probe of the
QualiCLIP encoder minus the encoder it started from, and each label fraction; with repeats, a
paired test across seeds; epochs and time to reach 95 % of the best validation SRCC; the four
verdicts of "Does pretraining help?"; the positive and sham controls (tools.controls); and the
Stage-1 health of the encoder fine-tuning started from (tools.stage1), without which the feature
question is not answered; the same fine-tuning answers for the matched-rate arm against the
baseline and for the pretrained runs against the matched-rate arm (the plan's encoder rate alone),
each arm's encoder rate and which variance the seed intervals carry (tools.arms).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from common.files import json_safe
from tools.arms import encoder_rates, matched_absent, seed_variance
from tools.controls import control_comparisons
from tools.convergence import convergence
from tools.markdown import is_number
from tools.power import power_summary
from tools.probe import prediction_file
from tools.rundata import (
    MATCHED,
    EvalResult,
    FinetuneRun,
    RunData,
    classical_names,
    load_run,
    read_predictions,
    seed_evals,
    seed_runs,
)
from tools.stage1 import stage1_encoder, stage1_health
from tools.stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    PairedBootstrap,
    combine,
    mean_of_bootstraps,
    paired_bootstrap,
    seed_test,
)

COMPARISONS_NAME = "comparisons.json"
IN_DOMAIN = "koniq10k"


def aligned(path_a: Path, path_b: Path) -> tuple[list[float], list[float], list[float]]:
    """(MOS, prediction a, prediction b) over the images both CSVs scored, in a's order."""
    rows_b = {r["image"]: r["prediction"] for r in read_predictions(path_b)}
    mos, a, b = [], [], []
    for row in read_predictions(path_a):
        if row["image"] in rows_b:
            mos.append(row["mos"])
            a.append(row["prediction"])
            b.append(rows_b[row["image"]])
    return mos, a, b


def bootstrap_files(path_a: Path, path_b: Path, resamples: int, seed: int
                    ) -> PairedBootstrap | None:
    """Paired bootstrap of two prediction CSVs; None when fewer than 3 images are shared."""
    mos, a, b = aligned(path_a, path_b)
    if len(mos) < 3:
        return None
    return paired_bootstrap(mos, a, b, resamples=resamples, seed=seed)


def bootstrap_evals(ref: EvalResult | None, new: EvalResult | None, resamples: int, seed: int
                    ) -> dict[str, PairedBootstrap]:
    """Per test set both evaluations scored, the paired bootstrap of new minus ref."""
    if ref is None or new is None:
        return {}
    out = {}
    for key in sorted(set(ref.predictions) & set(new.predictions)):
        result = bootstrap_files(ref.predictions[key], new.predictions[key], resamples, seed)
        if result is not None:
            out[key] = result
    return out


def _summaries(results: dict[str, PairedBootstrap]) -> dict:
    return {key: r.summary() for key, r in results.items()}


def _mean(results: list[PairedBootstrap]) -> dict | None:
    if not results:
        return None
    return {m: mean_of_bootstraps(results, m) for m in ("srcc", "plcc")}


def seed_pairs(run: RunData, ref: str = "baseline", new: str = "pretrained"
               ) -> list[tuple[FinetuneRun, FinetuneRun, int]]:
    """(ref run, new run, repeat index) of every repeat where both arms' runs exist."""
    a, b = seed_runs(run, ref), seed_runs(run, new)
    return [(a[i], b[i], i) for i in sorted(set(a) & set(b))]


def _cross_means(base: dict, pre: dict) -> tuple[float, float] | None:
    """Mean cross-dataset SRCC of the two arms of one repeat (metrics per test set)."""
    keys = sorted(k for k in set(base) & set(pre) if k != IN_DOMAIN)
    vals = [[r[k].get("srcc") for k in keys] for r in (base, pre)]
    if not keys or not all(is_number(v) for row in vals for v in row):
        return None
    return sum(vals[0]) / len(keys), sum(vals[1]) / len(keys)


def seed_comparisons(run: RunData, ref: str = "baseline", new: str = "pretrained") -> dict:
    """Paired tests across seeds of new against ref: KonIQ test SRCC/PLCC and the mean
    cross-dataset SRCC."""
    pairs = seed_pairs(run, ref, new)
    out: dict = {"repeats": len(pairs)}
    if len(pairs) < 2:
        return out
    for metric in ("srcc", "plcc"):
        vals = _numeric([(b.test.get(metric), p.test.get(metric)) for b, p, _ in pairs])
        out[f"{IN_DOMAIN}_{metric}"] = _paired_test(vals)
    repeats = [_seed_evals(run, i, (ref, new)) for _, _, i in pairs]
    cross = [c for base, pre in repeats if (c := _cross_means(base, pre)) is not None]
    if len(cross) >= 2:
        out["cross_mean_srcc"] = _paired_test(cross)
    out["per_test_set"] = {}
    for key in sorted({k for base, _ in repeats for k in base}):
        for metric in ("srcc", "plcc"):
            vals = _numeric([(a[key].get(metric), b[key].get(metric)) for a, b in repeats
                             if key in a and key in b])
            if len(vals) >= 2:
                out["per_test_set"].setdefault(key, {})[metric] = _paired_test(vals)
    return out


def _numeric(pairs: list[tuple]) -> list[tuple]:
    """The (reference, new) pairs whose two values are both numbers."""
    return [(a, b) for a, b in pairs if is_number(a) and is_number(b)]


def _paired_test(pairs: list[tuple]) -> dict:
    """seed_test of the new values against the reference values of the pairs."""
    return seed_test([a for a, _ in pairs], [b for _, b in pairs])


def _seed_evals(run: RunData, index: int, arms: tuple[str, str]) -> tuple[dict, dict]:
    """Metrics per test set of both arms for repeat `index` (0 = main run)."""
    evals = [seed_evals(run, arm).get(index) for arm in arms]
    return tuple(e.results if e is not None else {} for e in evals)


def probe_comparisons(run: RunData, resamples: int, seed: int) -> dict:
    """Linear probe: the QualiCLIP encoder minus the encoder it started from, per dataset."""
    if not run.probe:
        return {}
    encoders = run.probe.get("encoders") or []
    if "qualiclip" not in encoders:
        return {"reference": None, "reason": "no QualiCLIP-pretrained encoder was probed"}
    started = str((run.pretrain.args if run.pretrain else {}).get("imagenet_weights", "none"))
    reference = "imagenet" if started != "none" and "imagenet" in encoders else "random"
    folder = run.run_dir / "probe"
    out: dict = {"reference": reference, "datasets": {}, "mean": {}}
    kept: dict[str, list[PairedBootstrap]] = {}
    for key in sorted(run.probe.get("results") or {}):
        for kind in ("all", "last"):
            a = folder / prediction_file(reference, kind, key)
            b = folder / prediction_file("qualiclip", kind, key)
            if a.is_file() and b.is_file() and (r := bootstrap_files(a, b, resamples, seed)):
                out["datasets"].setdefault(key, {})[kind] = r.summary()
                kept.setdefault(kind, []).append(r)
    out["mean"] = {kind: _mean(rs) for kind, rs in kept.items()}
    return out


def label_comparisons(run: RunData, fine: dict[str, PairedBootstrap], resamples: int,
                      seed: int) -> dict:
    """KonIQ-10k test SRCC per fraction of training labels, pretrained minus baseline; 100 %
    without a run of its own is the main comparison `fine` (already bootstrapped)."""
    if not run.label_runs:
        return {}
    boots = {pct: bootstrap_evals(runs.get("baseline", (None, None))[1],
                                  runs.get("pretrained", (None, None))[1], resamples, seed)
             for pct, runs in run.label_runs.items()}
    boots.setdefault(100, fine)
    return {str(pct): boots[pct][IN_DOMAIN].summary() if IN_DOMAIN in boots[pct] else None
            for pct in sorted(boots)}


def _pick(seeds: dict | None, key: str, boot: dict | None) -> dict:
    """The interval a verdict rests on: across seeds when there are >= 2, else the bootstrap."""
    if seeds and key in seeds:
        s = seeds[key]
        return {"basis": f"paired t interval over {s['n']} seeds", "value": s["mean_diff"],
                "low": s["low"], "high": s["high"], "verdict": s["verdict"],
                "p_ttest": s["p_ttest"], "p_wilcoxon": s["p_wilcoxon"]}
    if boot:  # test-sample noise only: one run cannot tell a gain from seed-to-seed variation
        return {"basis": "paired bootstrap over test images, one training run per model "
                "(seed-to-seed variance is not in this interval)", "one_run": True, **boot,
                "test_interval_verdict": boot["verdict"], "verdict": "inconclusive"}
    return {"basis": "not measured", "value": math.nan, "low": math.nan, "high": math.nan,
            "verdict": "inconclusive"}


def finetune_answers(comp: dict) -> dict:
    """The cross-dataset and KonIQ-10k answers of a comparison of two fine-tuned arms (from its
    "finetuned", "finetuned_cross_mean" and "seeds"), each with the interval it rests on."""
    seeds = comp.get("seeds") or {}
    koniq = comp["finetuned"].get(IN_DOMAIN)
    koniq_boot = ({**koniq["srcc"]["diff"], "verdict": koniq["srcc"]["verdict"],
                   "n": koniq["n"]} if koniq else None)
    cross = comp.get("finetuned_cross_mean")
    cross_boot = {**cross["srcc"], "n_sets": cross["srcc"]["sets"]} if cross else None
    return {"cross_dataset": _pick(seeds, "cross_mean_srcc", cross_boot),
            "koniq": _pick(seeds, f"{IN_DOMAIN}_srcc", koniq_boot)}


def arm_comparison(run: RunData, ref: str, new: str, resamples: int, seed: int) -> dict:
    """Arm `new` minus arm `ref` as the main comparison measures it: paired bootstrap of their
    main runs' tests, paired tests over seeds, and the KonIQ-10k and cross-dataset answers."""
    fine = bootstrap_evals(run.evals.get(ref), run.evals.get(new), resamples, seed)
    out = {"reference": ref, "new": new, "finetuned": _summaries(fine),
           "finetuned_cross_mean": _mean([r for k, r in fine.items() if k != IN_DOMAIN]),
           "seeds": seed_comparisons(run, ref, new)}
    out["verdicts"] = finetune_answers(out)
    return out


def rate_comparisons(run: RunData, rates: dict, resamples: int, seed: int) -> dict:
    """"matched_rate" (the matched-rate arm minus the baseline: pretraining at one encoder rate)
    and "rate_effect" (the pretrained runs minus the matched-rate arm: the plan's rate alone)."""
    if not seed_runs(run, MATCHED):
        reason = {"reason": matched_absent(rates)}
        return {"matched_rate": reason, "rate_effect": reason}
    return {"matched_rate": arm_comparison(run, "baseline", MATCHED, resamples, seed),
            "rate_effect": arm_comparison(run, MATCHED, "pretrained", resamples, seed)}


def verdicts(comp: dict) -> dict:
    """The four answers, each with the numbers and the interval it rests on."""
    out = finetune_answers(comp)
    conv = comp.get("convergence") or {}
    if conv.get("epochs_gain"):
        e = conv["epochs_gain"]
        out["convergence"] = {"basis": f"paired t interval over {e['n']} seeds",
                              "value": e["mean_diff"], "low": e["low"], "high": e["high"],
                              "verdict": e["verdict"]}
    else:
        first = (conv.get("pairs") or [{}])[0]
        out["convergence"] = {"basis": first.get("reason") or conv.get("reason", "not measured"),
                              "value": first.get("epochs_gain", math.nan), "low": math.nan,
                              "high": math.nan, "verdict": "inconclusive"}
    evidence = {}
    probe_mean = (comp.get("probe") or {}).get("mean", {}).get("all")
    if probe_mean:
        evidence["linear probe (all stages), mean over datasets"] = probe_mean["srcc"]
    zs = comp.get("zero_shot_mean")
    if zs:
        evidence["zero-shot vs untrained control, mean over test sets"] = zs["srcc"]
    answer = combine([e["verdict"] for e in evidence.values()])
    out["features"] = {"basis": "all lines of evidence must agree", "evidence": evidence,
                       "verdict": answer, "evidence_verdict": answer}
    stage1 = comp.get("stage1") or {}
    if stage1.get("status") != "pass":  # features of a failed encoder say nothing of QualiCLIP
        out["features"]["verdict"] = "inconclusive"
        state = ("failed its health check" if stage1.get("status") == "fail"
                 else "could not be checked")
        reasons = "; ".join(stage1.get("reasons") or ["no Stage-1 health was computed"])
        out["features"]["stage1_gate"] = f"the Stage-1 encoder {state} ({reasons})"
    return out


# The experiment plan's expected gains (SRCC) per answer: what the power section measures against
EXPECTED_GAINS = {f"{IN_DOMAIN}_srcc": (0.01, 0.03), "cross_mean_srcc": (0.01, 0.05)}


def power_comparisons(comp: dict) -> dict:
    """Smallest detectable gain (95 %, 80 % power) of the KonIQ and cross-dataset answers, from
    the per-seed differences (>= 2 repeats) or else the one-run bootstrap interval."""
    seeds = comp.get("seeds") or {}
    koniq = (comp["finetuned"].get(IN_DOMAIN) or {}).get("srcc", {}).get("diff")
    cross = (comp.get("finetuned_cross_mean") or {}).get("srcc")
    out = {}
    for key, boot in ((f"{IN_DOMAIN}_srcc", koniq), ("cross_mean_srcc", cross)):
        diffs = (seeds.get(key) or {}).get("diff")
        interval = (boot["low"], boot["high"]) if boot else None
        out[key] = {**power_summary(diffs, interval), "expected": list(EXPECTED_GAINS[key])}
    return out


def classical_comparisons(run: RunData, resamples: int, seed: int) -> dict:
    """Per classical baseline: what it is, its metrics per test set, and the paired bootstrap
    of the zero-shot encoder minus it (each test set and their mean)."""
    out = {}
    for name in classical_names(run):
        ev = run.evals[name]
        diff = bootstrap_evals(ev, run.evals.get("zero_shot"), resamples, seed)
        out[ev.classical.get("name", name)] = {
            **ev.classical, "results": ev.results,
            "by_distortion": ev.data.get("by_distortion") or {},
            "zero_shot_minus": _summaries(diff), "zero_shot_minus_mean": _mean(list(diff.values()))}
    return out


def build_comparisons(run: RunData, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = DEFAULT_SEED) -> dict:
    """Every comparison of the run folder (absent pieces are left out or say why)."""
    fine = bootstrap_evals(run.evals.get("baseline"), run.evals.get("pretrained"), resamples,
                           seed)
    zero = bootstrap_evals(run.evals.get("zero_shot_untrained"), run.evals.get("zero_shot"),
                           resamples, seed)
    comp = {"resamples": resamples, "seed": seed, "level": 0.95,
            "finetuned": _summaries(fine),
            "finetuned_cross_mean": _mean([r for k, r in fine.items() if k != IN_DOMAIN]),
            "zero_shot": _summaries(zero), "zero_shot_mean": _mean(list(zero.values())),
            "classical": classical_comparisons(run, resamples, seed),
            "seeds": seed_comparisons(run),
            "convergence": convergence([(b, p) for b, p, _ in seed_pairs(run)]),
            "probe": probe_comparisons(run, resamples, seed),
            "labels": label_comparisons(run, fine, resamples, seed),
            "controls": control_comparisons(run),
            "stage1": stage1_health(run.pretrain, run.untrained, stage1_encoder(run)),
            "encoder_rates": encoder_rates(run), "variance": seed_variance(run)}
    comp.update(rate_comparisons(run, comp["encoder_rates"], resamples, seed))
    comp["power"] = power_comparisons(comp)
    comp["verdicts"] = verdicts(comp)
    return comp


def write_comparisons(run: RunData, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = DEFAULT_SEED) -> tuple[dict, Path]:
    """Compute the comparisons and write RUN_DIR/comparisons.json (NaN as null)."""
    from common.files import atomic_write_json

    comp = json_safe(build_comparisons(run, resamples, seed))
    path = run.run_dir / COMPARISONS_NAME
    atomic_write_json(comp, path)
    return comp, path


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs_dir", required=True, help="run folder (RUN_DIR) of the chain")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                        help="bootstrap resamples (>= 1000 for the report)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed")
    args = parser.parse_args(argv)
    try:
        _, path = write_comparisons(load_run(args.runs_dir), args.resamples, args.seed)
    except FileNotFoundError as exc:
        sys.exit(f"error: {exc}")
    print(f"comparisons written: {path}")


if __name__ == "__main__":
    main()
