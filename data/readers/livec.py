"""LIVE Challenge: `Data/AllImages_release.mat` + `Data/AllMOS_release.mat` and Images/."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.readers.common import missing_label_file, require_dataset_dir
from data.rows import UNASSIGNED, DatasetError, Row

TITLE = "LIVE Challenge"
IMAGES = 1162  # scored rows of the release (1,169 less the 7 training images)
NAMES_FILE = "Data/AllImages_release.mat"
MOS_FILE = "Data/AllMOS_release.mat"
IMAGE_DIR = "Images"
N_TRAINING_IMAGES = 7  # t1..t7 in Images/trainingImages/, listed first and not part of the study
LAYOUT = (
    "  livec/Images/*.bmp|JPG                   (1,162 images)\n"
    "  livec/Images/trainingImages/t1..t7.bmp  (the first 7 label entries, not scored)\n"
    "  livec/Data/AllImages_release.mat        (AllImages_release: 1169x1 cell of names)\n"
    "  livec/Data/AllMOS_release.mat           (AllMOS_release: 1x1169 MOS, 0-100)"
)


def _load_variable(path: Path, variable: str) -> np.ndarray:
    """The named variable of a MATLAB file, or its only variable when named differently."""
    from scipy.io import loadmat

    try:
        content = loadmat(path)
    except Exception as exc:  # scipy raises several error types on damaged .mat files
        raise DatasetError(f"cannot read the MATLAB file {path}: {exc}") from exc
    names = [k for k in content if not k.startswith("__")]
    if variable in content:
        return content[variable]
    if len(names) == 1:
        return content[names[0]]
    raise DatasetError(f"{path}: expected a variable {variable!r}, found {names}.")


def _cell_text(cell: object) -> str:
    """Text of one MATLAB cell entry as scipy returns it (a 1-element string array)."""
    values = np.asarray(cell).ravel()
    return str(values[0]).strip() if values.size else ""


def read(dataset_dir: Path) -> list[Row]:
    """The 1,162 scored rows (the first 7 training-phase entries dropped), MOS 0-100."""
    require_dataset_dir(dataset_dir, TITLE, LAYOUT)
    names_path, mos_path = dataset_dir / NAMES_FILE, dataset_dir / MOS_FILE
    for path in (names_path, mos_path):
        if not path.is_file():
            raise missing_label_file([path], TITLE, LAYOUT)
    names = [_cell_text(c) for c in _load_variable(names_path, "AllImages_release").ravel()]
    scores = np.asarray(_load_variable(mos_path, "AllMOS_release"), dtype=np.float64).ravel()
    if len(names) != len(scores):
        raise DatasetError(
            f"{names_path} lists {len(names)} images but {mos_path} holds {len(scores)} MOS "
            f"values; both files must come from the same release."
        )
    images = dataset_dir / IMAGE_DIR
    rows = []
    for i in range(N_TRAINING_IMAGES, len(names)):
        name, mos = names[i], float(scores[i])
        if not name or not np.isfinite(mos):
            raise DatasetError(
                f"{names_path} / {mos_path}, entry {i + 1}: expected an image name and a finite "
                f"MOS, found name {name!r} and MOS {mos!r}."
            )
        rows.append(Row(images / name, mos, UNASSIGNED, name, name))
    return rows
