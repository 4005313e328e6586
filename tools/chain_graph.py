"""The chain's stage graph: the stages run_qualiclip_experiments.sh declares, what each needs, and
which of them a run redoes, skips or refuses.

In --parallel, --submit and --plan mode the chain does not run its stages one by one: each
`run_stage` call appends the stage to a plan file instead,

    python -m tools.chain_graph add PLAN NAME FOLDER|- CLEAN FEEDS AFTER [KEY=VALUE ...] -- CMD...

(CLEAN and FEEDS space separated, AFTER `all` or empty), and a scheduler reads the plan back.
A stage needs every stage that names it in --feeds (the chain already redoes those when their
input ran), and a stage declared with --after all (the report) needs every stage before it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.cli import build_parser
from tools.stage_settings import check, settings_of

RUN, SKIP = "run", "skip"


@dataclass(frozen=True)
class Stage:
    """One stage as the chain declared it."""

    name: str
    folder: str | None  # run folder whose last.pkl means "resume"; None when it has none
    clean: tuple[str, ...]  # paths a forced stage deletes first
    feeds: tuple[str, ...]  # stages that use this one's output
    after_all: bool  # needs every stage declared before it (the report)
    declared: tuple[str, ...]  # KEY=VALUE settings its command does not show
    command: tuple[str, ...]

    @property
    def settings(self) -> dict[str, str]:
        """The settings its marker records (tools.stage_settings)."""
        return settings_of(self.declared, self.command)

    @property
    def processes(self) -> int:
        """Devices it runs on: torchrun's --nproc_per_node, else 1."""
        words = list(self.command)
        if "torch.distributed.run" in words and "--nproc_per_node" in words:
            return int(words[words.index("--nproc_per_node") + 1])
        return 1

    @property
    def uses_device(self) -> bool:
        """Whether it computes on the accelerator (its command takes --device)."""
        return "--device" in self.command


@dataclass
class Decision:
    """What a run does with one stage: run it (from scratch when forced) or skip it."""

    action: str
    forced: bool = False
    note: str = ""
    needs: list[str] = field(default_factory=list)


class PlanError(Exception):
    """A stage finished earlier with other settings: the run must not go on silently."""


def add_stage(plan: Path, argv: Sequence[str]) -> None:
    """Append one stage (the `add` command line after PLAN) to the plan file."""
    if len(argv) < 5 or "--" not in argv[5:]:
        raise ValueError("expected NAME FOLDER|- CLEAN FEEDS AFTER [KEY=VALUE ...] -- COMMAND...")
    name, folder, clean, feeds, after = argv[:5]
    split = list(argv).index("--", 5)
    record = {"name": name, "folder": None if folder == "-" else folder,
              "clean": clean.split(), "feeds": feeds.split(), "after_all": after == "all",
              "declared": list(argv[5:split]), "command": list(argv[split + 1:])}
    with plan.open("a") as f:
        f.write(json.dumps(record) + "\n")


def load_plan(plan: Path) -> list[Stage]:
    """The stages of a plan file, in the chain's order."""
    stages = []
    for line in plan.read_text().splitlines():
        r = json.loads(line)
        stages.append(Stage(r["name"], r["folder"], tuple(r["clean"]), tuple(r["feeds"]),
                            r["after_all"], tuple(r["declared"]), tuple(r["command"])))
    return stages


def needs_of(stages: Sequence[Stage]) -> dict[str, list[str]]:
    """{stage: the stages whose output it uses}, each list in the chain's order."""
    names = [s.name for s in stages]
    needs: dict[str, list[str]] = {name: [] for name in names}
    for i, stage in enumerate(stages):
        if stage.after_all:
            needs[stage.name] = names[:i]
        for fed in stage.feeds:
            if fed in needs and stage.name not in needs[fed]:
                needs[fed].append(stage.name)
    order = {name: i for i, name in enumerate(names)}
    for name, before in needs.items():
        late = [b for b in before if order[b] > order[name]]
        if late:
            raise ValueError(f"stage {name} needs {late}, declared after it: the chain declares "
                             "every stage after the stages it uses")
        before.sort(key=order.__getitem__)
    return needs


def decide(stages: Sequence[Stage], forced: Iterable[str], done_dir: Path) -> dict[str, Decision]:
    """What the sequential chain would do with each stage, decided before any runs.

    A stage runs when forced (--force, or a stage it needs runs: its input changes) or when it has
    no marker; a stage with a marker of the same settings is skipped. A marker of other settings
    raises PlanError with the chain's message, before anything runs.
    """
    forced = set(forced)
    needs = needs_of(stages)
    decisions: dict[str, Decision] = {}
    refused = []
    for stage in stages:
        inputs_run = [n for n in needs[stage.name] if decisions[n].action == RUN]
        is_forced = "all" in forced or stage.name in forced or bool(inputs_run)
        marker = done_dir / stage.name
        decision = Decision(RUN, forced=is_forced, needs=needs[stage.name])
        if not is_forced and marker.is_file():
            status, message = check(marker, stage.settings)
            if status == 0:
                decision = Decision(SKIP, note=message, needs=needs[stage.name])
            else:
                refused.append(f"stage '{stage.name}' {message}. Pass --force {stage.name} to "
                               "redo it (the stages that use its output are redone too), or "
                               "choose another EXP_NAME / --run_dir for the new settings")
        decisions[stage.name] = decision
    if refused:
        raise PlanError("\n".join(refused))
    return decisions


def plan_parser(description: str) -> argparse.ArgumentParser:
    """The flags every reader of a plan takes: --run_dir, --plan, --force."""
    parser = build_parser(description)
    parser.add_argument("--run_dir", type=Path, required=True)
    parser.add_argument("--plan", type=Path, required=True, help="plan file of the chain")
    parser.add_argument("--force", nargs="*", default=[], help="forced stages (or all)")
    return parser


def load_decided(args: argparse.Namespace) -> tuple[list[Stage], dict[str, Decision]]:
    """The plan's stages and what this run does with each (PlanError when it must not run)."""
    stages = load_plan(args.plan)
    return stages, decide(stages, args.force, args.run_dir / ".done")


def dependants(name: str, stages: Sequence[Stage]) -> list[str]:
    """Every stage that needs `name`, directly or through others, in the chain's order."""
    needs = needs_of(stages)
    lost = {name}
    for stage in stages:
        if lost.intersection(needs[stage.name]):
            lost.add(stage.name)
    return [s.name for s in stages if s.name in lost and s.name != name]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `add PLAN ...` (one stage) for the chain script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] != "add":
        print(__doc__, file=sys.stderr)
        return 2
    add_stage(Path(argv[1]), argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
