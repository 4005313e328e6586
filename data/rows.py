"""Labelled image rows shared by every dataset reader, and seeded group-aware splits."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import InvalidValueError, UserError

SPLITS = ("train", "val", "test")
UNASSIGNED = ""  # split of a row whose dataset has no official split (yet)


class DatasetError(UserError, RuntimeError):
    """A dataset folder, label file or dataset name is not what the readers expect."""


@dataclass(frozen=True)
class Row:
    """One labelled image: where it is, its MOS (higher is better), split and content group."""

    path: Path
    mos: float
    split: str
    group: str
    name: str


def has_official_split(rows: Sequence[Row]) -> bool:
    """True when every row carries a train/val/test split from the dataset's own label files."""
    return bool(rows) and all(row.split in SPLITS for row in rows)


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) ratios and return them normalised to sum to 1."""
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(not np.isfinite(r) or r < 0 for r in values) or sum(values) <= 0:
        raise InvalidValueError(
            f"split ratios must be three non-negative numbers (train, val, test) with a positive "
            f"sum, e.g. 0.7 0.1 0.2 or 0.8 0 0.2; got {tuple(ratios)}"
        )
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def group_counts(n_groups: int, ratios: tuple[float, float, float]) -> list[int]:
    """Groups per split by largest remainder; each split with a positive ratio gets at least one."""
    exact = [n_groups * r for r in ratios]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(3), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: n_groups - sum(counts)]:
        counts[i] += 1
    wanted = [i for i, r in enumerate(ratios) if r > 0]
    if n_groups >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[i] = 1
    return counts


def min_groups(ratios: Sequence[float], minimum: int) -> int | None:
    """Fewest content groups whose random split at `ratios` gives training one group and
    validation and test `minimum` groups each (None when a ratio is 0)."""
    normalised = check_ratios(ratios)
    if min(normalised) == 0:
        return None
    n = 1
    while True:
        train, val, test = group_counts(n, normalised)
        if train >= 1 and min(val, test) >= minimum:
            return n
        n += 1


def random_split(
    rows: Sequence[Row], seed: int, ratios: Sequence[float] = (0.7, 0.1, 0.2)
) -> list[Row]:
    """Assign train/val/test by shuffling content groups with `seed`; a group never straddles."""
    normalised = check_ratios(ratios)
    groups = sorted({row.group for row in rows})
    order = np.random.default_rng(int(seed) % 2**32).permutation(len(groups))
    counts = group_counts(len(groups), normalised)
    split_of: dict[str, str] = {}
    start = 0
    for split, count in zip(SPLITS, counts, strict=True):
        for i in order[start : start + count]:
            split_of[groups[i]] = split
        start += count
    return [dataclasses.replace(row, split=split_of[row.group]) for row in rows]


def split_counts(rows: Sequence[Row]) -> dict[str, int]:
    """Number of rows in each of train/val/test."""
    return {split: sum(row.split == split for row in rows) for split in SPLITS}


def label_subset(rows: Sequence[Row], fraction: float, seed: int = 0) -> list[Row]:
    """The first ceil(fraction x n) rows of a seeded permutation: the same subset for every model
    given the same seed, and a smaller fraction is always inside a larger one."""
    if not 0 < fraction <= 1:
        raise InvalidValueError(f"label fraction must be in (0, 1], got {fraction}")
    keep = max(1, math.ceil(fraction * len(rows) - 1e-9))
    order = np.random.default_rng(int(seed) % 2**32).permutation(len(rows))
    return [rows[i] for i in sorted(order[:keep])]
