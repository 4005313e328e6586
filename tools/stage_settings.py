"""Settings of a finished chain stage, kept in its marker: a rerun skips it only when they match.

A stage's settings are the flags of its command line (every flag, so a flag or knob added later
is covered without further work) plus any KEY=VALUE the stage declares for what its command does
not show. Flags that change where or how fast a stage runs, not its result, are left out.

    python -m tools.stage_settings record MARKER [KEY=VALUE ...] -- COMMAND...
    python -m tools.stage_settings check MARKER [KEY=VALUE ...] -- COMMAND...
check prints when the stage finished and exits 0 when the settings match; otherwise it prints
each difference and exits 3 (4 when the marker records no settings).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from common.files import atomic_write_json

# Flags that do not change a stage's result: workers, device choice, log folder, resuming, and
# the collapse stop (a pretraining that finished ran every epoch; the report's Stage-1 health
# check reads its monitor figures either way).
IGNORED_FLAGS = frozenset({"--num_workers", "--device", "--log_dir", "--resume", "--strict",
                           "--stop_on_collapse"})


def settings_of(declared: Sequence[str], command: Sequence[str]) -> dict[str, str]:
    """{setting: value} of a stage: declared KEY=VALUE pairs, the command's words after the
    interpreter up to its first flag ("program"), and every flag with its values."""
    settings: dict[str, str] = {}
    for item in declared:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"declared setting {item!r} is not KEY=VALUE")
        settings[key] = value
    program: list[str] = []
    flag = None
    for word in command[1:]:
        if word.startswith("--"):
            flag = word
            settings[flag] = ""  # a repeated flag counts once, the last one (as in argparse)
        elif flag is None:
            program.append(word)
        else:
            settings[flag] = f"{settings[flag]} {word}".strip()
    settings["program"] = " ".join(program)
    return {k: v for k, v in settings.items() if k not in IGNORED_FLAGS}


def differences(recorded: dict[str, str], requested: dict[str, str]) -> list[str]:
    """Each setting that differs, in words."""
    out = []
    for key in sorted(set(recorded) | set(requested)):
        before, now = recorded.get(key), requested.get(key)
        if before == now:
            continue
        if before is None:
            out.append(f"{key} {now!r} is new")
        elif now is None:
            out.append(f"{key} {before!r} is no longer given")
        else:
            out.append(f"{key} was {before!r}, now {now!r}")
    return out


def record(marker: Path, settings: dict[str, str]) -> None:
    """Write the marker: when the stage finished and with which settings (atomically)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    atomic_write_json({"finished": stamp, "settings": settings}, marker)


def check(marker: Path, settings: dict[str, str]) -> tuple[int, str]:
    """(exit status, message) of comparing the marker with the requested settings."""
    try:
        saved = json.loads(marker.read_text())
        recorded, finished = saved["settings"], saved["finished"]
    except (OSError, ValueError, KeyError, TypeError):
        return 4, "its marker records no settings (written by an older version of the chain)"
    diffs = differences(recorded, settings)
    if diffs:
        return 3, f"finished {finished} with other settings: {'; '.join(diffs)}"
    return 0, f"finished {finished} with the same settings"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: record or check a stage marker."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[0] not in ("record", "check") or "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    marker, declared, command = Path(argv[1]), argv[2:split], argv[split + 1:]
    settings = settings_of(declared, command)
    if argv[0] == "record":
        record(marker, settings)
        return 0
    status, message = check(marker, settings)
    print(message)
    return status


if __name__ == "__main__":
    sys.exit(main())
