"""Plots that cannot mislead: only weighted loss terms, a chance line per metric, scatter y-axes
spanning the model's MOS scale; and the settings table's differences."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from tools.plots import pretrain_figure, pretrain_loss_series, scatter_figure, scatter_panel
from tools.results_tables import pretrain_epochs_table
from tools.rundata import load_run
from tools.setup_tables import flag_rows, setup_section


def _set_weights(run: Path, consistency: float, ranking: float) -> None:
    path = run / "checkpoints" / "pretrain" / "pretrain_config.json"
    record = json.loads(path.read_text())
    record["config"].update(consistency_weight=consistency, ranking_weight=ranking)
    path.write_text(json.dumps(record))


def test_loss_plot_draws_only_weighted_terms(complete_run: Path) -> None:
    _set_weights(complete_run, 0.0, 1.0)
    run = load_run(complete_run)
    labels = [label for label, _, _ in pretrain_loss_series(run)]
    assert labels == ["total loss = 1 x ranking", "ranking (weight 1)"]
    fig = pretrain_figure(run)
    ax_loss, ax_signal = fig.axes
    drawn = [line.get_label() for line in ax_loss.get_lines()]
    assert drawn == labels and not any("consistency" in d for d in drawn)
    total, ranking = ax_loss.get_lines()
    assert total.get_linewidth() > 2 * ranking.get_linewidth()  # visible when they coincide
    assert ax_signal.get_ylabel() == "rank accuracy (0..1) / SRCC (-1..1)"
    chance = {line.get_label(): line.get_ydata()[0] for line in ax_signal.get_lines()
              if line.get_label().startswith("chance")}
    assert chance == {"chance for level pairs ranked correctly: 0.5": 0.5,
                      "chance for validation SRCC: 0": 0.0}
    plt.close(fig)
    header = pretrain_epochs_table(run).splitlines()[0]
    assert "| Consistency (weight 0: logged, not in the loss) | Ranking (weight 1) |" in header


def test_loss_plot_with_both_terms_weighted(complete_run: Path) -> None:
    _set_weights(complete_run, 0.5, 1.0)
    labels = [label for label, _, _ in pretrain_loss_series(load_run(complete_run))]
    assert labels == ["total loss = 0.5 x consistency + 1 x ranking", "consistency (weight 0.5)",
                      "ranking (weight 1)"]


def test_scatter_of_a_constant_predictor_spans_the_mos_scale() -> None:
    fig, (ax_fine, ax_zero) = plt.subplots(1, 2)
    mos = np.linspace(5, 90, 30)
    scatter_panel(ax_fine, mos, np.linspace(50.2, 51.0, 30), (6.2, 87.6), "tab:blue")
    low, high = ax_fine.get_ylim()
    assert low < 6.2 and high > 87.6  # the flat line of a constant predictor shows
    assert ax_fine.get_ylabel() == "prediction (MOS scale)"
    scatter_panel(ax_zero, mos, np.linspace(0.1, 0.9, 30), None, "tab:green")
    assert ax_zero.get_ylabel() == "zero-shot score (own scale, not MOS)"
    assert ax_zero.get_ylim()[1] < 2  # zero-shot scores keep their own scale
    plt.close(fig)


def test_scatter_figure_uses_the_saved_mos_range(complete_run: Path) -> None:
    path = complete_run / "eval" / "baseline.json"
    record = json.loads(path.read_text())
    record["config"] = {"dataset": "koniq10k", "mos_range": [0.0, 100.0]}
    path.write_text(json.dumps(record))
    fig = scatter_figure(load_run(complete_run), "spaq")
    assert fig.axes[0].get_ylim()[0] <= 0.0 and fig.axes[0].get_ylim()[1] >= 100.0
    assert fig.axes[2].get_ylabel() == "zero-shot score (own scale, not MOS)"
    plt.close(fig)


@pytest.mark.parametrize("base_value", [None, 1e-6])
def test_a_flag_one_run_does_not_use_is_no_difference(complete_run: Path,
                                                      base_value: float | None) -> None:
    for name, lr, enc in (("baseline", 5e-6, base_value), ("pretrained", 2e-5, 1e-7)):
        path = complete_run / "checkpoints" / name / "finetune_config.json"
        record = json.loads(path.read_text())
        record["args"].update(lr=lr, lr_encoder_pretrained=enc)
        path.write_text(json.dumps(record))
    run = load_run(complete_run)
    rows, differ = flag_rows(run, ["baseline", "pretrained"])
    enc_row = next(r for r in rows if "lr_encoder_pretrained" in r[0])
    assert enc_row[0] == "`lr_encoder_pretrained`"  # not bold: the baseline never uses it
    assert enc_row[1].endswith("(unused: no --pretrained_encoder)") and enc_row[2] == "1e-07"
    assert ["**`lr`**", "5e-06", "2e-05"] in rows
    assert [r[0] for r in differ] == ["`lr`", "`pretrained_encoder`"]
    text = setup_section(run)
    assert "| `lr` | 5e-06 | 2e-05 |" in text and "lr_encoder_pretrained" not in text
