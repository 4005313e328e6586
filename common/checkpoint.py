"""Checkpoint format, atomic saving, safe loading (weights_only), RNG state, safetensors."""

from __future__ import annotations

import os
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import CheckpointError
from common.files import atomic_write, atomic_write_bytes
from common.vocabulary import DEFAULT_CROP_SIZE

CHECKPOINT_FORMAT = "qualiclip-iqa/1"
CHECKPOINT_KINDS = ("encoder", "full", "train_state")
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "params")


# ---------------------------------------------------------------- validation of plain values
def _json_problem(value: Any, where: str) -> str | None:
    """Return the path of the first value that JSON cannot represent, or None."""
    if value is None or isinstance(value, str | bool | int | float):
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has a non-string key {key!r} ({type(key).__name__})"
            problem = _json_problem(item, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problem = _json_problem(item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    return f"{where} is a {type(value).__module__}.{type(value).__qualname__} ({value!r:.60})"


def check_json_able(value: Any, name: str) -> None:
    """Raise CheckpointError naming the first entry of `value` that is not a plain JSON value."""
    problem = _json_problem(value, name)
    if problem:
        raise CheckpointError(
            f"{problem}; expected only str, int, float, bool, None, lists and dicts with str keys "
            "so the checkpoint loads with weights_only=True (convert it, e.g. str(path) or "
            "float(x), before saving)"
        )


def make_checkpoint(
    kind: str,
    model_size: str,
    state_dict: dict,
    config: dict,
    epoch: int,
    metrics: dict,
    **extra: Any,
) -> dict:
    """Assemble a checkpoint dict in the project format, validating that config is JSON-able."""
    if kind not in CHECKPOINT_KINDS:
        raise CheckpointError(f"checkpoint kind must be one of {CHECKPOINT_KINDS}, got {kind!r}")
    check_json_able(config, "config")
    check_json_able(metrics, "metrics")
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"state_dict must map names to tensors; {bad[0]!r} is a {type(state_dict[bad[0]])}"
        )
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "model_size": str(model_size),
        "state_dict": state_dict,
        "config": config,
        "epoch": int(epoch),
        "metrics": metrics,
        **extra,
    }


def crop_size_of(config: dict) -> int:
    """Crop size a checkpoint's model was built for (older checkpoints named it img_size)."""
    return int(config.get("crop_size") or config.get("img_size") or DEFAULT_CROP_SIZE)


# ---------------------------------------------------------------- saving
def atomic_save(obj: dict, path: str | os.PathLike) -> None:
    """torch.save obj to a temp file in the same folder, flush, fsync and rename it over path."""
    atomic_write(path, lambda f: torch.save(obj, f), "checkpoint")



# ---------------------------------------------------------------- loading
def _describe_foreign(obj: Any) -> str:
    """Say in a few words what a non-project checkpoint object is."""
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}, not a checkpoint dict"
    keys = list(obj)
    if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"a bare state_dict of {len(keys)} tensors (first keys: {keys[:3]})"
    if "format" in obj:
        return f"a checkpoint of format {obj['format']!r}"
    wrapped = [k for k in _STATE_DICT_KEYS if isinstance(obj.get(k), dict)]
    if wrapped:
        return f"a checkpoint from another codebase (weights under {wrapped[0]!r}; keys {keys[:8]})"
    return f"a dict without a 'format' tag (keys {keys[:8]})"


def _torch_load(path: Path) -> Any:
    """torch.load with weights_only=True, turning every failure into a CheckpointError."""
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.pkl"))
        listing = (f"checkpoints in it: {', '.join(found)}; pass one, e.g. {path / found[0]}"
                   if found else "it holds no .pkl checkpoint")
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; {listing}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (check the path)")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    # torch.save writes a zip archive (PK..); older files are pickles (protocol byte 0x80)
    if not head.startswith((b"PK\x03\x04", b"\x80")) and path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path} is not a checkpoint: it is neither a torch zip archive nor a pickle (it "
            f"starts with {head!r}); pass a .pkl file written by this project's scripts")
    if path.suffix == ".safetensors":
        raise CheckpointError(
            f"{path} is a .safetensors weights file, not a training checkpoint; "
            "pass the .pkl checkpoint instead (safetensors files hold weights only)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = next((ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln), "")
        raise CheckpointError(
            f"refused to load {path}: it contains pickled Python objects, not only tensors and "
            f"plain values ({found or 'unsupported object'}). No code from it was run. It may be "
            "a checkpoint of another codebase that pickled whole objects, or a malicious file; "
            "re-save its state_dict with a trusted tool if you trust its source."
        ) from exc
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as exc:
        raise CheckpointError(
            f"cannot read {path}: not a complete torch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); the file may be truncated or "
            "of another type"
        ) from exc


def load_checkpoint(path: str | os.PathLike, expected_kind: str | None = None) -> dict:
    """Load a project checkpoint safely (weights_only=True) and check its format and kind."""
    path = Path(path)
    obj = _torch_load(path)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is {_describe_foreign(obj)}; expected a {CHECKPOINT_FORMAT!r} checkpoint "
            "written by this project's scripts (plain timm Swin weights go to --imagenet_weights)"
        )
    if expected_kind is not None and obj.get("kind") != expected_kind:
        raise CheckpointError(
            f"{path} is a {obj.get('kind')!r} checkpoint (model_size {obj.get('model_size')!r}), "
            f"but a {expected_kind!r} checkpoint is needed here"
        )
    return obj


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a plain weights file safely: .safetensors, a bare state_dict, or a wrapped one.

    Project checkpoints return their "state_dict"; common wrappers ("model", "state_dict", ...)
    are unwrapped. Use it for third-party weights such as ImageNet Swin files.
    """
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    obj = _torch_load(path)
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return obj["state_dict"]
    for _ in range(2):
        if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _STATE_DICT_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        raise CheckpointError(f"{path} is {_describe_foreign(obj)}; expected model weights")
    return obj


def export_safetensors(
    state_dict: dict[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write model weights as .safetensors (atomically); shared or strided tensors are copied."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    meta = {"format": CHECKPOINT_FORMAT, **(metadata or {})}
    atomic_write_bytes(save(tensors, metadata={k: str(v) for k, v in meta.items()}), path)


# ---------------------------------------------------------------- RNG state
def rng_state() -> dict:
    """RNG state of python, numpy, torch and CUDA as tensors and plain values only."""
    version, internal, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=True)
    state = {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "key": str(np_state[0]),
            "state": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict) -> None:
    """Restore RNG state saved by rng_state (CUDA states only for the devices present)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["key"],
            npy["state"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].to(torch.uint8).cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        for index, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.to(torch.uint8).cpu(), index)
