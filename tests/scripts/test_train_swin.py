"""train_swin.py on the demo data: learning, pretrained encoders, early stopping, resume, errors."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import engine.finetune
from common.checkpoint import atomic_save, load_checkpoint
from common.cli import parse_with_config, run_script
from common.errors import CheckpointError, RunExistsError, UserError
from common.runlog import MetricsJournal
from data.rows import DatasetError
from engine.protocols import apply_protocol
from models.pretrain_heads import ScalarQualityHead
from models.pretrain_model import QualityPretrainModel, make_encoder_checkpoint
from models.swin_encoder import SwinEncoder
from train_swin import get_args_parser, main

REPO = Path(__file__).resolve().parents[2]
QUICK = ("--dataset", "koniq10k", "--batch_size", "8", "--max_steps_per_epoch", "1",
         "--test_patches", "1", "--val_patches", "1")
EPOCH_LINE = re.compile(
    r"epoch 1/4 \| train loss [\d.]+ \| train SRCC -?[\d.]+ \| val SRCC -?[\d.]+ \| "
    r"val PLCC -?[\d.]+ \| lr [\d.e+-]+ \| time [\d.]+s \| ETA (\d+s|\d+m\d\ds)\n"
)


def epochs_of(run_dir: Path) -> list[int]:
    return [record["epoch"] for record in MetricsJournal(run_dir / "metrics.jsonl").read()]


def test_defaults_follow_the_plan() -> None:
    args = get_args_parser().parse_args(["--database", "koniq", "--no_use_attention"])
    apply_protocol(args)
    assert (args.dataset, args.epochs, args.batch_size, args.lr, args.lr_ratio) == (
        "koniq", 50, 96, 5e-6, 10.0)
    assert (args.weight_decay, args.drop_path, args.dropout, args.scheduler) == (
        2e-4, 0.2, 0.3, "cosine")
    assert args.use_multiscale and not args.use_attention
    assert (args.patience, args.train_patches, args.test_patches, args.crop_size) == (
        10, 25, 25, 224)
    assert args.split_ratios == (0.7, 0.1, 0.2)
    assert args.val_patches == 10


@pytest.fixture(scope="module")
def flat_run(tmp_path_factory: pytest.TempPathFactory, script_argv, learnable_dataset) -> Path:
    """The trained run's first steps with zero learning rates: the untrained model, 2 epochs."""
    out = tmp_path_factory.mktemp("flat")
    argv = script_argv(out, "--dataset", learnable_dataset, "--model_name", "flat", "--seed", "0",
                       "--batch_size", "8", "--max_steps_per_epoch", "1", "--test_patches", "2",
                       "--val_patches", "2", "--epochs", "5", "--lr", "0", "--lr_hyper", "0",
                       "--patience", "1", "--select", "val")
    assert main(argv) == 0
    return out / "runs" / "flat"


def test_training_raises_validation_srcc(trained_run: dict, flat_run: Path) -> None:
    run_dir, results = trained_run["run_dir"], trained_run["results"]
    records = MetricsJournal(run_dir / "metrics.jsonl").read()
    assert [r["epoch"] for r in records] == list(range(1, 5))
    assert set(records[0]) == {"epoch", "train_loss", "train_srcc", "val_srcc", "val_plcc",
                               "lr", "time_s", "steps"}
    assert {r["steps"] for r in records} == {6}  # 48 training crops, batches of 8
    best = max(r["val_srcc"] for r in records)
    untrained = MetricsJournal(flat_run / "metrics.jsonl").read()[0]["val_srcc"]
    assert best > 0.6 and best > untrained + 0.3, (records, untrained)
    assert results["val"]["srcc"] == pytest.approx(best)
    assert results["best_epoch"] == 1 + [r["val_srcc"] for r in records].index(best)
    assert set(results["test"]) >= {"srcc", "plcc", "krcc", "rmse", "plcc_logistic", "n"}
    assert results["test"]["n"] == 16 and results["epochs_run"] == 4
    config = json.loads((run_dir / "finetune_config.json").read_text())
    assert config["args"]["lr"] == 3e-4 and config["environment"]["git_commit"]
    # the preset and each flag given against it, for the report
    assert config["protocol"] == "plan" and config["preset"]["train_patches"] == 25
    assert config["overrides"]["train_patches"] == {"preset": 25, "given": 1}
    assert config["overrides"]["batch_size"] == {"preset": 96, "given": 8}
    assert config["size_defaults"]["lr"] == 3e-4  # the CPU sizes' own rate, given or not
    assert "batch_size" in config["overrides"] and "lda_group" not in config["overrides"]
    best_ckpt = load_checkpoint(run_dir / "best_model.pkl", expected_kind="full")
    low, high = best_ckpt["config"]["mos_range"]
    assert 0.0 <= low < 10.0 and 90.0 < high <= 100.0  # the native 0-100 MOS scale
    log = (trained_run["out"] / "logs" / "demo.log").read_text()
    assert EPOCH_LINE.search(log), log[-2000:]
    start = f"run folder {run_dir}, log {trained_run['out'] / 'logs' / 'demo.log'}"
    assert start in log and log.index(start) < log.index("epoch 1/4 |")
    assert "protocol plan; model-size defaults: " in log and "--head_pooling mean_std" in log
    assert "; overrides: " in log and "--train_patches 1 (preset 25)" in log


def test_pretrained_encoder_sets_the_start_and_its_learning_rate(
    tmp_path: Path, script_argv
) -> None:
    torch.manual_seed(123)
    encoder = SwinEncoder("micro")
    pretrained = QualityPretrainModel(encoder, ScalarQualityHead(encoder.num_features))
    ckpt_path = tmp_path / "swin_micro_qualiclip_pretrained.pkl"
    atomic_save(make_encoder_checkpoint(pretrained, {}, 3, {}), ckpt_path)
    argv = script_argv(tmp_path, *QUICK, "--epochs", "1", "--model_name", "pre", "--lr", "1e-3",
                       "--lr_ratio", "10", "--pretrained_encoder", str(ckpt_path),
                       "--lr_encoder_pretrained", "0")
    assert main(argv) == 0
    run_dir = tmp_path / "runs" / "pre"
    groups = {g["name"]: g["initial_lr"] for g in
              load_checkpoint(run_dir / "last.pkl")["optimizer"]["param_groups"]}
    assert groups["encoder"] == 0.0 and groups["hyper"] == pytest.approx(1e-2)
    trained = load_checkpoint(run_dir / "best_model.pkl")["state_dict"]
    for key, value in encoder.state_dict().items():  # lr 0: still exactly the loaded weights
        assert torch.equal(trained[f"encoder.{key}"], value), key


def test_early_stopping_stops(flat_run: Path) -> None:
    results = json.loads((flat_run / "results.json").read_text())
    assert results["stopped_early"] and results["epochs_run"] == 2 and results["best_epoch"] == 1
    assert epochs_of(flat_run) == [1, 2]


def test_select_last_keeps_the_last_epoch_whatever_validation_says(
    tmp_path: Path, script_argv, learnable_dataset: str
) -> None:
    # zero rates: validation SRCC is the same every epoch, so "val" keeps epoch 1, "last" the 3rd
    argv = script_argv(tmp_path, "--dataset", learnable_dataset, "--model_name", "last",
                       "--batch_size", "8", "--max_steps_per_epoch", "1", "--test_patches", "1",
                       "--val_patches", "1", "--epochs", "3", "--lr", "0", "--lr_hyper", "0",
                       "--select", "last", "--patience", "1")
    assert main(argv) == 0
    run_dir = tmp_path / "runs" / "last"
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["best_epoch"], results["selected_by"], results["epochs_run"]) == (3, "last", 3)
    assert load_checkpoint(run_dir / "best_model.pkl")["epoch"] == 3
    log = (tmp_path / "logs" / "last.log").read_text()
    assert "test (epoch 3, the last epoch, --select last)" in log


def test_sigterm_saves_then_resume_runs_each_epoch_once(
    tmp_path: Path, script_argv, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = script_argv(tmp_path, *QUICK, "--epochs", "3", "--model_name", "term")
    real_epoch = engine.finetune.train_one_epoch

    def epoch_with_signal(*args, **kwargs):
        if kwargs["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(engine.finetune, "train_one_epoch", epoch_with_signal)
    assert run_script(lambda: main(argv)) == 128 + signal.SIGTERM
    run_dir = tmp_path / "runs" / "term"
    assert epochs_of(run_dir) == [1] and load_checkpoint(run_dir / "last.pkl")["epoch"] == 1
    assert "--resume" in (tmp_path / "logs" / "term.log").read_text()
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0
    assert epochs_of(run_dir) == [1, 2, 3]


def test_killed_run_resumes_with_each_epoch_once(tmp_path: Path, script_argv) -> None:
    argv = script_argv(tmp_path, *QUICK, "--epochs", "3", "--model_name", "killed")
    run_dir = tmp_path / "runs" / "killed"
    proc = subprocess.Popen([sys.executable, str(REPO / "train_swin.py"), *argv], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not epochs_of(run_dir) and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.kill()
    finally:
        proc.wait()
    done = epochs_of(run_dir)
    assert done and done[-1] < 3
    assert main([*argv, "--resume"]) == 0
    assert epochs_of(run_dir) == [1, 2, 3]
    assert json.loads((run_dir / "results.json").read_text())["epochs_run"] == 3


def test_bad_inputs_stop_before_training(tmp_path: Path, script_argv, demo_root: Path) -> None:
    empty_root = tmp_path / "no_data"
    empty_root.mkdir()
    argv = script_argv(tmp_path, *QUICK, "--model_name", "bad")
    with pytest.raises(DatasetError, match="1024x768"):
        main([*argv, "--data_root", str(empty_root)])
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="not writable"):
        main([*argv, "--output_dir", str(blocker / "runs")])
    assert not (tmp_path / "runs" / "bad" / "metrics.jsonl").exists()


def test_missing_images_are_reported_or_skipped(
    tmp_path: Path, script_argv, demo_root: Path
) -> None:
    root = tmp_path / "data"
    (root / "koniq10k").mkdir(parents=True)
    (root / "koniq10k" / "1024x768").symlink_to(demo_root / "koniq10k" / "1024x768")
    sets = (demo_root / "koniq10k" / "koniq10k_distributions_sets.csv").read_text()
    lines = sets.splitlines()
    lines.insert(1, "absent_0001.jpg" + lines[1][lines[1].index(","):])
    (root / "koniq10k" / "koniq10k_distributions_sets.csv").write_text("\n".join(lines) + "\n")
    argv = script_argv(tmp_path, *QUICK, "--epochs", "1", "--model_name", "gaps",
                       "--data_root", str(root))
    with pytest.raises(DatasetError, match=r"1 of 161 images .* missing: .*absent_0001\.jpg"):
        main(argv)
    assert main([*argv, "--skip_missing"]) == 0


def test_existing_run_needs_resume_and_repeats_summarise(tmp_path: Path, script_argv) -> None:
    argv = script_argv(tmp_path, *QUICK, "--epochs", "1", "--model_name", "rep", "--repeats", "2",
                       "--split", "random")
    assert main(argv) == 0
    summary = json.loads((tmp_path / "runs" / "rep_repeats.json").read_text())
    assert [r["split_seed"] for r in summary["runs"]] == [0, 1]
    assert set(summary["test_srcc"]) == {"median", "mean", "std", "min", "max"}
    assert (tmp_path / "runs" / "rep_r1" / "best_model.pkl").is_file()
    with pytest.raises(RunExistsError, match="--resume"):
        main(argv)


def test_label_fraction_trains_on_a_seeded_subset(tmp_path: Path, script_argv) -> None:
    argv = script_argv(tmp_path, *QUICK, "--epochs", "1", "--model_name", "quarter",
                       "--label_fraction", "0.25")
    assert main(argv) == 0
    config = json.loads((tmp_path / "runs" / "quarter" / "finetune_config.json").read_text())
    assert config["images"] == {"train": 28, "val": 16, "test": 32}  # 112 training images / 4
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--label_fraction", "1.5"])


def test_sigint_inside_an_epoch_resumes_at_the_next_step(
    tmp_path: Path, script_argv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT during step 2 of epoch 2 (of 4 steps): the state is saved after that step, and the
    resumed run trains steps 3 and 4 only, ending with the weights of a run never stopped."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "executable", str(REPO / ".venv" / "bin" / "python"))
    calls: list[list[int]] = []
    signal_at = [0]
    real_step = engine.finetune.l1_step

    def counting_step(device):
        step = real_step(device)

        def counted(model, batch):
            calls.append(batch["index"].tolist())
            if len(calls) == signal_at[0]:
                os.kill(os.getpid(), signal.SIGINT)
            return step(model, batch)

        return counted

    monkeypatch.setattr(engine.finetune, "l1_step", counting_step)
    flags = ("--dataset", "koniq10k", "--batch_size", "8", "--max_steps_per_epoch", "4",
             "--test_patches", "1", "--val_patches", "1", "--epochs", "2", "--patience", "0")
    assert main(script_argv(tmp_path, *flags, "--model_name", "whole")) == 0
    whole = list(calls)

    calls.clear()
    signal_at[0] = 6
    argv = script_argv(tmp_path, *flags, "--model_name", "cut")
    assert run_script(lambda: main(argv)) == 128 + signal.SIGINT
    run_dir = tmp_path / "runs" / "cut"
    last = run_dir / "last.pkl"
    assert epochs_of(run_dir) == [1]
    log = (tmp_path / "logs" / "cut.log").read_text()
    assert (f"stopped by SIGINT in epoch 2 after step 2 of 4; train state saved to {last}. "
            f"Resume with: .venv/bin/python train_swin.py {shlex.join(argv)} --resume {last}"
            ) in log
    first = list(calls)

    calls.clear()
    signal_at[0] = 0
    assert main([*argv, "--resume", str(last)]) == 0
    assert f"resumed from {last} in epoch 2 after step 2 of 4" in (
        tmp_path / "logs" / "cut.log").read_text()
    assert len(first) == 6 and len(calls) == 2  # steps 3 and 4 of epoch 2, nothing again
    assert first + calls == whole
    records = MetricsJournal(run_dir / "metrics.jsonl").read()
    assert [(r["epoch"], r["steps"]) for r in records] == [(1, 4), (2, 4)]
    expected = MetricsJournal(tmp_path / "runs" / "whole" / "metrics.jsonl").read()
    assert records[1]["train_loss"] == pytest.approx(expected[1]["train_loss"], rel=1e-6)
    ours = load_checkpoint(last, "train_state")["state_dict"]
    theirs = load_checkpoint(tmp_path / "runs" / "whole" / "last.pkl")["state_dict"]
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)


def test_config_reruns_a_recorded_run_with_flags_overriding(trained_run: dict,
                                                            tmp_path: Path) -> None:
    """--config finetune_config.json gives every recorded flag; flags given win; a config of
    the other stage or an unreadable file is refused by name."""
    config = trained_run["run_dir"] / "finetune_config.json"
    recorded = json.loads(config.read_text())["args"]
    args = parse_with_config(get_args_parser(), ["--config", str(config), "--model_name",
                                                 "again", "--epochs", "2"])
    assert (args.model_name, args.epochs, args.config) == ("again", 2, str(config))
    for key, value in recorded.items():
        if key not in ("model_name", "epochs", "config"):
            assert json.loads(json.dumps(getattr(args, key))) == value, key
    pretrain_config = tmp_path / "pretrain_config.json"
    pretrain_config.write_text(json.dumps({"args": {**recorded, "num_levels": 5,
                                                    "views_per_image": 1}}))
    with pytest.raises(UserError, match=r"records flags this script does not take: "
                       r"--num_levels, --views_per_image; is it the config of the other stage"):
        parse_with_config(get_args_parser(), ["--config", str(pretrain_config)])
    with pytest.raises(UserError, match=r"--config .*nothing.json: cannot read it"):
        parse_with_config(get_args_parser(), ["--config", str(tmp_path / "nothing.json")])
