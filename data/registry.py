"""Dataset keys, readers, splits, resize policies and the summary of `python -m data`."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from common.errors import InvalidValueError
from common.files import file_key
from common.vocabulary import GEOMETRIES
from data.images import ResizePolicy
from data.rows import (
    SPLITS,
    DatasetError,
    Row,
    check_ratios,
    group_counts,
    has_official_split,
    min_groups,
    random_split,
    split_counts,
)

logger = logging.getLogger(__name__)

DATASET_KEYS = ("koniq10k", "spaq", "kadid10k", "agiqa3k", "livec")
CSV_PREFIX = "csv:"
SPLIT_MODES = ("official", "random")
N_MISSING_NAMED = 5  # missing image names quoted in summaries and messages
MIN_EVAL_IMAGES = 3  # validation and test: SRCC/PLCC need 3 images (common.metrics)
EVEN_RATIOS = (0.4, 0.3, 0.3)  # the split suggested to a small dataset

_ALIASES = {
    "koniq10k": "koniq10k",
    "koniq": "koniq10k",
    "spaq": "spaq",
    "kadid10k": "kadid10k",
    "kadid": "kadid10k",
    "agiqa3k": "agiqa3k",
    "agiqa": "agiqa3k",
    "livec": "livec",
    "livechallenge": "livec",
    "clive": "livec",
    "liveitw": "livec",
    "liveinthewild": "livec",
}

_RESIZE = {
    "koniq10k": ResizePolicy("fixed", (512, 384)),  # width 512, height 384 as HyperIQA
    "spaq": ResizePolicy("short_side", 512),
    "agiqa3k": ResizePolicy("short_side", 512),
    "kadid10k": ResizePolicy("none"),
    "livec": ResizePolicy("none"),
}


# --resize squash: torchvision Resize((512, 384)), i.e. 384 wide x 512 high, as both reference
# codes resize KonIQ-10k and the public Swin-HyperIQA's cross-dataset script resizes SPAQ, KADID-10K
# and AGIQA-3K; LIVE-C (and csv: datasets) keep their own geometry, as HyperIQA uses LIVE-C.
_SQUASH = ResizePolicy("fixed", (384, 512))
_SQUASHED = ("koniq10k", "spaq", "kadid10k", "agiqa3k")


def canonical_key(name: str) -> str:
    """The dataset key for a name or alias (koniq, KADID-10k, live-c, ...); csv:PATH passes."""
    if name.startswith(CSV_PREFIX):
        return name
    normalised = "".join(ch for ch in name.lower() if ch.isalnum())
    if normalised in _ALIASES:
        return _ALIASES[normalised]
    raise DatasetError(
        f"unknown dataset {name!r}: expected one of {', '.join(DATASET_KEYS)} (aliases such as "
        f"koniq, kadid, agiqa, live-c) or csv:PATH for a CSV with columns image,mos"
    )


def dataset_label(name: str) -> str:
    """A dataset's name in run folders and logs: its key, or csv-<file stem> for csv:PATH."""
    key = canonical_key(name)
    if key.startswith(CSV_PREFIX):
        return f"csv-{file_key(Path(key[len(CSV_PREFIX):]).stem)}"
    return key


def _reader(key: str) -> ModuleType:
    module = "csv_dataset" if key.startswith(CSV_PREFIX) else key
    return importlib.import_module(f"data.readers.{module}")


def dataset_location(name: str, data_root: str | Path) -> Path:
    """The dataset folder DATA_ROOT/<key>, or the CSV file of a csv:PATH dataset."""
    key = canonical_key(name)
    if not key.startswith(CSV_PREFIX):
        return Path(data_root).expanduser() / key
    csv_path = Path(key[len(CSV_PREFIX) :]).expanduser()
    under_root = Path(data_root).expanduser() / csv_path
    if not csv_path.is_absolute() and not csv_path.exists() and under_root.exists():
        return under_root
    return csv_path


def read_rows(
    name: str,
    data_root: str | Path,
    split: str = "official",
    split_seed: int = 0,
    split_ratios: Sequence[float] = (0.7, 0.1, 0.2),
) -> list[Row]:
    """Rows of a dataset with train/val/test assigned.

    "official" keeps the dataset's own split (KonIQ's sets file, a CSV's split column) and falls
    back to the seeded random split for datasets without one; "random" always splits by content
    group with `split_seed` and `split_ratios` (train, val, test).
    """
    if split not in SPLIT_MODES:
        raise InvalidValueError(f"split must be one of {SPLIT_MODES}, got {split!r}")
    key = canonical_key(name)
    rows = _reader(key).read(dataset_location(key, data_root))
    if not rows:
        raise DatasetError(f"{key}: the label files list no images under {data_root}")
    if split == "official" and has_official_split(rows):
        return rows
    if split == "official":
        logger.info(
            "%s has no official split: using a random split by content (seed %d, ratios %s)",
            key,
            split_seed,
            tuple(split_ratios),
        )
    return random_split(rows, split_seed, split_ratios)


def check_split_sizes(key: str, data_root: str | Path, splits: dict[str, Sequence[Row]],
                      split: str, split_ratios: Sequence[float]) -> None:
    """Refuse, before training, a split with no training image or fewer than MIN_EVAL_IMAGES
    validation or test images (no epoch could be selected, no test score computed), saying
    how many images the split needs or how to split otherwise."""
    counts = [len(splits[name]) for name in SPLITS]
    if counts[0] >= 1 and min(counts[1:]) >= MIN_EVAL_IMAGES:
        return
    rows = [row for part in splits.values() for row in part]
    found = (f"gives {'/'.join(map(str, counts))} train/val/test images, but training needs "
             f"one and validation and test {MIN_EVAL_IMAGES} each (SRCC is undefined below "
             f"{MIN_EVAL_IMAGES}, so no epoch could be selected)")
    if split == "official" and has_official_split(_reader(key).read(dataset_location(key,
                                                                                    data_root))):
        raise DatasetError(f"{key}: the dataset's own split {found}; put at least "
                           f"{MIN_EVAL_IMAGES} images in each of val and test, or pass --split "
                           "random")
    groups = len({row.group for row in rows})
    unit = "images" if groups == len(rows) else "content groups"
    ratios = ",".join(f"{r:g}" for r in split_ratios)
    need = min_groups(split_ratios, MIN_EVAL_IMAGES)
    fix = (f"use at least {need} {unit} at these ratios" if need else
           "give train, val and test positive --split_ratios")
    even = min_groups(EVEN_RATIOS, MIN_EVAL_IMAGES) or 0
    if groups >= even:
        fix += f", or --split_ratios {','.join(f'{r:g}' for r in EVEN_RATIOS)}"
    raise DatasetError(f"{key}: the random split (--split_ratios {ratios}) of {groups} {unit} "
                       f"{found}; {fix}")


def release_sizes(name: str, split: str = "official",
                  split_ratios: Sequence[float] = (0.7, 0.1, 0.2)) -> dict:
    """Images and split sizes of a dataset's full release as its reader knows them (no file is
    read): {"n_images", "splits"}, the shape of `summarize`; a random split counts images."""
    key = canonical_key(name)
    reader = _reader(key)
    if not hasattr(reader, "IMAGES"):
        raise DatasetError(f"{key}: the size of its release is not known; run `python -m data "
                           f"--dataset {key}` on the data instead")
    official = getattr(reader, "OFFICIAL_SPLIT", None)
    if split == "official" and official:
        splits = dict(official)
    else:
        counts = group_counts(reader.IMAGES, check_ratios(split_ratios))
        splits = dict(zip(SPLITS, counts, strict=True))
    return {"n_images": reader.IMAGES, "splits": splits}


def resize_policy(name: str, geometry: str = "aspect") -> ResizePolicy:
    """How the dataset's images are resized before cropping (KonIQ 512x384, SPAQ short 512...).

    geometry "aspect" keeps each image's aspect; "squash" is the reference codes' 512 high x 384
    wide for the datasets in _SQUASHED.
    """
    if geometry not in GEOMETRIES:
        raise InvalidValueError(f"resize geometry must be one of {GEOMETRIES}, got {geometry!r}")
    key = canonical_key(name)
    if key.startswith(CSV_PREFIX):
        return ResizePolicy("none")
    return _SQUASH if geometry == "squash" and key in _SQUASHED else _RESIZE[key]


def check_images(rows: Sequence[Row]) -> list[Row]:
    """The rows whose image file does not exist (training scripts stop or --skip_missing)."""
    return [row for row in rows if not row.path.is_file()]


def describe_missing(missing: Sequence[Row], n_total: int, key: str = "") -> str:
    """One message naming how many images are missing, the first few, and what to do (for the
    dataset `key`: a csv: dataset's paths are relative to its CSV, not to --data_root)."""
    names = ", ".join(str(row.path) for row in missing[:N_MISSING_NAMED])
    more = f" and {len(missing) - N_MISSING_NAMED} more" if len(missing) > N_MISSING_NAMED else ""
    if key.startswith(CSV_PREFIX):
        check = (f"Check the image column of {key[len(CSV_PREFIX):]}: its paths are read "
                 "relative to the CSV's own folder (absolute paths are used as they are)")
    else:
        check = "Check --data_root and that the archive was fully extracted"
    return (
        f"{len(missing)} of {n_total} images listed in the labels are missing: {names}{more}. "
        f"{check}, or pass --skip_missing to go on without them."
    )


def drop_missing(key: str, rows: Sequence[Row], skip_missing: bool,
                 logger: logging.Logger) -> list[Row]:
    """The rows whose images exist; missing ones stop the run unless `skip_missing` (warned)."""
    missing = check_images(rows)
    if missing and not skip_missing:
        raise DatasetError(f"{key}: {describe_missing(missing, len(rows), key)}")
    if missing:
        logger.warning("--skip_missing: going on without %d missing images of %s (first: %s)",
                       len(missing), key, missing[0].path)
    absent = {row.path for row in missing}
    return [row for row in rows if row.path not in absent]


def summarize(
    name: str,
    data_root: str | Path,
    split: str = "official",
    split_seed: int = 0,
    split_ratios: Sequence[float] = (0.7, 0.1, 0.2),
) -> dict:
    """Counts, split sizes, MOS range and missing images of a dataset (JSON-able)."""
    rows = read_rows(name, data_root, split, split_seed, split_ratios)
    missing = check_images(rows)
    scores = [row.mos for row in rows]
    return {
        "dataset": canonical_key(name),
        "n_images": len(rows),
        "splits": split_counts(rows),
        "mos_min": min(scores),
        "mos_max": max(scores),
        "missing": len(missing),
        "missing_examples": [row.name for row in missing[:N_MISSING_NAMED]],
        "location": str(dataset_location(name, data_root)),
        "split": split,
        "split_seed": split_seed,
        "resize": resize_policy(name).key(),
    }

