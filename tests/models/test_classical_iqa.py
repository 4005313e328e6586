"""Classical baselines: each package scores a photo worse as it is blurred or noised, and a
wrong name or a missing package gets a message saying what to do."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter

from common.classical_table import BASELINES, baseline_name
from data.demo_photos import load_sources
from models.classical_iqa import (
    BaselineUnavailableError,
    describe,
    load_scorer,
    raw_score,
)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real photograph shipped inside an installed package, 384 x 288."""
    return load_sources()[1].convert("RGB").resize((384, 288))


def _noised(image: Image.Image, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0.0, sigma, (image.height, image.width, 3))
    return np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", list(BASELINES))
def test_raw_score_rises_with_blur_and_with_noise(name: str, photo: Image.Image) -> None:
    blurred = [raw_score(name, np.asarray(photo.filter(ImageFilter.GaussianBlur(s))))
               for s in (0, 1, 2, 4)]
    noised = [raw_score(name, _noised(photo, s)) for s in (0, 25, 50)]
    assert all(np.isfinite(blurred + noised))
    assert np.all(np.diff(blurred) > 0), blurred  # lower raw score = better image
    assert np.all(np.diff(noised) > 0), noised


def test_an_image_below_the_method_minimum_gets_no_score(photo: Image.Image) -> None:
    small = np.asarray(photo.resize((180, 150)))
    assert np.isnan(raw_score("niqe", small))  # NIQE needs 2 x 2 blocks of 96 px
    assert np.isfinite(raw_score("piqe", small))


def test_unknown_name_lists_the_available_baselines() -> None:
    assert baseline_name("NIQE") == "niqe"
    with pytest.raises(argparse.ArgumentTypeError) as err:
        baseline_name("ilniqe")
    assert str(err.value) == (
        "unknown classical baseline 'ilniqe'; available: niqe (NIQE, iqa-torch 1.2.1), "
        "brisque (BRISQUE, brisque 0.2.0), piqe (PIQE, pypiqe 1.2)")


def test_a_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    load_scorer.cache_clear()
    monkeypatch.setitem(sys.modules, "pypiqe.piqe", None)  # import now fails as if absent
    try:
        with pytest.raises(BaselineUnavailableError) as err:
            load_scorer("piqe")
    finally:
        load_scorer.cache_clear()
    message = str(err.value)
    assert message.startswith("the PIQE baseline needs the PyPI package pypiqe==1.2, which could "
                              "not be imported (")
    assert message.endswith("install the project's requirements (pip install -r "
                            "requirements_qualiclip.txt) or that package alone "
                            "(pip install pypiqe==1.2)")


def test_describe_records_the_installed_package_and_the_direction() -> None:
    info = describe("brisque")
    assert info["package"] == "brisque" and info["installed_version"] == "0.2.0"
    assert info["direction"].startswith("lower raw score = better image")
