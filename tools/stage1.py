"""Stage-1 health: did pretraining learn to rank degradation levels, and does the encoder that
fine-tuning starts from beat the untrained control on the label-free validation?

    python -m tools.stage1 --run_dir RUN_DIR/checkpoints/pretrain \
        [--control RUN_DIR/checkpoints/untrained] [--last]

prints the one-line verdict (--last: the last epoch's monitor figures, which the chain quotes when
a collapse stops pretraining); the report states it and comparisons.json keeps it as "stage1".
An encoder passes when its epoch's training batches show no collapse (engine.pretrain_monitor:
rank accuracy above 0.6, level spread at least a tenth of the ranking margin) and its validation
SRCC lies above the untrained control's: the paired t interval over the held-out images of the
difference must lie above zero. The control is the chain's `untrained` stage (the same command
with --epochs 0, so the same seed, initial weights and validation set), whose metrics.jsonl holds
its validation as epoch 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.pretrain_monitor import COLLAPSE_ACCURACY, COLLAPSE_SPREAD, collapse_message
from tools.markdown import is_number, num, sci
from tools.rundata import PretrainRun, RunData, read_pretrain
from tools.stats import seed_test
from tools.verdicts import interval

BEST_SUFFIX = "_qualiclip_best.pkl"
# Flags that must agree for the control's validation set to be the pretrained run's.
VALIDATION_FLAGS = ("seed", "model_size", "crop_size", "num_levels", "val_distortions",
                    "val_images", "dataset", "image_dir")
DEFAULT_MARGIN = 0.05  # pretrain_qualiclip.py --margin


def stage1_encoder(run: RunData) -> str | None:
    """File name of the Stage-1 encoder the comparison rests on: the one the pretrained run was
    fine-tuned from, else the one scored zero-shot (None when neither has run)."""
    pre = run.finetunes.get("pretrained")
    path = (pre.args.get("pretrained_encoder") if pre else None) or (
        run.evals["zero_shot"].data.get("model") if "zero_shot" in run.evals else None)
    return Path(path).name if path else None


def selected_record(run: PretrainRun, encoder: str | None) -> tuple[dict | None, str]:
    """The metrics line of the epoch `encoder` holds and how it was chosen: the best label-free
    validation epoch for `*_qualiclip_best.pkl`, otherwise the last epoch."""
    records = [r for r in run.metrics if is_number(r.get("epoch")) and r["epoch"] >= 1]
    if not records:
        return None, "no finished epoch"
    if encoder and encoder.endswith(BEST_SUFFIX):
        scored = [r for r in records if is_number(r.get("val_srcc"))]
        if scored:  # the first epoch with the highest value, as pretraining keeps it
            best = max(scored, key=lambda r: (r["val_srcc"], -r["epoch"]))
            return best, f"best label-free validation, epoch {best['epoch']} of {len(records)}"
    return records[-1], f"last epoch ({records[-1]['epoch']})"


def _control_gain(record: dict, run: PretrainRun, control: PretrainRun | None) -> dict:
    """Validation SRCC of the encoder minus the untrained control's, with its interval."""
    if control is None:
        return {"reason": "the untrained control has not run (checkpoints/untrained absent)"}
    differ = [f for f in VALIDATION_FLAGS if run.args.get(f) != control.args.get(f)]
    if differ:
        return {"reason": "the untrained control used another validation set (flags differ: "
                f"{', '.join(differ)})"}
    zero = next((r for r in control.metrics if r.get("epoch") == 0), None)
    if zero is None or not zero.get("val_by_image") or not record.get("val_by_image"):
        return {"reason": "no per-image validation of the encoder and of the untrained control "
                "(written since pretraining records val_by_image; --val_distortions none "
                "turns the validation off)"}
    if len(zero["val_by_image"]) != len(record["val_by_image"]):
        return {"reason": "the control and the encoder were validated on different images"}
    test = seed_test(zero["val_by_image"], record["val_by_image"])
    return {"control_val_srcc": zero.get("val_srcc"), "value": test["mean_diff"],
            "low": test["low"], "high": test["high"], "n": test["n"], "verdict": test["verdict"],
            "basis": f"paired t interval over {test['n']} held-out images"}


def stage1_health(run: PretrainRun | None, control: PretrainRun | None,
                  encoder: str | None) -> dict:
    """The health of the Stage-1 encoder `encoder` (file name) of `run`, against `control`."""
    if run is None:
        return {"status": "unchecked", "encoder": encoder,
                "reasons": ["pretraining has not run in this folder"]}
    record, selection = selected_record(run, encoder)
    if record is None:
        return {"status": "unchecked", "encoder": encoder,
                "reasons": ["pretraining has not finished an epoch"]}
    margin = run.args.get("margin", DEFAULT_MARGIN)
    collapse = collapse_message(record, margin)
    gain = _control_gain(record, run, control)
    reasons = [collapse] if collapse else []
    if "reason" in gain:
        reasons.append(f"validation against the untrained control not measured: {gain['reason']}")
    elif gain["verdict"] != "yes":
        reasons.append(f"validation SRCC is not above the untrained control's: gain "
                       f"{interval(gain, 3)}")
    return {"status": "fail" if reasons else "pass", "encoder": encoder, "selection": selection,
            "epoch": record["epoch"], "rank_accuracy": record.get("rank_accuracy"),
            "level_spread": record.get("level_spread"), "margin": margin,
            "collapse_accuracy": COLLAPSE_ACCURACY, "collapse_spread": COLLAPSE_SPREAD * margin,
            "val_srcc": record.get("val_srcc"), "control": gain, "reasons": reasons}


def epoch_figures(record: dict, margin: float) -> str:
    """'rank accuracy 0.81 (collapse at <= 0.6), level spread ...' of one metrics line."""
    return (f"rank accuracy {num(record.get('rank_accuracy'), 3)} (collapse at <= "
            f"{COLLAPSE_ACCURACY:g}), level spread {sci(record.get('level_spread'))} (collapse "
            f"below {sci(COLLAPSE_SPREAD * margin)})")


def health_line(health: dict) -> str:
    """One line: pass / fail, the encoder, rank accuracy, spread, validation vs the control."""
    status = health["status"]
    if "epoch" not in health:
        return f"Stage-1 health **{status}**: {'; '.join(health['reasons'])}."
    gain = health["control"]
    control = (f"{num(health['val_srcc'], 3)} against {num(gain['control_val_srcc'], 3)} for the "
               f"untrained control, a gain of {interval(gain, 3)} ({gain['basis']})"
               if "reason" not in gain else
               f"{num(health['val_srcc'], 3)} (untrained control: {gain['reason']})")
    text = (f"Stage-1 health **{status}**: encoder `{health['encoder'] or 'not saved'}` "
            f"({health['selection']}): {epoch_figures(health, health['margin'])}, validation "
            f"SRCC {control}.")
    if status == "fail":
        text += f" Failed because: {'; '.join(health['reasons'])}"
    return text


def last_epoch_line(run: PretrainRun | None) -> str:
    """The monitor's figures of a run's last finished epoch and, if any, its collapse signal."""
    record = selected_record(run, None)[0] if run is not None else None
    if record is None:
        return "no finished pretraining epoch to show"
    margin = run.args.get("margin", DEFAULT_MARGIN)
    text = (f"epoch {record['epoch']}: {epoch_figures(record, margin)}, validation SRCC "
            f"{num(record.get('val_srcc'), 3)} (held-out types)")
    collapse = collapse_message(record, margin)
    return f"{text}. {collapse}" if collapse else text


def main(argv: list[str] | None = None) -> None:
    """Print the health line of a pretraining run folder (--last: its last epoch's figures)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", required=True, help="pretraining run folder")
    parser.add_argument("--control", default=None, help="run folder of the untrained control")
    parser.add_argument("--last", action="store_true",
                        help="the monitor's figures of the last finished epoch (what a collapse "
                        "stop saw) instead of the health of the encoder fine-tuning would use")
    args = parser.parse_args(argv)
    run = read_pretrain(Path(args.run_dir))
    if args.last:
        print(last_epoch_line(run))
        return
    control = read_pretrain(Path(args.control)) if args.control else None
    encoder = run.best or run.encoder if run is not None else None
    print(health_line(stage1_health(run, control, encoder.name if encoder else None)))


if __name__ == "__main__":
    main()
