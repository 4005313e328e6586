"""test_swin.py's cross-dataset test: each test set scored once, a table, JSON and predictions."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from common.distributed import DistInfo
from common.files import (
    atomic_write_json,
    file_key,
    json_safe,
    output_path,
    renamed_note,
    write_csv,
)
from common.runtime import resolve_amp
from data.images import ImageCache
from data.readers.kadid10k import DISTORTION_TYPES, distortion_type, parse_distortion_types
from data.registry import canonical_key, drop_missing, read_rows, resize_policy
from data.rows import DatasetError, Row
from engine.evaluate import EvalModel, eval_settings, metrics_for, predict_rows, score_text


def dataset_rows(name: str, eval_model: EvalModel, data_root: str | Path) -> tuple[list[Row], str]:
    """Rows to test on: the test split of the training dataset (same split), else every image."""
    key = canonical_key(name)
    config = eval_model.config
    if eval_model.mode == "finetuned" and config.get("dataset") == key:
        rows = read_rows(key, data_root, config["split"], int(config["split_seed"]),
                         tuple(config["split_ratios"]))
        return [row for row in rows if row.split == "test"], "test split"
    return read_rows(key, data_root), "all images"


def kadid_subset(rows: list[Row], types_text: str) -> tuple[list[Row], str]:
    """The KADID-10k rows of the --kadid_types types (e.g. types held out of pretraining)."""
    wanted = parse_distortion_types(types_text)
    chosen = [row for row in rows if distortion_type(row.name) in wanted]
    if not chosen:
        raise DatasetError(f"kadid10k has no images of the types {', '.join(wanted)}")
    return chosen, f"{len(wanted)} types"


def metrics_by_distortion(pred: np.ndarray, rows: Sequence[Row]) -> dict[str, dict]:
    """KADID-10k metrics per distortion type, in KADID order (undefined ones NaN)."""
    types = [distortion_type(row.name) for row in rows]
    by_type = {}
    for name in DISTORTION_TYPES:
        mask = np.array([t == name for t in types])
        if mask.any():
            chosen = [row for row, keep in zip(rows, mask, strict=True) if keep]
            by_type[name] = metrics_for(pred[mask], chosen, strict=False)
    return by_type


def format_table(results: dict[str, dict], subsets: dict[str, str],
                 label: str = "dataset") -> str:
    """Plain-text table of the metrics per dataset (or per distortion type)."""
    width = max([12, *(len(key) for key in results)])
    lines = [f"{label:<{width}} {'subset':<11} {'n':>6} {'SRCC':>7} {'PLCC':>7} {'KRCC':>7} "
             f"{'RMSE':>9}"]
    for key, m in results.items():
        lines.append(f"{key:<{width}} {subsets.get(key, ''):<11} {m['n']:>6d} {m['srcc']:>7.4f} "
                     f"{m['plcc']:>7.4f} {m['krcc']:>7.4f} {m['rmse']:>9.4g}")
    return "\n".join(lines)


RESULTS_NAME = "cross_dataset_results.json"


def predictions_path(output: Path, key: str) -> Path:
    """The predictions CSV of one test set, beside the results JSON `output`."""
    return output.with_name(f"{output.stem}_{file_key(key)}_predictions.csv")


def baseline_path(output: Path, name: str) -> Path:
    """The results JSON of classical baseline `name` (--baselines), beside the JSON `output`."""
    return output.with_name(f"{output.stem}_{name}.json")


def results_output(args: argparse.Namespace) -> Path:
    """Where the results JSON goes: --output, else cross_dataset_results.json in the current
    folder (a free name: an earlier call's files are never replaced without --overwrite). The
    files of --baselines go beside it (baseline_path)."""
    keys = [file_key(name) for name in args.test_datasets]

    def companions(out: Path) -> list[Path]:
        jsons = [baseline_path(out, name) for name in args.baselines]
        return [*jsons, *(predictions_path(j, key) for j in (out, *jsons) for key in keys)]

    return output_path(args.output, Path(RESULTS_NAME), flag="--output",
                       overwrite=args.overwrite, companions=companions)


def _key(name: str) -> str:
    """The dataset key of a name, or the name itself when it is no known dataset."""
    try:
        return canonical_key(name)
    except DatasetError:
        return name


def read_test_sets(args: argparse.Namespace, rows_of: Callable[[str], tuple[list[Row], str]],
                   logger: logging.Logger
                   ) -> tuple[dict[str, list[Row]], dict[str, str], dict[str, str]]:
    """Rows of every --test_datasets entry (`rows_of(key)`: rows and subset), read before any
    is scored: ({key: rows}, {key: subset}, {key: why skipped}); every unusable set is named in
    one error, or skipped with --skip_missing_datasets; none left to score is an error either
    way."""
    sets, subsets, problems = {}, {}, {}
    for name in args.test_datasets:
        key = _key(name)
        try:
            canonical_key(key)  # an unknown name is one of the problems
            rows, subsets[key] = rows_of(key)
            if key == "kadid10k" and args.kadid_types:
                rows, subsets[key] = kadid_subset(rows, args.kadid_types)
            sets[key] = drop_missing(key, rows, skip_missing=args.skip_missing, logger=logger)
        except DatasetError as exc:
            problems[key] = str(exc)
    if problems and not args.skip_missing_datasets:
        if len(problems) == 1:
            raise DatasetError(next(iter(problems.values())))
        raise DatasetError(
            f"{len(problems)} of {len(args.test_datasets)} test sets cannot be used (--data_root "
            f"{args.data_root}):\n" + "\n".join(f"- {k}: {v}" for k, v in problems.items())
            + "\nFix --data_root or these sets, or pass --skip_missing_datasets to test on the "
            "others")
    for key, why in problems.items():
        logger.warning("skipping %s (--skip_missing_datasets): %s", key, why)
        subsets.pop(key, None)
    if not sets:
        raise DatasetError(f"none of the test sets {', '.join(args.test_datasets)} could be "
                           "used, so nothing was scored; see the reasons above and fix "
                           "--data_root or --test_datasets")
    return sets, subsets, problems


def cross_dataset(args: argparse.Namespace, eval_model: EvalModel, info: DistInfo,
                  logger: logging.Logger, output: Path) -> dict:
    """Score every --test_datasets entry; print a table, write the JSON (`output`) and the
    prediction CSVs beside it."""
    crop_size, patches = eval_settings(args, eval_model)
    # a model trained on squashed images (--resize squash) is tested on squashed images
    geometry = str(eval_model.config.get("resize", "aspect"))

    def predict(key: str, rows: list[Row]) -> np.ndarray:
        return predict_rows(eval_model.model, rows, policy=resize_policy(key, geometry),
                            cache=ImageCache(args.cache_dir), crop_size=crop_size,
                            patches=patches, batch_size=args.batch_size, device=info.device,
                            amp=resolve_amp(args.amp, info.device),
                            num_workers=args.num_workers, info=info, desc=f"test {key}")

    header = {"model": str(args.model_path), "mode": eval_model.mode,
              "config": eval_model.config, "crop_size": crop_size, "test_patches": patches}
    return score_test_sets(args, lambda key: dataset_rows(key, eval_model, args.data_root),
                           predict, header, output, info, logger,
                           title=f"{args.model_path} ({eval_model.mode}, {patches} crops per "
                           "image)", note=renamed_note(output, args.output, RESULTS_NAME))


def score_test_sets(args: argparse.Namespace, rows_of: Callable[[str], tuple[list[Row], str]],
                    predict: Callable[[str, list[Row]], np.ndarray], header: dict, output: Path,
                    info: DistInfo, logger: logging.Logger, title: str, note: str = "") -> dict:
    """The test loop shared by models and classical baselines: rows of each --test_datasets
    entry (`rows_of`), their `predict`ions (higher = better), metrics overall and per KADID-10k
    type, a predictions CSV per test set and the JSON `output` of `header` plus the results;
    the log names `title` and ends with `note`."""
    results, by_distortion = {}, {}
    if args.kadid_types and "kadid10k" not in {_key(n) for n in args.test_datasets}:
        raise DatasetError("--kadid_types restricts KADID-10k, which is not among "
                           "--test_datasets; add kadid10k or leave --kadid_types out")
    sets, subsets, skipped = read_test_sets(args, rows_of, logger)
    for key, rows in sets.items():
        pred = predict(key, rows)
        results[key] = metrics_for(pred, rows, strict=False, logger=logger)
        if key == "kadid10k":
            by_distortion[key] = metrics_by_distortion(pred, rows)
            logger.info("kadid10k by distortion type:\n%s",
                        format_table(by_distortion[key], {}, label="distortion"))
        if info.is_main:
            write_csv(predictions_path(output, key), ("image", "mos", "prediction"),
                      [(r.name, f"{r.mos:.6g}", score_text(p))
                       for r, p in zip(rows, pred, strict=True)])
    report = {"results": results, **header, "subsets": subsets, "skipped": skipped,
              "by_distortion": by_distortion}
    if info.is_main:
        atomic_write_json(json_safe(report), output)
        logger.info("%s\n%s\nwritten to %s%s", title, format_table(results, subsets), output,
                    note)
    return report
