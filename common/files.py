"""Files written whole or not at all (temp file, fsync, rename), and plain JSON and CSV helpers.

No torch here: the report tools and the chain's bookkeeping write through it too.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common.errors import CheckpointError, OutputExistsError


def _temp_name(path: Path) -> Path:
    """A temp file name beside `path` that records host and pid (for stale-file cleanup)."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40]
    return path.with_name(f".{path.name}.{host}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files left beside `path` by killed processes of this host."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40]
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.{re.escape(host)}\.(\d+)\.[0-9a-f]+\.tmp$")
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        match = pattern.match(candidate.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                candidate.unlink()
        except PermissionError:
            continue


def _fsync_dir(folder: Path) -> None:
    """Persist a rename by syncing its folder (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Any, what: str) -> None:
    """Call write(fileobj) on a temp file beside path, fsync it, then rename it over path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create folder {path.parent} for {what}: {exc}") from exc
    tmp = _temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise CheckpointError(
                f"could not write {what} to {path}: {exc} (check free disk space and that the "
                "folder is writable; the previous file, if any, is unchanged)"
            ) from exc
        raise
    _fsync_dir(path.parent)
    _remove_stale_temps(path)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write bytes to path atomically (temp file, fsync, rename)."""
    atomic_write(path, lambda f: f.write(data), "file")


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write UTF-8 text to path atomically (temp file, fsync, rename)."""
    atomic_write_bytes(text.encode("utf-8"), path)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write obj as indented JSON to path atomically; Paths and other objects become strings."""
    atomic_write_text(json.dumps(obj, indent=2, default=str) + "\n", path)


def check_writable(folder: str | os.PathLike, needed_bytes: int = 0) -> Path:
    """Create folder and prove a file can be written there (and that needed_bytes are free).

    Call it before training so a read-only or full output folder fails in the first second,
    not after the first epoch.
    """
    folder = Path(folder)
    # a name of this process's own: runs started side by side share their log folder
    probe = folder / f".write_test.{socket.gethostname()}.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text("ok\n", probe)
        probe.unlink()
    except (OSError, CheckpointError) as exc:
        cause = exc.__cause__ if isinstance(exc, CheckpointError) and exc.__cause__ else exc
        raise CheckpointError(
            f"output folder {folder} is not writable ({type(cause).__name__}: {cause}); "
            "choose another --output_dir/--log_dir or fix its permissions"
        ) from exc
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise CheckpointError(
            f"output folder {folder} has {free / 2**30:.2f} GiB free, but about "
            f"{needed_bytes / 2**30:.2f} GiB are needed for checkpoints; free space or choose "
            "another --output_dir"
        )
    return folder


def json_safe(value):
    """Copy of a metrics dict (or value) with NaN and infinities as None, valid JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def csv_text(header: Sequence[str], records: Sequence[Sequence]) -> str:
    """A CSV's text (csv-module quoting, "\\n" line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(records)
    return buffer.getvalue()


def write_csv(path: str | Path, header: Sequence[str], records: Sequence[Sequence]) -> None:
    """Write a CSV atomically (csv-module quoting)."""
    atomic_write_text(csv_text(header, records), path)


def output_path(given: str | os.PathLike | None, default: str | os.PathLike, *, flag: str,
                overwrite: bool, companions: Callable[[Path], list[Path]] = lambda _: []) -> Path:
    """Where a result file goes: the `given` path (refused when it or one of its `companions`
    exists, unless `overwrite`), else `default`, renamed NAME_2, NAME_3, ... while taken."""
    if given is not None:
        path = Path(given)
        taken = [str(p) for p in (path, *companions(path)) if p.exists()]
        if taken and not overwrite:
            raise OutputExistsError(
                f"{flag} {path}: {', '.join(taken)} already exist(s) from an earlier call; pass "
                f"--overwrite to replace, or choose another {flag}")
        return path
    path, number = Path(default), 2
    while not overwrite and any(p.exists() for p in (path, *companions(path))):
        path = Path(default).with_name(f"{Path(default).stem}_{number}{Path(default).suffix}")
        number += 1
    return path


def renamed_note(path: Path, given: str | os.PathLike | None, default_name: str) -> str:
    """" (NAME here is an earlier call's ...)" when output_path gave the default file another
    name, else ""."""
    if given is not None or path.name == default_name:
        return ""
    return f" ({default_name} here is an earlier call's; --overwrite replaces it)"


def file_key(key: str) -> str:
    """A dataset key made safe for a file name (csv:PATH keys too)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_")
