"""Small demo datasets in the five official layouts (`python -m data.demo --out DIR`).

Scenes are crops of photos shipped with scikit-image, scikit-learn and matplotlib, each degraded
synthetically; the MOS follows the severity (plus a little rater noise) so that a model can learn
it. The same seed gives byte-identical label files and images.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from common.cli import build_parser
from data.demo_files import write_csv, write_mat, write_xlsx
from data.demo_photos import DEGRADATIONS, degrade, load_sources, make_scene

# KADID-10k type numbers of the demo's distortions (several are not among the pretraining
# defaults blur/jpeg/noise/brightness, so zero-shot tests can hold them out)
KADID_DEMO_TYPES = {
    1: "gaussian_blur",
    3: "motion_blur",
    10: "jpeg",
    11: "gaussian_noise",
    21: "pixelate",
    25: "contrast_change",
}
KADID_REFS, KADID_LEVELS = 6, 5
KONIQ_SIZES = {"training": 112, "validation": 16, "test": 32}
N_SPAQ, N_AGIQA, N_LIVEC, N_LIVEC_TRAINING = 40, 30, 30, 7

# distortions per demo dataset: in-the-wild mixture, phone-camera faults, generator artefacts
WILD_TYPES = tuple(DEGRADATIONS)
PHONE_TYPES = ("gaussian_blur", "motion_blur", "gaussian_noise", "jpeg", "darken", "brighten")
GENERATED_TYPES = (
    "gaussian_blur",
    "pixelate",
    "color_saturation",
    "contrast_change",
    "quantization",
)
AGIQA_MODELS = (
    "AttnGAN_normal",
    "DALLE2_normal",
    "glide_normal",
    "midjourney_normal",
    "sd1.5_normal",
    "xl2.2_normal",
)
AGIQA_PROMPTS = (
    "a cat on a sofa",
    "an astronaut portrait",
    "a cup of coffee",
    "a rocket launch",
    "a red motorcycle",
    "a garden of flowers",
)
AGIQA_ADJECTIVES = ("", "", "soft lighting", "highly detailed", "vivid colors")
AGIQA_STYLES = ("", "", "baroque", "anime style", "abstract style", "realistic")
AGIQA_TEXT = (AGIQA_PROMPTS, AGIQA_ADJECTIVES, AGIQA_ADJECTIVES, AGIQA_STYLES)  # prompt..style


def _quality_image(
    sources: list, size: tuple[int, int], types: tuple[str, ...], rng: np.random.Generator
) -> tuple:
    """A degraded scene, its distortion name, severity and quality in [0, 1] (rater noise added)."""
    name = types[int(rng.integers(len(types)))]
    severity = float(rng.beta(1.2, 1.2))
    image, quality = degrade(make_scene(sources, size, rng), name, severity, rng)
    return image, name, severity, float(np.clip(quality + rng.normal(0.0, 0.03), 0.0, 1.0))


def _mixture_image(
    sources: list, size: tuple[int, int], types: tuple[str, ...], count: int,
    rng: np.random.Generator,
) -> tuple:
    """A scene with `count` different distortions in turn; quality is the product of theirs."""
    names = [types[int(i)] for i in rng.choice(len(types), size=count, replace=False)]
    image, quality = make_scene(sources, size, rng), 1.0
    for name in names:
        image, part = degrade(image, name, float(rng.beta(1.2, 1.2)), rng)
        quality *= part
    return image, quality + rng.normal(0.0, 0.03)


def _fmt(value: float) -> str:
    return f"{value:.6f}"


def _koniq_distribution(mos_100: float, rng: np.random.Generator) -> tuple[list[float], float]:
    """Fractions of ratings 1..5 around the MOS and their standard deviation."""
    centre = 1.0 + 4.0 * mos_100 / 100.0
    weights = np.exp(-0.5 * ((np.arange(1, 6) - centre) / rng.uniform(0.5, 0.9)) ** 2)
    fractions = weights / weights.sum()
    mean = float(fractions @ np.arange(1, 6))
    sd = float(np.sqrt(fractions @ (np.arange(1, 6) - mean) ** 2))
    return fractions.tolist(), sd


def koniq_sizes(total: int) -> dict[str, int]:
    """Images per KonIQ set for `total` images, in the official 7,058 / 1,000 / 2,015 ratio."""
    if total < 10:
        raise ValueError(f"a KonIQ-layout set needs at least 10 images, got {total}")
    validation = max(1, round(total * 1000 / 10073))
    test = max(1, round(total * 2015 / 10073))
    return {"training": total - validation - test, "validation": validation, "test": test}


def build_koniq(out: Path, sources: list, rng: np.random.Generator,
                sizes: dict[str, int] = KONIQ_SIZES, mix: int = 1) -> int:
    """koniq10k/1024x768/*.jpg (512x384 files) + the sets and the scores files.

    mix > 1 gives every image that many different distortions (quality: their product).
    """
    images = out / "1024x768"
    images.mkdir(parents=True, exist_ok=True)
    sets = [s for s, n in sizes.items() for _ in range(n)]
    sets = [sets[i] for i in rng.permutation(len(sets))]
    ids = 10**8 + rng.choice(10**10 - 10**8, size=len(sets), replace=False)
    sets_rows, score_rows = [], []
    for image_id, set_name in zip(ids, sets, strict=True):
        if mix == 1:
            image, _, _, quality = _quality_image(sources, (512, 384), WILD_TYPES, rng)
        else:
            image, quality = _mixture_image(sources, (512, 384), WILD_TYPES, mix, rng)
        name = f"{image_id}.jpg"
        image.save(images / name, quality=92)
        mos = float(np.clip(5.0 + 85.0 * quality, 1.0, 99.0))
        fractions, sd = _koniq_distribution(mos, rng)
        total = int(rng.integers(100, 140))
        counts = [_fmt(f) for f in fractions]
        sets_rows.append([name, *counts, total, _fmt(mos), _fmt(sd), set_name])
        mos_5 = 1.0 + 4.0 * mos / 100.0
        score_rows.append([name, *counts, total, _fmt(mos_5), _fmt(sd), _fmt(mos)])
    ratings = ["c1", "c2", "c3", "c4", "c5", "c_total"]
    write_csv(
        out / "koniq10k_distributions_sets.csv",
        ["image_name", *ratings, "MOS", "SD", "set"],
        sets_rows,
    )
    write_csv(
        out / "koniq10k_scores_and_distributions.csv",
        ["image_name", *ratings, "MOS", "SD", "MOS_zscore"],
        score_rows,
    )
    return len(sets_rows)


def build_spaq(out: Path, sources: list, rng: np.random.Generator) -> int:
    """spaq/TestImage/*.jpg (768x576) + Annotations/MOS and Image attribute scores.xlsx."""
    images = out / "TestImage"
    images.mkdir(parents=True, exist_ok=True)
    # attribute column (Brightness, Colorfulness, Contrast, Noisiness, Sharpness) each hurts
    hit = {
        "gaussian_blur": 4,
        "motion_blur": 4,
        "gaussian_noise": 3,
        "jpeg": 4,
        "darken": 0,
        "brighten": 0,
    }
    rows = []
    for i in range(N_SPAQ):
        image, kind, severity, quality = _quality_image(sources, (768, 576), PHONE_TYPES, rng)
        name = f"{i + 1:05d}.jpg"
        image.save(images / name, quality=90)
        mos = round(float(np.clip(5.0 + 90.0 * quality, 0.0, 100.0)), 2)
        # attributes near the MOS, the one the distortion touches lower
        attributes = np.clip(mos + rng.normal(0.0, 5.0, size=5), 0.0, 100.0)
        attributes[hit[kind]] = max(0.0, attributes[hit[kind]] - 30.0 * severity)
        rows.append([name, mos, *(round(float(a), 2) for a in attributes)])
    header = [
        "Image name",
        "MOS",
        "Brightness",
        "Colorfulness",
        "Contrast",
        "Noisiness",
        "Sharpness",
    ]
    write_xlsx(out / "Annotations" / "MOS and Image attribute scores.xlsx", header, rows)
    return len(rows)


def build_kadid(out: Path, sources: list, rng: np.random.Generator) -> int:
    """kadid10k/images/Iaa.png references, Iaa_dd_ll.png distortions and dmos.csv."""
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for ref in range(1, KADID_REFS + 1):
        reference = make_scene(sources, (384, 288), rng)
        ref_name = f"I{ref:02d}.png"
        reference.save(images / ref_name, compress_level=1)
        for type_id, kind in KADID_DEMO_TYPES.items():
            for level in range(1, KADID_LEVELS + 1):
                severity = (level - 0.5) / KADID_LEVELS
                image, quality = degrade(reference, kind, severity, rng)
                name = f"I{ref:02d}_{type_id:02d}_{level:02d}.png"
                image.save(images / name, compress_level=1)
                dmos = float(np.clip(1.0 + 3.9 * quality + rng.normal(0.0, 0.08), 1.0, 5.0))
                rows.append([name, ref_name, f"{dmos:.2f}", f"{rng.uniform(0.2, 1.0):.3f}"])
    write_csv(out / "dmos.csv", ["dist_img", "ref_img", "dmos", "var"], rows)
    return len(rows)


def build_agiqa(out: Path, sources: list, rng: np.random.Generator) -> int:
    """agiqa3k/AGIQA-3K/*.jpg (512x512) + data.csv with all its columns."""
    images = out / "AGIQA-3K"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(N_AGIQA):
        image, _, _, quality = _quality_image(sources, (512, 512), GENERATED_TYPES, rng)
        name = f"{AGIQA_MODELS[i % len(AGIQA_MODELS)]}_{i // len(AGIQA_MODELS):03d}.jpg"
        image.save(images / name, quality=92)
        mos = float(np.clip(0.3 + 4.0 * quality, 0.0, 5.0))
        text = [options[int(rng.integers(len(options)))] for options in AGIQA_TEXT]
        spreads = [rng.uniform(0.3, 0.9), rng.uniform(1.0, 4.5), rng.uniform(0.4, 0.9)]
        rows.append([name, *text, _fmt(mos), *(_fmt(v) for v in spreads)])
    header = [
        "name",
        "prompt",
        "adj1",
        "adj2",
        "style",
        "mos_quality",
        "std_quality",
        "mos_align",
        "std_align",
    ]
    write_csv(out / "data.csv", header, rows)
    return len(rows)


def build_livec(out: Path, sources: list, rng: np.random.Generator) -> int:
    """livec/Images/*.bmp|JPG (500x500), Images/trainingImages/t1..t7.bmp, Data/*.mat."""
    images = out / "Images"
    (images / "trainingImages").mkdir(parents=True, exist_ok=True)
    names, scores = [], []
    for i in range(N_LIVEC_TRAINING + N_LIVEC):
        image, _, _, quality = _quality_image(sources, (500, 500), PHONE_TYPES, rng)
        if i < N_LIVEC_TRAINING:
            name = f"t{i + 1}.bmp"
            image.save(images / "trainingImages" / name)
        else:
            name = f"{100 + i}.JPG" if i % 5 == 0 else f"{100 + i}.bmp"
            image.save(images / name, **({"quality": 92} if name.endswith(".JPG") else {}))
        names.append(name)
        scores.append(float(np.clip(5.0 + 85.0 * quality, 1.0, 99.0)))
    cells = np.empty((len(names), 1), dtype=object)
    cells[:, 0] = names
    data = out / "Data"
    write_mat(data / "AllImages_release.mat", {"AllImages_release": cells})
    write_mat(data / "AllMOS_release.mat", {"AllMOS_release": np.array([scores])})
    std = np.round(rng.uniform(10.0, 25.0, size=(1, len(names))), 6)
    write_mat(data / "AllStdDev_release.mat", {"AllStdDev_release": std})
    return len(names) - N_LIVEC_TRAINING


BUILDERS: dict[str, Callable[[Path, list, np.random.Generator], int]] = {
    "koniq10k": build_koniq,
    "spaq": build_spaq,
    "kadid10k": build_kadid,
    "agiqa3k": build_agiqa,
    "livec": build_livec,
}


def build_demo(out_dir: str | Path, seed: int = 0, koniq_images: int | None = None,
               koniq_mix: int = 1) -> dict:
    """Write the five demo datasets under out_dir/<key>/; return the number of scored images.

    koniq_images / koniq_mix change the KonIQ set's size and distortions per image.
    """
    out = Path(out_dir).expanduser()
    sources = load_sources()
    sizes = koniq_sizes(koniq_images) if koniq_images else KONIQ_SIZES
    builders = {**BUILDERS, "koniq10k": partial(build_koniq, sizes=sizes, mix=koniq_mix)}

    def build(number: int, key: str) -> int:
        # one random stream per dataset: each dataset is stable on its own and builds in parallel
        rng = np.random.default_rng([int(seed) % 2**32, number])
        return builders[key](out / key, sources, rng)

    workers = max(1, min(len(BUILDERS), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {key: pool.submit(build, i, key) for i, key in enumerate(BUILDERS)}
        return {key: future.result() for key, future in futures.items()}


def main(argv: list[str] | None = None) -> int:
    """Build the demo datasets and print their sizes as JSON."""
    parser = build_parser(
        prog="python -m data.demo",
        description="Build small demo IQA datasets in the five official layouts.",
    )
    parser.add_argument("--out", required=True, help="folder to write <key>/ datasets into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--koniq_images", type=int, default=None,
                        help="images in the KonIQ set, split in KonIQ's official ratio "
                        f"(default: {sum(KONIQ_SIZES.values())} as {KONIQ_SIZES})")
    parser.add_argument("--koniq_mix", type=int, choices=(1, 2, 3), default=1,
                        help="different distortions per KonIQ image; MOS from the product of "
                        "their qualities (default: 1)")
    args = parser.parse_args(argv)
    counts = build_demo(args.out, seed=args.seed, koniq_images=args.koniq_images,
                        koniq_mix=args.koniq_mix)
    print(json.dumps({"out": str(Path(args.out).resolve()), "datasets": counts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
