"""tools.chain_graph: what each stage needs, and what a run redoes, skips or refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.chain_graph import PlanError, add_stage, decide, dependants, load_plan, needs_of
from tools.stage_settings import record


def write_plan(path: Path) -> list:
    """pretrain -> pretrained -> test_pretrained; baseline -> test_baseline; report after all."""
    for name, feeds, after in (("pretrain", "pretrained", ""), ("baseline", "test_baseline", ""),
                               ("pretrained", "test_pretrained", ""), ("test_baseline", "", ""),
                               ("test_pretrained", "", ""), ("report", "", "all")):
        add_stage(path, [name, "-", "", feeds, after, "KEY=1", "--", "python", "x.py",
                         "--model_name", name])
    return load_plan(path)


def test_needs_follow_feeds_and_the_report_needs_everything(tmp_path: Path) -> None:
    stages = write_plan(tmp_path / "plan.jsonl")
    needs = needs_of(stages)
    assert needs["pretrained"] == ["pretrain"] and needs["test_pretrained"] == ["pretrained"]
    assert needs["baseline"] == [] and needs["report"] == [s.name for s in stages[:-1]]
    assert dependants("pretrain", stages) == ["pretrained", "test_pretrained", "report"]
    assert stages[0].settings == {"KEY": "1", "program": "x.py", "--model_name": "pretrain"}


def test_forcing_redoes_what_uses_the_output_and_skips_the_rest(tmp_path: Path) -> None:
    stages = write_plan(tmp_path / "plan.jsonl")
    done = tmp_path / ".done"
    for stage in stages:
        record(done / stage.name, stage.settings)
    decisions = decide(stages, ["pretrain"], done)
    assert [s.name for s in stages if decisions[s.name].action == "run"] == [
        "pretrain", "pretrained", "test_pretrained", "report"]
    assert decisions["pretrained"].forced and decisions["baseline"].note.startswith("finished ")
    (done / "test_baseline").unlink()  # never finished: runs, resumable (not forced)
    decisions = decide(stages, [], done)
    assert decisions["test_baseline"].action == "run" and not decisions["test_baseline"].forced
    assert decisions["report"].forced and decisions["pretrain"].action == "skip"


def test_a_marker_of_other_settings_is_refused_unless_its_input_runs(tmp_path: Path) -> None:
    stages = write_plan(tmp_path / "plan.jsonl")
    done = tmp_path / ".done"
    for stage in stages:
        record(done / stage.name, {**stage.settings, "KEY": "2"})
    with pytest.raises(PlanError, match=r"stage 'pretrain' finished \S+ with other settings: "
                       r"KEY was '2', now '1'. Pass --force pretrain to redo it"):
        decide(stages, [], done)
    assert decide(stages, ["all"], done)["report"].action == "run"
