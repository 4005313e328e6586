"""Batched KADID-style degradations: every type's output, level ordering, parsing, batching."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch

from data.degradations import (
    DISTORTION_NAMES,
    GROUPS,
    apply_distortion,
    degrade_levels,
    level_parameters,
    parse_distortions,
)
from data.degradations.registry import DISTORTIONS

KADID_TYPES = (
    "gaussian_blur", "lens_blur", "motion_blur", "color_diffusion", "color_shift",
    "color_quantization", "color_saturation", "jpeg2000", "jpeg", "gaussian_noise",
    "color_noise", "impulse_noise", "multiplicative_noise", "denoise", "brighten", "darken",
    "mean_shift", "brightness", "jitter", "non_eccentricity_patch", "pixelate", "quantization",
    "color_block", "high_sharpen", "contrast_change",
)
DEFAULT_FOUR = ("gaussian_blur", "jpeg", "gaussian_noise", "brightness")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Four 64 x 64 crops of photos shipped with scikit-image, float (4, 3, 64, 64) in [0, 1]."""
    skdata = pytest.importorskip("skimage.data")
    crops = []
    for image, (top, left) in ((skdata.astronaut(), (60, 180)), (skdata.astronaut(), (300, 40)),
                               (skdata.coffee(), (100, 250)), (skdata.chelsea(), (90, 160))):
        # Halve the resolution (2 x 2 means) for detail closer to a 224 crop of a large photo.
        patch = image[top : top + 128, left : left + 128].astype(np.float32) / 255.0
        crops.append(patch.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3)))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of the mean squared error over the whole batch."""
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def falling(values: list) -> bool:
    """True when every value is strictly below the one before."""
    return all(a > b for a, b in pairwise(values))


def rising(values: list) -> bool:
    """True when every value is strictly above the one before."""
    return all(a < b for a, b in pairwise(values))


def seeded(seed: int = 0) -> torch.Generator:
    """A CPU generator with a fixed seed."""
    return torch.Generator().manual_seed(seed)


def test_types_cover_kadid_families() -> None:
    assert len(DISTORTION_NAMES) >= 20
    assert set(KADID_TYPES) <= set(DISTORTION_NAMES)
    grouped = [name for names in GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(DISTORTION_NAMES)  # every type in exactly one group
    assert set(GROUPS) == {"blur", "noise", "compression", "color", "brightness", "spatial",
                           "sharpness"}


@pytest.mark.parametrize("name", DISTORTION_NAMES)
def test_every_type_keeps_shape_range_and_seed(photos: torch.Tensor, name: str) -> None:
    x = photos[:2]
    before = x.clone()
    for level in range(1, 6):
        y = apply_distortion(x, name, level, generator=seeded(3))
        assert y.shape == x.shape and y.dtype == x.dtype
        assert torch.isfinite(y).all()
        assert y.min() >= 0.0 and y.max() <= 1.0
        assert torch.equal(y, apply_distortion(x, name, level, generator=seeded(3)))
    assert torch.equal(x, before)  # the input is never modified
    odd = photos[:1, :, 5:26, 3:38]  # sizes that are no multiple of any block or wavelet size
    y = apply_distortion(odd, name, 5, generator=seeded())
    assert y.shape == odd.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", DISTORTION_NAMES)
def test_psnr_falls_at_every_level(photos: torch.Tensor, name: str) -> None:
    scores = [psnr(apply_distortion(photos, name, lv, generator=seeded()), photos)
              for lv in range(1, 6)]
    assert scores[0] < 60.0, f"{name} level 1 barely changes the image: {scores[0]:.1f} dB"
    assert falling(scores), (name, scores)


@pytest.mark.parametrize("num_levels", [3, 7])
@pytest.mark.parametrize("name", DEFAULT_FOUR)
def test_other_level_counts_stay_ordered(photos: torch.Tensor, name: str,
                                         num_levels: int) -> None:
    out = degrade_levels(photos, [name] * len(photos), num_levels, generator=seeded(1))
    assert out.shape == (len(photos), num_levels + 1, *photos.shape[1:])
    for image in range(len(photos)):  # ordered per image, not just on average
        scores = [psnr(out[image, lv], photos[image]) for lv in range(num_levels + 1)]
        assert falling(scores), (name, scores)


def test_level_parameters_interpolate_the_kadid_table() -> None:
    for name, d in DISTORTIONS.items():
        assert level_parameters(name) == list(d.anchors)
    assert level_parameters("jpeg", 3) == [43.0, 24.0, 4.0]
    assert level_parameters("gaussian_noise", 1) == [0.003]
    seven = level_parameters("gaussian_blur", 7)
    assert seven[0] == 0.4 and seven[-1] == 5.0
    assert rising(seven)
    blocks = level_parameters("color_block", 12)  # counts stay whole and distinct
    assert all(isinstance(v, int) for v in blocks)
    assert rising(blocks)
    colours = level_parameters("color_quantization", 7)
    assert falling(colours)
    with pytest.raises(ValueError, match="num_levels"):
        level_parameters("jpeg", 0)
    assert len(level_parameters("color_quantization", 63)) == 63
    with pytest.raises(ValueError, match="at most 63 distinct levels"):
        level_parameters("color_quantization", 64)


def test_parse_names_aliases_groups_and_all() -> None:
    assert parse_distortions("blur,jpeg,noise,brightness") == list(DEFAULT_FOUR)
    assert parse_distortions(" Lens_Blur , whitenoiseCC ") == ["lens_blur", "color_noise"]
    assert parse_distortions("group:blur") == ["gaussian_blur", "lens_blur", "motion_blur"]
    assert parse_distortions("blur,group:blur,gaussian_blur") == list(GROUPS["blur"])
    assert parse_distortions("group:compression,jpeg") == ["jpeg2000", "jpeg"]
    assert parse_distortions("all") == list(DISTORTION_NAMES)
    assert parse_distortions("jpeg,all")[0] == "jpeg"
    assert len(parse_distortions("all,group:noise")) == len(DISTORTION_NAMES)


def test_parse_rejects_unknown_names_with_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown distortion 'fog'") as err:
        parse_distortions("blur,fog")
    message = str(err.value)
    assert "gaussian_blur" in message and "group:spatial" in message and "all" in message
    with pytest.raises(ValueError, match="group:color"):
        parse_distortions("color")
    with pytest.raises(ValueError, match="names no distortion"):
        parse_distortions(" , ")
    with pytest.raises(ValueError, match="expand it with parse_distortions"):
        apply_distortion(torch.zeros(1, 3, 8, 8), "group:blur", 1)


def test_degrade_levels_shape_and_clean_level(photos: torch.Tensor) -> None:
    names = ["jpeg", "motion_blur", "color_block", "brightness"]
    out = degrade_levels(photos, names, 5, generator=seeded())
    assert out.shape == (4, 6, 3, 64, 64) and out.dtype == photos.dtype
    assert torch.equal(out[:, 0], photos)
    assert torch.equal(out, degrade_levels(photos, names, 5, generator=seeded()))
    assert not torch.equal(out, degrade_levels(photos, names, 5, generator=seeded(1)))
    torch.manual_seed(5)
    first = degrade_levels(photos, names)
    torch.manual_seed(5)
    assert torch.equal(first, degrade_levels(photos, names))  # global seed without generator


def test_degrade_levels_runs_each_type_on_its_images(photos: torch.Tensor) -> None:
    names = ["jpeg2000", "pixelate", "jpeg2000", "gaussian_blur"]  # types without randomness
    out = degrade_levels(photos, names, 5, generator=seeded())
    for i, name in enumerate(names):
        for level in range(1, 6):
            expected = apply_distortion(photos[i : i + 1], name, level)
            torch.testing.assert_close(out[i, level], expected[0])
    single = degrade_levels(photos, ["motion_blur"] * 4, 5, generator=seeded(2))
    for level in range(1, 6):  # one type: level k is apply_distortion at k with the same seed
        expected = apply_distortion(photos, "motion_blur", level, generator=seeded(2))
        torch.testing.assert_close(single[:, level], expected)


def test_pair_crops_share_type_and_random_choices(photos: torch.Tensor) -> None:
    crops_a, crops_b = photos[:, :, :48, :48], photos[:, :, 16:, 16:]  # overlapping crops
    names = ["brightness", "mean_shift", "brightness", "mean_shift"]
    directions = set()
    for seed in range(4):
        stack = torch.cat([crops_a, crops_b])  # (2B, 3, 48, 48)
        out = degrade_levels(stack, names + names, 5, generator=seeded(seed),
                             pair_ids=[0, 1, 2, 3] * 2)
        shift = (out[:, 1:] - out[:, :1]).mean(dim=(1, 2, 3, 4))  # brighter > 0, darker < 0
        assert torch.equal(torch.sign(shift[:4]), torch.sign(shift[4:])), seed
        directions.update(torch.sign(shift).tolist())
    assert directions == {-1.0, 1.0}  # both directions occur


def test_bad_inputs_are_refused(photos: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="float RGB images"):
        apply_distortion((photos * 255).to(torch.uint8), "jpeg", 1)
    with pytest.raises(ValueError, match="float RGB images"):
        apply_distortion(photos[:, :1], "jpeg", 1)
    with pytest.raises(ValueError, match=r"level must be in 1\.\.5"):
        apply_distortion(photos, "jpeg", 6)
    with pytest.raises(ValueError, match="one distortion name per image"):
        degrade_levels(photos, ["jpeg"], 5)
    with pytest.raises(ValueError, match="one id per image"):
        degrade_levels(photos, ["jpeg"] * 4, 5, pair_ids=[0, 1])


def test_half_precision_comes_back_in_its_dtype(photos: torch.Tensor) -> None:
    out = degrade_levels(photos[:2].bfloat16(), ["lens_blur", "gaussian_noise"], 2, seeded())
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 3, 64, 64)
    assert torch.isfinite(out.float()).all()


def _block_phase(images: torch.Tensor) -> list[tuple[int, int]]:
    """(row, column) phase of the 8-pixel JPEG grid of each image: where steps are largest."""
    phases = []
    for image in images:
        cols = (image[..., 1:] - image[..., :-1]).abs().mean(dim=(0, 1))  # (W - 1,)
        rows = (image[:, 1:] - image[:, :-1]).abs().mean(dim=(0, 2))  # (H - 1,)
        phases.append((int(torch.stack([rows[k::8].mean() for k in range(8)]).argmax()),
                       int(torch.stack([cols[k::8].mean() for k in range(8)]).argmax())))
    return phases


def test_jpeg_grid_starts_at_a_random_phase_shared_by_levels_and_pairs() -> None:
    # Smooth images: JPEG's only edges are its block boundaries.
    smooth = torch.nn.functional.interpolate(torch.rand(8, 3, 6, 6, generator=seeded(1)),
                                             size=(64, 64), mode="bicubic").clamp(0, 1)
    stack = torch.cat([smooth, smooth])  # images i and i + 8 are the two crops of one picture
    out = degrade_levels(stack, ["jpeg"] * 16, 5, generator=seeded(2), pair_ids=[*range(8)] * 2)
    phases = [_block_phase(out[:, level]) for level in (3, 4, 5)]
    assert phases[0] == phases[1] == phases[2]  # one grid per image at every level
    assert phases[0][:8] == phases[0][8:]  # and for both crops of a picture
    assert len(set(phases[0][:8])) > 2  # a grid at the crop's corner would give (7, 7) for all
    # the coded pixels stay those of the image: the shift is undone exactly
    assert psnr(out[:, 1], stack) > 30.0
