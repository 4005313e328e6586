"""The chain's cost estimate (RUN_DIR/cost_estimate.json, tools.chain_cost) beside what the run
took (timings.json): per stage and in total, for the report's cost section."""

from __future__ import annotations

import json
from pathlib import Path

from tools.markdown import duration, table
from tools.timings import stage_wall_time


def _ratio(measured: float | None, estimated: float | None) -> str:
    if not measured or not estimated:
        return "not computable"
    return f"{measured / estimated:.2f}"


def _span(stages: dict, names: list[str]) -> float | None:
    """Seconds from the first start to the last end among the finished attempts of `names`."""
    attempts = [a for n in names for a in stages.get(n, {}).get("attempts", []) if "wall_s" in a]
    if not attempts:
        return None
    return (max(a["start_unix"] + a["wall_s"] for a in attempts)
            - min(a["start_unix"] for a in attempts))


def estimate_table(path: Path, stages: dict) -> str:
    """Markdown: estimated vs measured wall time per stage, device hours and the run's span."""
    if not path.is_file():
        return ("Estimate before the run: none saved (runs with --parallel N > 1 or --submit "
                "slurm save RUN_DIR/cost_estimate.json; `--plan` prints it for any run).")
    estimate = json.loads(path.read_text())
    source = (estimate["throughput"] or {}).get("source", "no throughput figure for this model "
                                                 "size and device: crops only")
    rows, device_s = [], 0.0
    for name, row in estimate["stages"].items():
        devices = max(1, row["devices"])
        planned = row["gpu_s"] / devices if row["gpu_s"] is not None else None
        measured = stage_wall_time(stages.get(name, {}))
        device_s += (measured or 0.0) * row["devices"]
        crops = sum(row["crops"].values())
        rate = f"{crops / measured:,.0f}" if measured and crops else "does not apply"
        rows.append([name, f"{crops:,}", duration(planned, "no estimate"), duration(measured),
                     _ratio(measured, planned), rate])
    names = list(estimate["stages"])
    span = _span(stages, names)
    rows.append(["**device time, all stages**", "", duration(estimate["gpu_s"], "no estimate"),
                 duration(device_s), _ratio(device_s, estimate["gpu_s"]), ""])
    rows.append([f"**wall time at {estimate['schedule']}**", "",
                 duration(estimate["wall_s"], "no estimate"), duration(span),
                 _ratio(span, estimate["wall_s"]), ""])
    header = ["Stage", "Crops", "Estimated", "Measured", "Measured / estimated",
              "Measured crops/s"]
    return (f"Estimate before the run (tools.chain_cost; throughput: {source}) and what the run "
            "took. Fine-tuning is estimated to its last epoch, so early stopping makes a "
            "measured / estimated ratio below 1.\n\n" + table(header, rows))
