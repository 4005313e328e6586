"""Warnings for models that predict (almost) one score: their SRCC ranks near-ties, not quality."""

from __future__ import annotations

import numpy as np

from tools.markdown import is_number
from tools.reference import dataset_name
from tools.rundata import EvalResult, RunData, read_predictions

SPREAD_FLOOR = 0.05  # prediction SD below this share of the MOS SD: a constant predictor
MODEL_NAMES = {"baseline": "the baseline", "pretrained": "the QualiCLIP-pretrained model",
               "pretrained_matched": "the pretrained model at the baseline's encoder rate",
               "zero_shot": "the zero-shot encoder",
               "zero_shot_untrained": "the untrained zero-shot control"}


def _reference_sd(evaluation: EvalResult, dataset: str, mos: np.ndarray) -> float | None:
    """SD of the MOS on the scale the model predicts on; None for zero-shot scores (no scale)."""
    if evaluation.data.get("mode") == "zero_shot":
        return None
    config = evaluation.data.get("config") or {}
    if config.get("dataset") == dataset and mos.size > 1:
        return float(mos.std())
    if is_number(config.get("score_scale")):
        return float(config["score_scale"])  # SD of the training MOS, saved with the model
    return None


def _problem(evaluation: EvalResult, dataset: str) -> str | None:
    """Why the model's predictions on one test set are degenerate, or None."""
    srcc = (evaluation.results.get(dataset) or {}).get("srcc")
    rows = read_predictions(evaluation.predictions[dataset])
    mos = np.array([r["mos"] for r in rows])
    pred = np.array([r["prediction"] for r in rows])
    if not is_number(srcc):
        return f"{dataset_name(dataset)} (SRCC undefined: the predictions do not vary)"
    reference = _reference_sd(evaluation, dataset, mos)
    if reference and pred.size > 1 and pred.std() < SPREAD_FLOOR * reference:
        return (f"{dataset_name(dataset)} (prediction SD {pred.std():.3g} is "
                f"{100 * pred.std() / reference:.1f} % of the MOS SD {reference:.3g}; "
                f"predictions {pred.min():.4g} to {pred.max():.4g})")
    return None


def degenerate_warnings(run: RunData) -> list[str]:
    """One line per model whose predictions are (almost) constant on some test set."""
    lines = []
    for name, evaluation in run.evals.items():
        problems = [p for key in evaluation.predictions if (p := _problem(evaluation, key))]
        if problems:
            lines.append(f"**Degenerate model**: {MODEL_NAMES.get(name, name)} predicts almost one "
                         f"score on {'; '.join(problems)}. Its SRCC there ranks near-ties and says "
                         "little about quality; a verdict resting on it is not evidence.")
    return lines
