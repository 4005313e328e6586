"""Weights: offline-first hub look-up and partial loading with a key report."""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from models.errors import EncoderMismatchError, WeightsUnavailableError

LOGGER = logging.getLogger(__name__)

MIN_MATCHED_FRACTION = 0.9
_TRUTHY = {"1", "true", "yes", "on"}
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
# Wrappers added by DDP and torch.compile; a state dict saved from a wrapped model carries them.
_WRAPPER_PREFIX = re.compile(r"^(?:module\.|_orig_mod\.)+")


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the `module.` (DDP) and `_orig_mod.` (torch.compile) prefixes from state-dict keys."""
    return {_WRAPPER_PREFIX.sub("", key): value for key, value in state.items()}


def hub_offline() -> bool:
    """Whether the environment forbids Hugging Face Hub access (HF_HUB_OFFLINE)."""
    import huggingface_hub

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUTHY
    return env or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub host accepts a TCP connection within `timeout` s (True behind a proxy)."""
    if any(os.environ.get(name) for name in _PROXY_VARS):
        return True
    import huggingface_hub

    url = urlparse(huggingface_hub.constants.ENDPOINT)
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_file(
    repo_id: str, filenames: Sequence[str], what: str, hint: str, cache_dir: str | None = None
) -> Path:
    """Local path of the first of `filenames` in a hub repo: cached copy, else a download.

    Without network the hub client retries for tens of seconds; here a missing network is found
    first (HF_HUB_OFFLINE or an unreachable host) and reported at once with `hint`.
    """
    import huggingface_hub

    for name in filenames:
        cached = huggingface_hub.try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(cached, str):
            LOGGER.info("%s: using cached %s", what, cached)
            return Path(cached)
    if hub_offline():
        reason = "HF_HUB_OFFLINE is set"
    elif not hub_reachable():
        reason = f"{huggingface_hub.constants.ENDPOINT} cannot be reached"
    else:
        reason = ""
    if reason:
        raise WeightsUnavailableError(
            f"{what} ({repo_id}) are not in the local Hugging Face cache and {reason}. {hint}"
        )
    errors = []
    for name in filenames:
        try:
            return Path(huggingface_hub.hf_hub_download(repo_id, name, cache_dir=cache_dir))
        except Exception as exc:  # hub errors span HTTP, missing-entry and OS error types
            errors.append(f"{name}: {exc}")
    raise WeightsUnavailableError(
        f"{what}: download from {repo_id} failed ({'; '.join(errors)}). {hint}"
    )


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> dict[str, int]:
    """Load the keys of `state` that match `module` by name and shape; report the counts.

    Raises EncoderMismatchError when fewer than 90 % of the module's keys are matched: a silent
    non-strict load that loads nothing is the failure this guards against.
    """
    own = module.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in matched]
    unexpected = [k for k in state if k not in matched]
    reshaped = [k for k in unexpected if k in own]
    fraction = len(matched) / max(len(own), 1)
    if fraction < MIN_MATCHED_FRACTION:
        raise EncoderMismatchError(
            f"{source}: only {len(matched)} of the encoder's {len(own)} weights ({fraction:.0%}) "
            f"found a key of the same name and shape; at least {MIN_MATCHED_FRACTION:.0%} are "
            f"required. Missing e.g. {missing[:3]}, unexpected e.g. {unexpected[:3]}, shape "
            f"mismatches {len(reshaped)}. Check that the file belongs to this --model_size."
        )
    module.load_state_dict(matched, strict=False)
    return {"matched": len(matched), "missing": len(missing), "unexpected": len(unexpected)}
