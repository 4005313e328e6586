"""Seeded random splits: deterministic, group-aware, sized by the ratios."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.registry import read_rows
from data.rows import Row, label_subset, random_split, split_counts


def test_kadid_content_never_crosses_splits(real_rows):
    for seed in (0, 1, 2):
        rows = random_split(real_rows["kadid10k"], seed)
        split_of_ref: dict[str, set[str]] = {}
        for row in rows:
            split_of_ref.setdefault(row.group, set()).add(row.split)
        assert all(len(splits) == 1 for splits in split_of_ref.values())
        assert sum(splits == {"train"} for splits in split_of_ref.values()) == round(81 * 0.7)


def test_random_split_is_deterministic_for_a_seed(real_root: Path):
    a = read_rows("kadid10k", real_root, split="random", split_seed=7)
    b = read_rows("kadid10k", real_root, split="random", split_seed=7)
    c = read_rows("kadid10k", real_root, split="random", split_seed=8)
    assert [r.split for r in a] == [r.split for r in b]
    assert [r.split for r in a] != [r.split for r in c]


def test_random_koniq_split_with_ratios(real_rows):
    rows = random_split(real_rows["koniq10k"], seed=3, ratios=(0.8, 0.0, 0.2))
    assert split_counts(rows) == {"train": 8_058, "val": 0, "test": 2_015}
    assert [r.name for r in rows] == [r.name for r in real_rows["koniq10k"]]


def test_random_split_does_not_depend_on_row_order(real_rows):
    rows = real_rows["agiqa3k"]
    forward = {r.name: r.split for r in random_split(rows, 4)}
    backward = {r.name: r.split for r in random_split(rows[::-1], 4)}
    assert forward == backward


def _rows(n_groups: int, per_group: int = 1) -> list[Row]:
    return [
        Row(Path(f"{g}_{i}.png"), float(i), "", f"g{g}", f"{g}_{i}.png")
        for g in range(n_groups)
        for i in range(per_group)
    ]


@pytest.mark.parametrize("n_groups", [3, 4, 6, 10])
def test_tiny_datasets_get_every_split_with_a_positive_ratio(n_groups):
    counts = split_counts(random_split(_rows(n_groups, 2), seed=0))
    assert all(count >= 2 for count in counts.values())
    assert sum(counts.values()) == 2 * n_groups


def test_ratios_are_normalised():
    counts = split_counts(random_split(_rows(100), seed=0, ratios=(7, 1, 2)))
    assert counts == {"train": 70, "val": 10, "test": 20}


def test_label_subset_is_seeded_and_nested() -> None:
    rows = [Row(Path(f"{i}.png"), float(i), "train", str(i), f"{i}.png") for i in range(40)]
    tenth, half = label_subset(rows, 0.1, seed=3), label_subset(rows, 0.5, seed=3)
    assert len(tenth) == 4 and len(half) == 20 and label_subset(rows, 1.0) == rows
    assert set(tenth) <= set(half)  # fewer labels: a subset of the larger fraction
    assert label_subset(rows, 0.5, seed=3) == half and label_subset(rows, 0.5, seed=4) != half
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        label_subset(rows, 0.0)
