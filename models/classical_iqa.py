"""Classical opinion-unaware quality baselines (NIQE, BRISQUE, PIQE) from their PyPI packages.

Each runs the package's own implementation with the model parameters its wheel ships, so none
downloads anything. common.classical_table names each package and its pinned version (the same
pins as requirements_qualiclip.txt). All three give LOWER raw scores to BETTER images; `raw_score`
returns the package's value unchanged and the test code flips its sign (docs/BASELINES.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from importlib import metadata

import numpy as np

from common.classical_table import BASELINES, DIRECTION, Baseline, available_text
from common.errors import InvalidValueError
from models.errors import WeightsUnavailableError

REQUIREMENTS_FILE = "requirements_qualiclip.txt"


class BaselineUnavailableError(WeightsUnavailableError):
    """A classical baseline's package is not installed."""


def describe(name: str) -> dict:
    """What a result file records about a baseline: method, package, installed version, sign."""
    spec = _spec(name)
    return {"name": spec.name, "method": spec.title, "package": spec.package,
            "pinned_version": spec.version, "installed_version": metadata.version(spec.package),
            "parameters": spec.parameters, "direction": DIRECTION, "min_side": spec.min_side}


def _spec(name: str) -> Baseline:
    if name not in BASELINES:
        raise InvalidValueError(f"unknown classical baseline {name!r}; available: "
                                f"{available_text()}")
    return BASELINES[name]


def _import(spec: Baseline):
    try:
        return importlib.import_module(spec.module)
    except ImportError as exc:
        raise BaselineUnavailableError(
            f"the {spec.title} baseline needs the PyPI package {spec.package}=={spec.version}, "
            f"which could not be imported ({exc}); install the project's requirements "
            f"(pip install -r {REQUIREMENTS_FILE}) or that package alone "
            f"(pip install {spec.package}=={spec.version})") from exc


def _niqe() -> Callable[[np.ndarray], float]:
    import torch

    module = _import(BASELINES["niqe"])
    core = importlib.import_module("iqa.niqe.niqe_core")
    params = core.NIQE_PRIS_PARAMS
    if np.ndim(params["mu_pris_param"]) != 1:
        # The package keeps the pristine mean as a (1, 36) row, so its final float() meets a
        # (1, 1) array, which numpy >= 2.4 refuses; the same vector as (36,) gives the same
        # value as a scalar.
        core.NIQE_PRIS_PARAMS = {key: params[key] for key in params.files}
        core.NIQE_PRIS_PARAMS["mu_pris_param"] = params["mu_pris_param"].ravel()

    def score(image: np.ndarray) -> float:
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]  # (1, 3, H, W), a copy
        return float(module.niqe(x))

    return score


def _brisque() -> Callable[[np.ndarray], float]:
    module = _import(BASELINES["brisque"])

    class Brisque(module.BRISQUE):
        """The package's BRISQUE with its features as plain floats."""

        def calculate_brisque_features(self, image: np.ndarray, kernel_size: int = 7,
                                       sigma: float = 7 / 6) -> np.ndarray:
            # Some features come out as 1-element arrays, which numpy >= 2.4 no longer turns
            # into floats in the package's scaling step; the values are unchanged.
            features = super().calculate_brisque_features(image, kernel_size, sigma)
            return np.array([np.asarray(f, dtype=np.float64).item() for f in features])

    model = Brisque(url=False)
    return lambda image: float(model.score(image))


def _piqe() -> Callable[[np.ndarray], float]:
    module = _import(BASELINES["piqe"])
    # pypiqe converts with OpenCV's BGR order: give it BGR so its grey is the image's luma
    return lambda image: float(module.piqe(np.ascontiguousarray(image[..., ::-1]))[0])


_LOADERS = {"niqe": _niqe, "brisque": _brisque, "piqe": _piqe}


@cache
def load_scorer(name: str) -> Callable[[np.ndarray], float]:
    """The package's scorer of baseline `name`: (H, W, 3) uint8 RGB -> raw score (lower =
    better). Raises BaselineUnavailableError, with the install command, when it is missing."""
    _spec(name)
    return _LOADERS[name]()


def require(names: list[str]) -> None:
    """Load the scorers of `names` now, so that a missing package stops a run before it scores
    anything (BaselineUnavailableError, with the install command)."""
    for name in names:
        load_scorer(name)


def raw_score(name: str, image: np.ndarray) -> float:
    """Raw score of one (H, W, 3) uint8 RGB image; NaN when it is smaller than the method needs."""
    if min(image.shape[:2]) < _spec(name).min_side:
        return float("nan")
    return load_scorer(name)(image)
