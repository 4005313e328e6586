"""The classical opinion-unaware baselines: names, methods, pinned packages (no numpy, no torch).

The command-line help reads this table; models.classical_iqa scores images with the packages.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Baseline:
    """One classical baseline: where its implementation comes from and what its score means."""

    name: str
    title: str
    package: str  # PyPI distribution
    version: str  # pinned version, as in requirements_qualiclip.txt
    module: str  # the import that needs the package
    parameters: str  # what the model parameters are and where the wheel keeps them
    min_side: int  # smaller images get no score (NaN): the method needs that many pixels


BASELINES: dict[str, Baseline] = {b.name: b for b in (
    Baseline("niqe", "NIQE", "iqa-torch", "1.2.1", "iqa.niqe",
             "the official pristine-image Gaussian of Mittal et al. (2013), "
             "iqa/niqe/niqe_pris_params.npz; 96 x 96 blocks at two scales", 192),
    Baseline("brisque", "BRISQUE", "brisque", "0.2.0", "brisque",
             "the LIVE-trained support vector regressor of Mittal et al. (2012), "
             "brisque/models/svm.txt and normalize.pickle", 32),
    Baseline("piqe", "PIQE", "pypiqe", "1.2", "pypiqe.piqe",
             "none: block-wise distortion rules of Venkatanath et al. (2015), as in MATLAB's "
             "piqe()", 32),
)}
DIRECTION = "lower raw score = better image; predictions are minus the raw score"


def available_text() -> str:
    """The baselines one line each: name, method, package and version."""
    return ", ".join(f"{b.name} ({b.title}, {b.package} {b.version})" for b in BASELINES.values())


def baseline_name(text: str) -> str:
    """argparse type of --baselines: a known baseline name (case-insensitive)."""
    name = text.strip().lower()
    if name not in BASELINES:
        raise argparse.ArgumentTypeError(
            f"unknown classical baseline {text!r}; available: {available_text()}")
    return name
