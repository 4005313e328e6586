"""Distortion types, their level tables, aliases and groups, and the `--distortions` parser."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from common.errors import InvalidValueError
from data.degradations import blur, brightness, color, compression, noise, sharpness, spatial
from data.degradations.randomness import RandomSource

Level = float | tuple[float, ...]


@dataclass(frozen=True)
class Distortion:
    """One distortion type: its function, group and parameter at the five KADID levels."""

    name: str
    group: str
    fn: Callable[[Tensor, Any, RandomSource], Tensor]
    anchors: tuple[Level, ...]  # parameter at levels 1..5, strictly rising in intensity
    integer: bool = False  # counts (colours, patches, blocks) are rounded to whole numbers


# Parameters follow the level tables of KADID-10k and of ARNIQA's degradations, changed only
# where a KADID level leaves the image unchanged or does not rise: gaussian_blur level 1 is sigma
# 0.4 (0.1 changes nothing in float32), color_oversaturation level 1 a factor 1.5 (1 is the
# identity), mean_shift a rising shift with a random sign per image (KADID: 0, +-0.08, +-0.15).
# ARNIQA has no denoise (here the noise variance before the Wiener filter) nor
# color_quantization (palette size) table; contrast_change takes ARNIQA's output half-range.
_TABLE = (
    Distortion("gaussian_blur", "blur", blur.gaussian_blur, (0.4, 0.5, 1.0, 2.0, 5.0)),
    Distortion("lens_blur", "blur", blur.lens_blur, (1.0, 2.0, 4.0, 6.0, 8.0)),
    Distortion("motion_blur", "blur", blur.motion_blur, (1.0, 2.0, 4.0, 6.0, 10.0)),
    Distortion("color_diffusion", "color", color.color_diffusion, (1.0, 3.0, 6.0, 8.0, 12.0)),
    Distortion("color_shift", "color", color.color_shift, (1.0, 3.0, 6.0, 8.0, 12.0)),
    Distortion("color_quantization", "color", color.color_quantization,
               (64, 48, 32, 16, 8), integer=True),
    Distortion("color_saturation", "color", color.color_saturation, (0.4, 0.2, 0.1, 0.0, -0.4)),
    Distortion("color_oversaturation", "color", color.color_oversaturation,
               (1.5, 2.0, 3.0, 6.0, 9.0)),
    Distortion("jpeg2000", "compression", compression.jpeg2000, (16.0, 32.0, 45.0, 120.0, 170.0)),
    Distortion("jpeg", "compression", compression.jpeg, (43.0, 36.0, 24.0, 7.0, 4.0)),
    Distortion("gaussian_noise", "noise", noise.gaussian_noise,
               (0.001, 0.002, 0.003, 0.005, 0.01)),
    Distortion("color_noise", "noise", noise.color_noise, (0.0001, 0.0005, 0.001, 0.002, 0.003)),
    Distortion("impulse_noise", "noise", noise.impulse_noise, (0.001, 0.005, 0.01, 0.02, 0.03)),
    Distortion("multiplicative_noise", "noise", noise.multiplicative_noise,
               (0.001, 0.005, 0.01, 0.02, 0.05)),
    Distortion("denoise", "noise", noise.denoise, (0.002, 0.004, 0.008, 0.016, 0.032)),
    Distortion("brighten", "brightness", brightness.brighten, (0.1, 0.2, 0.4, 0.7, 1.1)),
    Distortion("darken", "brightness", brightness.darken, (0.05, 0.1, 0.2, 0.4, 0.8)),
    Distortion("mean_shift", "brightness", brightness.mean_shift, (0.03, 0.06, 0.09, 0.12, 0.15)),
    Distortion("brightness", "brightness", brightness.brightness,
               ((0.1, 0.05), (0.2, 0.1), (0.4, 0.2), (0.7, 0.4), (1.1, 0.8))),
    Distortion("jitter", "spatial", spatial.jitter, (0.05, 0.1, 0.2, 0.5, 1.0)),
    Distortion("non_eccentricity_patch", "spatial", spatial.non_eccentricity_patch,
               (20, 40, 60, 80, 100), integer=True),
    Distortion("pixelate", "spatial", spatial.pixelate, (0.01, 0.05, 0.1, 0.2, 0.5)),
    Distortion("quantization", "spatial", spatial.quantization, (20.0, 16.0, 13.0, 10.0, 7.0)),
    Distortion("color_block", "spatial", spatial.color_block, (2, 4, 6, 8, 10), integer=True),
    Distortion("high_sharpen", "sharpness", sharpness.high_sharpen, (1.0, 2.0, 3.0, 6.0, 12.0)),
    Distortion("contrast_change", "sharpness", sharpness.contrast_change,
               (0.4, 0.3, 0.2, 0.1, 0.05)),
)

DISTORTIONS: dict[str, Distortion] = {d.name: d for d in _TABLE}
DISTORTION_NAMES: tuple[str, ...] = tuple(DISTORTIONS)
GROUPS: dict[str, tuple[str, ...]] = {
    group: tuple(d.name for d in _TABLE if d.group == group)
    for group in ("blur", "noise", "compression", "color", "brightness", "spatial", "sharpness")
}
# The experiment plan's short names, plus the KADID-10k / ARNIQA spellings.
ALIASES: dict[str, str] = {
    "blur": "gaussian_blur",
    "noise": "gaussian_noise",
    "gaublur": "gaussian_blur",
    "lensblur": "lens_blur",
    "motionblur": "motion_blur",
    "colordiff": "color_diffusion",
    "colorshift": "color_shift",
    "colorsat1": "color_saturation",
    "colorsat2": "color_oversaturation",
    "whitenoise": "gaussian_noise",
    "whitenoisecc": "color_noise",
    "impulsenoise": "impulse_noise",
    "multnoise": "multiplicative_noise",
    "meanshift": "mean_shift",
    "noneccpatch": "non_eccentricity_patch",
    "colorblock": "color_block",
    "highsharpen": "high_sharpen",
    "contrast": "contrast_change",
}
GROUP_PREFIX = "group:"
ALL = "all"


def _choices() -> str:
    groups = ", ".join(GROUP_PREFIX + g for g in GROUPS)
    aliases = ", ".join(f"{a}={n}" for a, n in ALIASES.items())
    return f"names: {', '.join(DISTORTION_NAMES)}; groups: {groups}, {ALL}; aliases: {aliases}"


def resolve_name(name: str) -> str:
    """The canonical type name of a distortion name or alias (groups are not accepted)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DISTORTIONS:
        hint = ""
        if key.startswith(GROUP_PREFIX) or key in GROUPS or key == ALL:
            hint = " (a group names several types: expand it with parse_distortions first)"
        raise InvalidValueError(
            f"unknown distortion type {name!r}{hint}; expected one of {_choices()}")
    return key


def parse_distortions(spec: str) -> list[str]:
    """Expand a comma list of names, aliases, `group:<name>` and `all` into unique type names."""
    out: list[str] = []
    for item in spec.split(","):
        key = item.strip().lower()
        if not key:
            continue
        if key == ALL:
            names: tuple[str, ...] = DISTORTION_NAMES
        elif key.startswith(GROUP_PREFIX) and key[len(GROUP_PREFIX):] in GROUPS:
            names = GROUPS[key[len(GROUP_PREFIX):]]
        elif key in GROUPS and ALIASES.get(key, key) not in DISTORTIONS:
            raise InvalidValueError(
                f"--distortions {spec!r}: {item.strip()!r} is a group; write "
                f"{GROUP_PREFIX}{key} (valid {_choices()})"
            )
        else:
            canonical = ALIASES.get(key, key)
            if canonical not in DISTORTIONS:
                raise InvalidValueError(
                    f"--distortions {spec!r}: unknown distortion {item.strip()!r}; expected a "
                    f"comma list of {_choices()}"
                )
            names = (canonical,)
        out.extend(n for n in names if n not in out)
    if not out:
        raise InvalidValueError(
            f"--distortions {spec!r} names no distortion; expected {_choices()}")
    return out


def level_parameters(name: str, num_levels: int = 5) -> list[Level]:
    """The parameter of `name` at levels 1..num_levels (the KADID five, interpolated otherwise)."""
    if num_levels < 1:
        raise InvalidValueError(f"num_levels must be >= 1, got {num_levels}")
    d = DISTORTIONS[resolve_name(name)]
    # Levels spread evenly over the table's range; a single level sits mid-range.
    steps = max(num_levels - 1, 1)
    positions = [0.5] if num_levels == 1 else [i / steps for i in range(num_levels)]
    values = [_interpolate(d.anchors, t) for t in positions]
    if d.integer:
        values = _strict_integers(d.name, values, rising=d.anchors[-1] > d.anchors[0])
    return values


def _interpolate(anchors: tuple[Level, ...], t: float) -> Level:
    # Piecewise linear through the anchors placed evenly on [0, 1].
    pos = t * (len(anchors) - 1)
    i = min(int(pos), len(anchors) - 2)
    frac = pos - i
    a, b = anchors[i], anchors[i + 1]
    if isinstance(a, tuple):
        return tuple(u + frac * (v - u) for u, v in zip(a, b, strict=True))
    return a + frac * (b - a)


def _strict_integers(name: str, values: list[Level], rising: bool) -> list[Level]:
    # Rounded counts must still differ from level to level, in the table's direction. Falling
    # counts (colours) stop at 2, so level i keeps room for the levels after it.
    levels = len(values)
    if not rising and levels > round(values[0]) - 1:
        raise InvalidValueError(
            f"{name} has at most {round(values[0]) - 1} distinct levels ({round(values[0])} "
            f"down to 2), got num_levels={levels}; lower --num_levels or leave {name} out of "
            "--distortions"
        )
    out: list[int] = []
    for i, v in enumerate(values):
        n = round(v) if rising else max(round(v), 2 + levels - 1 - i)
        if out:
            n = max(n, out[-1] + 1) if rising else min(n, out[-1] - 1)
        out.append(n)
    return out
