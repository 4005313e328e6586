"""Plots drawn from a run folder's JSON and CSV files (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator, NullLocator

from tools.markdown import is_number
from tools.reference import dataset_name
from tools.rundata import MATCHED, EvalResult, RunData, read_predictions

COLORS = {"baseline": "tab:blue", "pretrained": "tab:orange", "zero_shot": "tab:green",
          "zero_shot_untrained": "tab:gray", MATCHED: "tab:red"}
LABELS = {"baseline": "baseline (no QualiCLIP)", "pretrained": "QualiCLIP-pretrained",
          "zero_shot": "zero-shot encoder", "zero_shot_untrained": "untrained encoder, zero-shot",
          MATCHED: "QualiCLIP-pretrained, baseline's encoder rate"}


class PlotSkipped(RuntimeError):
    """A plot could not be drawn; the message says why, in words, for the report."""


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    pairs = [(r["epoch"], r[key]) for r in records
             if is_number(r.get("epoch")) and is_number(r.get(key))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write a figure as PNG (folder created) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def finetune_curves(run: RunData, out_dir: Path) -> Path:
    """Train loss, train SRCC and validation SRCC per epoch, baseline vs pretrained."""
    if not any(r.metrics for r in run.finetunes.values()):
        raise PlotSkipped("no fine-tuning run has per-epoch metrics yet (metrics.jsonl missing)")
    fig, (ax_loss, ax_srcc) = plt.subplots(1, 2, figsize=(10, 4))
    for name, ft in run.finetunes.items():
        color = COLORS.get(name)
        ax_loss.plot(*_series(ft.metrics, "train_loss"), "o-", color=color, label=LABELS[name])
        ax_srcc.plot(*_series(ft.metrics, "val_srcc"), "o-", color=color,
                     label=f"{LABELS[name]}, validation")
        ax_srcc.plot(*_series(ft.metrics, "train_srcc"), "x--", color=color, alpha=0.6,
                     label=f"{LABELS[name]}, train")
    ax_loss.set(title="Fine-tuning loss (L1)", xlabel="epoch", ylabel="train loss")
    ax_srcc.set(title="Fine-tuning SRCC", xlabel="epoch", ylabel="SRCC")
    for ax in (ax_loss, ax_srcc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, out_dir / "finetune_curves.png")


def pretrain_loss_series(run: RunData) -> list[tuple[str, list[float], list[float]]]:
    """(label, epochs, values) of the total loss and of every loss term with a weight above 0:
    a term with weight 0 is logged but not in the loss, so it is not drawn."""
    metrics = run.pretrain.metrics
    weighted = []
    for term in ("consistency", "ranking"):
        weight = run.pretrain.loss_weight(term)
        if weight is None or weight > 0:
            shown = "unknown" if weight is None else f"{weight:g}"
            weighted.append((term, shown))
    formula = " + ".join(f"{w} x {t}" for t, w in weighted) or "no weighted term"
    series = [(f"total loss = {formula}", *_series(metrics, "loss"))]
    series += [(f"{t} (weight {w})", *_series(metrics, t)) for t, w in weighted]
    return series


def pretrain_figure(run: RunData) -> plt.Figure:
    """Loss terms per pretraining epoch, beside the ranking accuracy on the training batches and
    the label-free validation SRCC (held-out images and types), each with its own chance line."""
    if run.pretrain is None or not run.pretrain.metrics:
        raise PlotSkipped("the pretraining run has no per-epoch metrics (metrics.jsonl missing)")
    metrics = run.pretrain.metrics
    fig, (ax, ax_signal) = plt.subplots(1, 2, figsize=(10, 4))
    (total, *terms) = pretrain_loss_series(run)
    # The total is a wide pale band so a term equal to it (the only weighted one) stays visible.
    ax.plot(total[1], total[2], "-", color="black", lw=5, alpha=0.25, label=total[0])
    for (label, x, y), style in zip(terms, ("s--", "^:"), strict=False):
        ax.plot(x, y, style, ms=4, label=label)
    ax.set(title="QualiCLIP pretraining loss", xlabel="epoch", ylabel="loss")
    signals = (("rank_accuracy", "o-", "tab:blue", 0.5,
                "level pairs ranked correctly (training batches)"),
               ("val_srcc", "s-", "tab:red", 0.0, "validation SRCC (held-out images and types)"))
    for key, style, color, chance, label in signals:
        ax_signal.plot(*_series(metrics, key), style, color=color, label=label)
        ax_signal.axhline(chance, color=color, lw=0.8, ls=":",
                          label=f"chance for {label.split(' (')[0]}: {chance:g}")
    ax_signal.set(title="Is the encoder learning quality?", xlabel="epoch",
                  ylabel="rank accuracy (0..1) / SRCC (-1..1)", ylim=(-1, 1))
    for axis in (ax, ax_signal):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return fig


def pretrain_losses(run: RunData, out_dir: Path) -> Path:
    """pretrain_figure written to OUT_DIR/pretrain_loss.png."""
    return save_figure(pretrain_figure(run), out_dir / "pretrain_loss.png")


def prediction_scale(evaluation: EvalResult, dataset: str, mos: np.ndarray
                     ) -> tuple[float, float] | None:
    """The MOS range a fine-tuned model predicts on (its training labels' range; the test set's
    own range when it is the training dataset and the range was not saved); None for zero-shot
    scores, which have no MOS scale."""
    if evaluation.data.get("mode") == "zero_shot":
        return None
    config = evaluation.data.get("config") or {}
    saved = config.get("mos_range")
    if isinstance(saved, list | tuple) and len(saved) == 2 and all(map(is_number, saved)):
        return float(saved[0]), float(saved[1])
    if config.get("dataset") == dataset and mos.size:
        return float(mos.min()), float(mos.max())
    return None


def scatter_panel(ax: plt.Axes, mos: np.ndarray, pred: np.ndarray,
                  scale: tuple[float, float] | None, color: str) -> None:
    """Predicted vs MOS on one axis; on a MOS scale the y-axis spans that whole scale (a constant
    predictor shows as a flat line) with the scale drawn as a band."""
    ax.scatter(mos, pred, s=8, alpha=0.6, color=color)
    if scale is None:
        ax.set(ylabel="zero-shot score (own scale, not MOS)")
        return
    low, high = min(scale[0], float(pred.min())), max(scale[1], float(pred.max()))
    pad = 0.05 * (high - low or 1.0)
    ax.axhspan(*scale, color="gray", alpha=0.12, label="training MOS range (the model's scale)")
    ax.set(ylim=(low - pad, high + pad), ylabel="prediction (MOS scale)")
    ax.legend(fontsize=7, loc="upper left")


def scatter_figure(run: RunData, dataset: str) -> plt.Figure:
    """Predicted score vs MOS on one test set, one panel per evaluated model."""
    panels = [(name, ev) for name, ev in run.evals.items() if dataset in ev.predictions]
    if not panels:
        raise PlotSkipped(f"no predictions CSV for {dataset_name(dataset)}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8), squeeze=False)
    for ax, (name, ev) in zip(axes[0], panels, strict=True):
        rows = read_predictions(ev.predictions[dataset])
        mos = np.array([r["mos"] for r in rows])
        pred = np.array([r["prediction"] for r in rows])
        scatter_panel(ax, mos, pred, prediction_scale(ev, dataset, mos),
                      COLORS.get(name, "tab:gray"))
        srcc = (ev.results.get(dataset) or {}).get("srcc")
        title = LABELS.get(name, name) + (f"\nSRCC {srcc:.3f}" if is_number(srcc) else "")
        ax.set(title=title, xlabel="MOS")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Predicted vs MOS on {dataset_name(dataset)}")
    return fig


def prediction_scatter(run: RunData, dataset: str, out_dir: Path) -> Path:
    """scatter_figure written to OUT_DIR/scatter_<dataset>.png."""
    return save_figure(scatter_figure(run, dataset), out_dir / f"scatter_{dataset}.png")


def repeats_spread(groups: dict[str, list[float]], out_dir: Path) -> Path:
    """Box plot of the test SRCC over repeated fine-tuning runs."""
    names = [n for n, values in groups.items() if values]
    if not names:
        raise PlotSkipped("no repeated fine-tuning run finished")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.boxplot([groups[n] for n in names])
    ax.set_xticks(range(1, len(names) + 1), [LABELS.get(n, n) for n in names])
    for i, n in enumerate(names, start=1):
        ax.scatter([i] * len(groups[n]), groups[n], color=COLORS.get(n, "k"), zorder=3, s=12)
    ax.set(title="KonIQ-10k test SRCC over repeats", ylabel="SRCC")
    ax.grid(alpha=0.3)
    return save_figure(fig, out_dir / "repeats_srcc.png")


def label_efficiency(labels: dict[str, dict | None], out_dir: Path) -> Path:
    """KonIQ-10k test SRCC with 95 % intervals against the fraction of training labels."""
    points = {pct: r for pct, r in labels.items() if r}
    if not points:
        raise PlotSkipped("no label fraction has both runs tested on KonIQ-10k")
    pcts = sorted(points, key=float)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for part, name, shift in (("a", "baseline", 0.97), ("b", "pretrained", 1.03)):
        vals = [points[p]["srcc"][part] for p in pcts]
        y = np.array([v["value"] for v in vals], dtype=float)
        low = np.array([v["low"] if v["low"] is not None else np.nan for v in vals], dtype=float)
        high = np.array([v["high"] if v["high"] is not None else np.nan for v in vals],
                        dtype=float)
        ax.errorbar([float(p) * shift for p in pcts], y, yerr=[y - low, high - y], fmt="o-",
                    capsize=3,
                    color=COLORS[name], label=LABELS[name])
    ax.set(title="Label efficiency (95 % bootstrap intervals)", xlabel="training labels (%)",
           ylabel="KonIQ-10k test SRCC", xscale="log")
    ax.set_xticks([float(p) for p in pcts], [f"{p}%" for p in pcts])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir / "label_efficiency.png")
