"""Classical baselines: raw scores against published reference figures, and time per image.

    python -m benchmarks.classical_baselines --speed [--repeats 5]
    python -m benchmarks.classical_baselines --reference_dir CALIB/ResultsCalibra/dist_dir

--reference_dir takes the five distorted 512 x 384 images that pyiqa ships in its wheel
(ResultsCalibra/dist_dir, see docs/BASELINES.md for the download) and prints each baseline's raw
score beside the figures pyiqa publishes for the original MATLAB code on those images.
--speed times one 512 x 384 photograph (shipped in an installed package) per baseline.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from data.demo_photos import load_sources
from data.images import load_rgb
from models.classical_iqa import BASELINES, load_scorer, raw_score

# pyiqa's ResultsCalibra/calibration_summary.csv (chaofengc/IQA-PyTorch): the original MATLAB
# releases on its five distorted images. niqe: the authors' niqe_release (LIVE); brisque: the
# authors' BRISQUE release (LIVE model); piqe: MATLAB's piqe().
REFERENCE = {
    "niqe": {"I03": 15.7536, "I04": 3.6549, "I06": 3.2355, "I08": 3.184, "I19": 8.6352},
    "brisque": {"I03": 94.6421, "I04": -0.1076, "I06": 0.9929, "I08": 5.3583, "I19": 72.2617},
    "piqe": {"I03": 100.0, "I04": 21.62, "I06": 35.86, "I08": 41.15, "I19": 76.95},
}
SPEED_SIZE = (512, 384)  # (W, H): KonIQ-10k as the test sets give it


def reference_check(folder: Path) -> None:
    """Print raw scores against the published figures, per image and baseline, with the SRCC."""
    for name, figures in REFERENCE.items():
        ours = {}
        for stem, published in figures.items():
            image = np.asarray(load_rgb(folder / f"{stem}.bmp"))
            ours[stem] = raw_score(name, image)
            print(f"{name:8s} {stem}.bmp {image.shape[1]}x{image.shape[0]}  published "
                  f"{published:9.4f}  ours {ours[stem]:9.4f}  diff {ours[stem] - published:+.4f}")
        rho = spearmanr(list(figures.values()), list(ours.values())).statistic
        print(f"{name:8s} SRCC ours vs published over {len(figures)} images: {rho:.3f}")


def speed(repeats: int) -> None:
    """Print seconds per 512 x 384 image of each baseline (after one warm-up call)."""
    image = np.asarray(load_sources()[0].convert("RGB").resize(SPEED_SIZE))
    for name, spec in BASELINES.items():
        load_scorer(name)
        raw_score(name, image)
        start = time.perf_counter()
        for _ in range(repeats):
            raw_score(name, image)
        per_image = (time.perf_counter() - start) / repeats
        print(f"{name:8s} {spec.package} {spec.version}: {per_image:.3f} s per 512x384 image "
              f"({1 / per_image:.1f} images/s, one process, {repeats} repeats)")


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="time each baseline per image")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per baseline")
    parser.add_argument("--reference_dir", type=Path, default=None,
                        help="pyiqa's ResultsCalibra/dist_dir (I03.bmp ... I19.bmp)")
    args = parser.parse_args(argv)
    if not args.speed and args.reference_dir is None:
        parser.error("give --speed and/or --reference_dir DIR")
    if args.reference_dir is not None:
        reference_check(args.reference_dir)
    if args.speed:
        speed(args.repeats)


if __name__ == "__main__":
    main()
