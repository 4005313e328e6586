"""Write QUALICLIP_RESULTS.md for one run folder of run_qualiclip_experiments.sh.

    python -m tools.report --runs_dir results/qualiclip_base [--out QUALICLIP_RESULTS.md]

Every table is filled from the run's JSON files; a figure that was not measured says why in words.
"""

from __future__ import annotations

import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from common.cli import build_parser
from tools import plots
from tools.ablation import ablation_sections
from tools.arms import RATE_TITLE, rate_section, variance_section
from tools.compare import write_comparisons
from tools.controls import POWER_TITLE, controls_section
from tools.cost_check import estimate_table
from tools.degenerate import degenerate_warnings
from tools.markdown import count, duration, is_number, num, section, size_bytes, table
from tools.reference import DATASET_NAMES, dataset_name
from tools.results_tables import (
    cross_table,
    finetune_epochs_table,
    kadid_types_table,
    main_table,
    pretrain_epochs_table,
    repeats_groups,
    repeats_table,
)
from tools.rundata import RunData, load_run
from tools.setup_tables import APPENDIX_ANCHOR, appendix_section, setup_section
from tools.stage1 import health_line
from tools.summary import CONTROLS_TITLE, first_screen
from tools.timings import stage_wall_time
from tools.verdicts import (
    convergence_table,
    labels_section,
    power_section,
    probe_section,
    uncertainty_section,
)

FAILED = "drawing failed:"  # how a figure that raised is described
REPORT_NAME = "QUALICLIP_RESULTS.md"
# Randomly initialised sizes for tests and the demo: their numbers say nothing about real data.
CPU_SIZES = ("micro", "test", "mini")


def hardware_section(run: RunData) -> str:
    """Hardware and software of the run, from the environment info saved in the configs."""
    env = run.environment()
    if not env:
        return section("Hardware and software", "No config with environment information was "
                       "written in this folder yet, so the hardware is unknown.")
    missing = "not recorded in the saved config"
    gpu = (f"{env['gpu_name']} x {env.get('gpu_count', 1)}" if env.get("gpu_name")
           else "none (CPU run: no CUDA device visible)")
    ram = f"{env['ram_gb']} GiB" if is_number(env.get("ram_gb")) else missing
    cpu = f"{env.get('cpu', missing)} ({env.get('cpu_count', 'unknown number of')} logical cores)"
    commit = env.get("git_commit") or missing
    if env.get("git_dirty"):
        commit += " (working tree had uncommitted changes)"
    rows = [["GPU", gpu], ["CPU", cpu], ["RAM", ram],
            ["Python", env.get("python", missing)], ["PyTorch", env.get("torch", missing)],
            ["CUDA (torch build)", env.get("cuda") or "none (CPU-only torch build)"],
            ["cuDNN", env.get("cudnn") or "not available (no CUDA device)"],
            ["timm", env.get("timm", missing)], ["open_clip", env.get("open_clip", missing)],
            ["Platform", env.get("platform", missing)], ["Host", env.get("hostname", missing)],
            ["Git commit", commit]]
    return section("Hardware and software", table(["Item", "Value"], rows))


def _gpu_cell(run: RunData, stage: str) -> str:
    samples = run.gpu_samples.get(stage)
    if samples:
        util = [s[0] for s in samples]
        mem = max(s[1] for s in samples)
        return (f"mean {sum(util) / len(util):.0f} %, peak {max(util):.0f} %, "
                f"peak memory {mem:.0f} MiB ({len(samples)} samples)")
    env = run.environment()
    if not env.get("gpu_name"):
        return "not measured (CPU run)"
    return "not measured (nvidia-smi was not available during this stage)"


def cost_section(run: RunData) -> str:
    """Wall time per stage, GPU utilisation, parameter counts and checkpoint sizes."""
    stages = run.timings.get("stages", {})
    if stages:
        rows = []
        for name, record in stages.items():
            attempts = record.get("attempts", [])
            status = attempts[-1]["status"] if attempts else "skipped (finished earlier)"
            if status == "running":
                status = "running while this report was written"
            rows.append([name, status, str(len(attempts)),
                         duration(stage_wall_time(record), "no finished attempt"),
                         str(record.get("skips", 0)), _gpu_cell(run, name)])
        total = sum(stage_wall_time(r) or 0.0 for r in stages.values())
        rows.append(["**all stages**", "", "", duration(total), "", ""])
        stage_table = table(["Stage", "Last status", "Attempts", "Wall time (sum of attempts)",
                             "Reruns skipped", "GPU utilisation"],
                            [[c or "does not apply" for c in r] for r in rows])
    else:
        stage_table = ("Wall time per stage: not measured (timings.json absent: the stages were "
                       "not run through run_qualiclip_experiments.sh).")
    info = run.model_info
    if info:
        param_rows = [[k.replace("_", " "), count(v)] for k, v in info.items()
                      if k.endswith("params")]
        params = ("Parameters (`python -m models`, model size "
                  f"`{info.get('model_size', _model_size(run))}`)\n\n"
                  + table(["Part", "Parameters"], param_rows))
    else:
        params = ("Parameter counts: not measured (model_info.json absent: the chain writes it "
                  "with `python -m models` in its data stage).")
    ckpts = sorted(p for p in (run.run_dir / "checkpoints").rglob("*")
                   if p.suffix in (".pkl", ".safetensors") and not p.parent.name.startswith("abl"))
    if ckpts:
        sizes = [[str(p.relative_to(run.run_dir)), size_bytes(p.stat().st_size)] for p in ckpts]
        size_table = "Checkpoint sizes (on disk)\n\n" + table(["Checkpoint", "Size"], sizes)
    else:
        size_table = "Checkpoint sizes: no checkpoint file in checkpoints/ yet."
    estimate = estimate_table(run.run_dir / "cost_estimate.json", stages)
    return section("Computational cost", stage_table, estimate, params, size_table)


def _model_size(run: RunData) -> str:
    for args in [run.pretrain.args if run.pretrain else {}] + [r.args for r in
                                                              run.finetunes.values()]:
        if args.get("model_size"):
            return str(args["model_size"])
    return "unknown"


def datasets_section(run: RunData) -> str:
    """Which datasets were found (`python -m data` summaries) and which were skipped, and why."""
    if not run.datasets:
        return section("Datasets", "Dataset check: not run in this folder (data/ absent).")
    rows = []
    order = list(DATASET_NAMES)
    ranked = sorted(run.datasets.items(),
                    key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))
    for key, summary in ranked:
        if isinstance(summary, str):
            rows.append([dataset_name(key), f"skipped: {summary}", *["dataset absent"] * 4])
            continue
        splits = summary.get("splits")
        split_text = (", ".join(f"{k} {v}" for k, v in splits.items())
                      if isinstance(splits, dict) and splits else "not reported")
        mos = (f"{num(summary.get('mos_min'), 2)} to {num(summary.get('mos_max'), 2)}"
               if is_number(summary.get("mos_min")) else "not reported")
        rows.append([dataset_name(key), "found", count(summary.get("n_images"), "not reported"),
                     split_text, mos, count(summary.get("missing"), "not reported")])
    header = ["Dataset", "Status", "Images", "Split sizes", "MOS range", "Missing images"]
    return section("Datasets", "From `python -m data` in the chain's data stage.",
                   table(header, rows))


def build_figures(run: RunData, out_dir: Path, data_root: Path | None) -> dict[str, Path | str]:
    """Draw every plot; a plot that cannot be drawn maps to the reason, in words."""
    from tools import image_plots

    figures: dict[str, Path | str] = {}

    def attempt(key: str, func, *args) -> None:
        try:
            figures[key] = func(*args)
        except plots.PlotSkipped as exc:
            figures[key] = str(exc)
        except Exception as exc:  # a broken plot must not cost the whole report
            figures[key] = f"{FAILED} {type(exc).__name__}: {exc}"

    attempt("finetune_curves", plots.finetune_curves, run, out_dir)
    attempt("pretrain_loss", plots.pretrain_losses, run, out_dir)
    for key in sorted({k for e in run.evals.values() for k in e.predictions}):
        attempt(f"scatter_{key}", plots.prediction_scatter, run, key, out_dir)
    if run.repeats:
        attempt("repeats", plots.repeats_spread, repeats_groups(run), out_dir)
    if data_root is None:
        reason = "no data root recorded in the fine-tuning config (pass --data_root)"
        for key in ("tsne", "activation", "ranking"):
            figures[key] = reason
        return figures
    attempt("ranking", image_plots.ranking_strip, run, data_root, out_dir)
    try:
        models = image_plots.load_models(run)
        rows = image_plots.sample_rows("koniq10k", data_root, 40)
        crops = image_plots.center_crops(rows, "koniq10k", image_plots.crop_side(models))
    except Exception as exc:  # missing checkpoints or images: say so for both plots
        reason = (str(exc) if isinstance(exc, plots.PlotSkipped)
                  else f"{FAILED} {type(exc).__name__}: {exc}")
        figures["tsne"] = figures["activation"] = reason
        return figures
    import numpy as np

    mos = np.array([r.mos for r in rows])
    attempt("tsne", image_plots.tsne_plot, models, crops, mos, out_dir)
    attempt("activation", image_plots.activation_plot, models, crops, mos, out_dir)
    return figures


def failed_figures(figures: dict[str, Path | str]) -> dict[str, str]:
    """The figures whose drawing failed (a bug or bad data), not those skipped for lack of data."""
    return {key: value for key, value in figures.items()
            if isinstance(value, str) and value.startswith(FAILED)}


def _figure(figures: dict, key: str, caption: str, base: Path) -> str:
    value = figures.get(key)
    if isinstance(value, Path):
        return f"![{caption}]({value.relative_to(base).as_posix()})\n\n*{caption}*"
    return f"*{caption}: not drawn ({value or 'no data for this plot'}).*"


def demo_note(run: RunData) -> str:
    """What a run at a CPU size can show, or nothing for the real sizes."""
    size = _model_size(run)
    if size not in CPU_SIZES:
        return ""
    return (f"This run used the `{size}` model (a small randomly initialised Swin for tests and "
            "the demo) with CPU-minute budgets on small synthetic data: its numbers say nothing "
            "about the method on real datasets (docs/DEMO_FINDINGS.md says what they can show).")


def render(run: RunData, figures: dict[str, Path | str], comp: dict) -> str:
    """The whole report as markdown: the answers on the first screen, detail below, every flag
    and config in the appendix."""
    base = run.run_dir
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"# QualiCLIP pretraining for Swin-HyperIQA: results\n\nRun folder `{base}`, "
             f"written {stamp} by `python -m tools.report` from the run's files (*published "
             f"figure* rows are quoted, not measured; every flag and config: "
             f"[appendix]({APPENDIX_ANCHOR})).\n",
             section("Does pretraining help?",
                     first_screen(run, comp, degenerate_warnings(run), demo_note(run))),
             section(RATE_TITLE, rate_section(comp)),
             section("Main results: KonIQ-10k", main_table(run, comp["finetuned"].get("koniq10k")),
                     "Our runs select the checkpoint on the validation split and score the test "
                     "split once; the published Swin-HyperIQA rows picked their model on the test "
                     "set, which favours them.")]
    scatter = [_figure(figures, k, f"Predicted vs MOS, {dataset_name(k[len('scatter_'):])}", base)
               for k in sorted(figures) if k.startswith("scatter_")]
    parts.append(section("Cross-dataset results (trained on KonIQ-10k)", cross_table(run),
                         *(scatter or ["*Predicted vs MOS scatter: not drawn (no predictions CSV "
                                       "from test_swin.py in eval/).*"])))
    parts += [section("Uncertainty of every difference", uncertainty_section(comp)),
              section(CONTROLS_TITLE, controls_section(comp)),
              section(POWER_TITLE, power_section(comp))]
    parts.append(section("Linear probe of frozen encoders", probe_section(run.probe, comp)))
    if comp.get("labels"):
        parts.append(section("Label efficiency", labels_section(
            comp, _figure(figures, "labels", "KonIQ-10k test SRCC vs training labels", base))))
    parts.append(section("KADID-10k by distortion type", kadid_types_table(run)))
    if run.repeats:
        parts.append(section("Repeated fine-tuning (median and spread)", repeats_table(run),
                             _figure(figures, "repeats", "Test SRCC over repeats", base),
                             variance_section(comp)))
    parts.append(section("Pretraining loss, collapse signals and validation per epoch",
                         health_line(comp["stage1"]), pretrain_epochs_table(run),
                         _figure(figures, "pretrain_loss", "Pretraining loss (weighted terms "
                                 "only); ranking accuracy and label-free validation SRCC, each "
                                 "with its chance level", base)))
    parts.append(section("Fine-tuning curves per epoch", finetune_epochs_table(run),
                         _figure(figures, "finetune_curves",
                                 "Fine-tuning loss and SRCC, baseline vs pretrained", base),
                         "**Convergence** (epochs and time to 95 % of the best validation "
                         "SRCC)", convergence_table(comp)))
    parts.append(section(
        "Qualitative analysis",
        _figure(figures, "tsne", "t-SNE of encoder features coloured by MOS", base),
        _figure(figures, "activation", "Activation maps and stage attention", base),
        _figure(figures, "ranking", "Quality-ranking strip", base)))
    parts += [setup_section(run), datasets_section(run), hardware_section(run), cost_section(run)]
    for title, body in ablation_sections(run):
        parts.append(section(f"Ablation: {title}", body))
    parts.append(appendix_section(run))
    return "\n".join(parts)


def _data_root(run: RunData) -> Path | None:
    for ft in run.finetunes.values():
        if ft.args.get("data_root"):
            return Path(ft.args["data_root"])
    return None


def write_report(run_dir: str | Path, out: str | Path | None = None,
                 data_root: str | Path | None = None) -> Path:
    """Draw the plots and write RUN_DIR/QUALICLIP_RESULTS.md (copied to `out` when given)."""
    return write_report_checked(run_dir, out, data_root)[0]


def write_report_checked(run_dir: str | Path, out: str | Path | None = None,
                         data_root: str | Path | None = None) -> tuple[Path, dict[str, str]]:
    """write_report, also returning the figures that failed to draw, with why."""
    run = load_run(run_dir)
    comp, _ = write_comparisons(run)  # the JSON first; the report is written from it
    root = Path(data_root) if data_root else _data_root(run)
    figures = build_figures(run, run.run_dir / "plots", root)
    if comp.get("labels"):
        try:
            figures["labels"] = plots.label_efficiency(comp["labels"], run.run_dir / "plots")
        except plots.PlotSkipped as exc:
            figures["labels"] = str(exc)
    path = run.run_dir / REPORT_NAME
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(render(run, figures, comp))
    tmp.replace(path)
    if out is not None and Path(out).resolve() != path.resolve():
        shutil.copyfile(path, out)
    return path, failed_figures(figures)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = build_parser("Write the filled QualiCLIP results report.")
    parser.add_argument("--runs_dir", required=True, help="run folder (RUN_DIR) of the chain")
    parser.add_argument("--out", help="also copy the report here, e.g. QUALICLIP_RESULTS.md")
    parser.add_argument("--data_root", help="dataset root for the image plots (default: the one "
                        "saved in the fine-tuning config)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a figure failed to draw (the report is "
                        "still written)")
    args = parser.parse_args(argv)
    try:
        path, failed = write_report_checked(args.runs_dir, args.out, args.data_root)
    except FileNotFoundError as exc:
        sys.exit(f"error: {exc}")
    for key, why in failed.items():
        print(f"warning: figure {key!r} {why}", file=sys.stderr)
    print(f"report written: {path}" + (f" (copied to {args.out})" if args.out else "")
          + (f" with {len(failed)} failed figure(s)" if failed else ""))
    if failed and args.strict:
        sys.exit(1)


if __name__ == "__main__":
    main()
