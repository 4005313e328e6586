"""Apply distortions to batches: one type at one level, or a type per image at every level."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from common.errors import InvalidValueError
from data.degradations.ops import full_float32
from data.degradations.randomness import RandomSource, device_generator, host_index
from data.degradations.registry import DISTORTIONS, level_parameters, resolve_name


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise InvalidValueError(
            "degradations expect float RGB images (N, 3, H, W) in [0, 1], got "
            f"{images.dtype} {tuple(images.shape)}; convert uint8 batches with x.float() / 255"
        )


def _work_dtype(images: Tensor) -> torch.dtype:
    # Half precision lacks CPU FFTs and loses the small noise levels: compute in float32.
    return images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32


def _run(images: Tensor, name: str, parameter: object, rng: RandomSource) -> Tensor:
    x = images.to(_work_dtype(images))
    # Colour transforms and DCTs are matrix products: keep them out of a caller's autocast and
    # out of TF32, whatever the global setting.
    with torch.autocast(images.device.type, enabled=False), full_float32():
        out = DISTORTIONS[name].fn(x, parameter, rng)
    return out.clamp(0.0, 1.0).to(images.dtype)


def apply_distortion(
    images: Tensor,
    name: str,
    level: int,
    num_levels: int = 5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Distort every image (N, 3, H, W) in [0, 1] with type `name` at `level` of `num_levels`."""
    _check_images(images)
    canonical = resolve_name(name)
    if not 1 <= level <= num_levels:
        raise InvalidValueError(f"level must be in 1..{num_levels} (num_levels), got {level}")
    parameter = level_parameters(canonical, num_levels)[level - 1]
    gen = device_generator(generator, images.device)
    rng = RandomSource(gen, images.shape[0], _work_dtype(images))
    return _run(images, canonical, parameter, rng)


def degrade_levels(
    images: Tensor,
    names: Sequence[str],
    num_levels: int = 5,
    generator: torch.Generator | None = None,
    *,
    pair_ids: Sequence[int] | None = None,
) -> Tensor:
    """Every image at levels 0 (clean) .. num_levels of its own type: (B, L + 1, 3, H, W).

    Images are grouped by type and each type runs once per level on its whole sub-batch. The
    random numbers of a type are the same at every level (only the strength changes), so the
    levels of one image are strictly ordered. Images with equal `pair_ids` (the two crops of
    one picture) also share their per-image random choices, such as the brightening direction
    or the motion angle; by default every image has its own.
    """
    _check_images(images)
    b = images.shape[0]
    if len(names) != b:
        raise InvalidValueError(f"degrade_levels needs one distortion name per image: {b} images, "
                                f"{len(names)} names")
    if pair_ids is not None and len(pair_ids) != b:
        raise InvalidValueError(f"pair_ids needs one id per image: {b} images, {len(pair_ids)} ids")
    ids = list(range(b)) if pair_ids is None else [int(i) for i in pair_ids]
    by_type: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_type.setdefault(resolve_name(name), []).append(i)

    out = images.new_empty((b, num_levels + 1, *images.shape[1:]))  # (B, L + 1, 3, H, W)
    out[:, 0] = images
    gen = device_generator(generator, images.device)
    for name, members in by_type.items():
        parameters = level_parameters(name, num_levels)
        index = host_index(members, images.device)
        sub = images.index_select(0, index)
        slot_of: dict[int, int] = {}
        slots = [slot_of.setdefault(ids[i], len(slot_of)) for i in members]
        rng = RandomSource(gen, len(members), _work_dtype(images), slots)
        start = gen.get_state()
        for level, parameter in enumerate(parameters, start=1):
            gen.set_state(start)  # common random numbers across the levels
            out[index, level] = _run(sub, name, parameter, rng)
    return out
