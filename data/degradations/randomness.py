"""Seeded random numbers for the degradations, drawn on the images' device."""

from __future__ import annotations

import torch
from torch import Tensor

_SEED_HIGH = 2**62


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (
        b.index if b.index is not None else current
    )


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """A generator on `device`: `generator` itself when it lives there, else one seeded from it.

    Without a generator the seed comes from torch's global CPU generator, so `torch.manual_seed`
    makes the degradations reproducible too.
    """
    if generator is not None and _same_device(generator.device, device):
        return generator
    source_device = "cpu" if generator is None else generator.device
    seed = torch.randint(0, _SEED_HIGH, (1,), generator=generator, device=source_device)
    return torch.Generator(device=device).manual_seed(int(seed))


def host_index(values: list[int], device: torch.device) -> Tensor:
    """int64 tensor of host `values` on `device`: on a GPU through pinned memory, copied without
    blocking the host (the values change every batch, so they cannot be cached)."""
    index = torch.tensor(values, dtype=torch.long)
    if device.type == "cuda":
        return index.pin_memory().to(device, non_blocking=True)
    return index.to(device)


class RandomSource:
    """Random numbers of one distortion call on a sub-batch of N images.

    `slots` (N,) maps images to per-image random choices (direction, angle): images sharing a
    slot, such as the two crops of one picture, get the same choices. Pixel-level fields are
    always drawn per image.
    """

    def __init__(self, generator: torch.Generator, n: int, dtype: torch.dtype,
                 slots: list[int] | None = None) -> None:
        self.generator = generator
        self.device = generator.device
        self.n = n
        self.dtype = dtype
        # Slot bookkeeping stays on the host, so drawing never waits for the device.
        self.num_slots = n if slots is None else max(slots, default=-1) + 1
        self.slots = None if slots is None else host_index(slots, self.device)

    def per_image(self, *shape: int) -> Tensor:
        """Uniform [0, 1) values (N, *shape), identical for images that share a slot."""
        u = torch.rand((self.num_slots, *shape), generator=self.generator, device=self.device,
                       dtype=self.dtype)
        return u if self.slots is None else u[self.slots]

    def uniform(self, *shape: int) -> Tensor:
        """Independent uniform [0, 1) values (N, *shape)."""
        return torch.rand((self.n, *shape), generator=self.generator, device=self.device,
                          dtype=self.dtype)

    def normal(self, *shape: int) -> Tensor:
        """Independent standard normal values (N, *shape)."""
        return torch.randn((self.n, *shape), generator=self.generator, device=self.device,
                           dtype=self.dtype)
