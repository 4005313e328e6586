"""KADID-10k style synthetic distortions, batched in torch on the images' device, seeded.

`parse_distortions("blur,jpeg,noise,brightness")` turns the `--distortions` flag into type
names (groups are written `group:blur`, ..., or `all`); `degrade_levels` gives every image its
clean version and L increasing levels of its type; `apply_distortion` runs one type and level.
"""

from data.degradations.apply import apply_distortion, degrade_levels
from data.degradations.registry import (
    ALIASES,
    DISTORTION_NAMES,
    DISTORTIONS,
    GROUPS,
    level_parameters,
    parse_distortions,
    resolve_name,
)

__all__ = [
    "ALIASES",
    "DISTORTIONS",
    "DISTORTION_NAMES",
    "GROUPS",
    "apply_distortion",
    "degrade_levels",
    "level_parameters",
    "parse_distortions",
    "resolve_name",
]
