"""pretrain_qualiclip.py end to end on demo data with the micro model on the CPU."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import engine.pretrain
import engine.pretrain_setup
import pretrain_qualiclip
from common.checkpoint import load_checkpoint
from common.cli import parse_with_config, run_script
from common.errors import CheckpointError, RunExistsError
from common.runlog import MetricsJournal
from data.images import ImageCache
from data.rows import DatasetError
from engine.pretrain_monitor import ZeroShotValidation
from losses import qualiclip_full_loss
from models import clip_anchors
from models.pretrain_model import pretrain_model_from_checkpoint
from models.swin_hyperiqa import build_swin_hyperiqa, load_encoder

REPO_ROOT = Path(__file__).resolve().parents[2]
CROP = 64  # small crops keep the micro model fast on the CPU


def _args(demo_root: Path, out: Path, name: str, *extra: str) -> list[str]:
    """Flags of a small demo run writing under `out`."""
    return [
        "--data_root", str(demo_root), "--model_size", "micro", "--imagenet_weights", "none",
        "--device", "cpu", "--num_workers", "0", "--crop_size", str(CROP),
        "--output_dir", str(out / "runs"), "--log_dir", str(out / "logs"),
        "--cache_dir", str(out / "cache"), "--model_name", name, *extra,
    ]  # fmt: skip


def _epochs(run_dir: Path) -> list[int]:
    """Epoch numbers recorded in the run's metrics.jsonl, in order."""
    return [r["epoch"] for r in MetricsJournal(run_dir / "metrics.jsonl").read()]


def _mean_loss(records: list[dict], epochs: slice) -> float:
    """Mean epoch loss over a slice of the records (several epochs smooth out batch noise)."""
    chosen = records[epochs]
    return sum(r["loss"] for r in chosen) / len(chosen)


def _random_anchors(pairs, clip_model="RN50", clip_weights="openai", clip_cache_dir=None):
    """Distinct random prompt anchors: a random text tower gives near-parallel antonym pairs."""
    generator = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(len(pairs), 2, 32, generator=generator), dim=-1), 100.0


@pytest.fixture(scope="module")
def image_dir(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of eight unlabelled demo photos: the same images in every epoch."""
    folder = tmp_path_factory.mktemp("unlabelled")
    for path in sorted((demo_root / "koniq10k" / "1024x768").glob("*.jpg"))[:8]:
        shutil.copy(path, folder / path.name)
    return folder


# Gaussian noise is learnt within a few dozen steps by the micro model, so the loss falls in
# a short run; the consistency weight is lowered so the ranking term leads early on.
LEARNABLE = ("--distortions", "noise", "--consistency_weight", "0.1", "--epochs", "16",
             "--batch_size", "4", "--lr", "1e-3")


@pytest.fixture(scope="module")
def simplified_run(demo_root: Path, image_dir: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One sixteen-epoch simplified-loss run on the folder, shared by the tests of its outputs."""
    out = tmp_path_factory.mktemp("pretrain_simplified")
    summary = pretrain_qualiclip.main(_args(
        demo_root, out, "simple", "--image_dir", str(image_dir), "--save_every", "8", *LEARNABLE,
    ))  # fmt: skip
    return {"out": out, "summary": summary, "run_dir": Path(summary["run_dir"])}


def test_run_folder_has_all_files(simplified_run: dict, image_dir: Path) -> None:
    run_dir = simplified_run["run_dir"]
    assert run_dir == simplified_run["out"] / "runs" / "simple"
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == [
        "last.pkl", "metrics.jsonl", "pretrain_config.json", "swin_micro_epoch16.pkl",
        "swin_micro_epoch8.pkl", "swin_micro_qualiclip_best.pkl",
        "swin_micro_qualiclip_pretrained.pkl",
    ]  # fmt: skip
    assert _epochs(run_dir) == list(range(1, 17))
    records = MetricsJournal(run_dir / "metrics.jsonl").read()
    for record in records:
        assert {"loss", "consistency", "ranking", "lr", "time_s", "rank_accuracy",
                "level_spread", "val_srcc", "val_by_type"} <= set(record)
        assert 0 <= record["rank_accuracy"] <= 1 and record["level_spread"] >= 0
    best = load_checkpoint(run_dir / "swin_micro_qualiclip_best.pkl", "encoder")
    assert best["metrics"]["val_srcc"] == max(r["val_srcc"] for r in records)
    assert best["epoch"] == max(records, key=lambda r: r["val_srcc"])["epoch"]

    final = load_checkpoint(run_dir / "swin_micro_qualiclip_pretrained.pkl", "encoder")
    assert final["epoch"] == 16 and final["model_size"] == "micro"
    assert final["config"]["head"]["type"] == "scalar"
    assert final["config"]["distortions"] == ["gaussian_noise"]
    assert len(final["config"]["prompt_pairs"]) == 7
    assert final["head_state_dict"]
    assert load_checkpoint(run_dir / "swin_micro_epoch8.pkl", "encoder")["epoch"] == 8
    assert load_checkpoint(run_dir / "last.pkl", "train_state")["epoch"] == 16

    saved = json.loads((run_dir / "pretrain_config.json").read_text())
    assert saved["args"]["loss_type"] == "simplified"
    assert saved["config"]["source"] == f"folder {image_dir}"
    assert saved["config"]["n_images"] == 7  # one of the eight held out for validation
    assert saved["args"]["lr"] == 1e-3 and saved["config"]["score_activation"] == "none"
    assert saved["config"]["views_per_image"] == 1  # micro's default, recorded

    log = (simplified_run["out"] / "logs" / "simple.log").read_text()
    lines = [ln for ln in log.splitlines() if "| consistency" in ln]
    assert len(lines) == 16
    assert all(f"epoch {i}/16 | loss " in ln for i, ln in enumerate(lines, start=1))
    assert all("| ranking " in ln and "| lr " in ln and "| time " in ln for ln in lines)
    assert all(re.search(r"\| ETA (\d+s|\d+m\d\ds)(\s|$)", ln) for ln in lines[:-1])
    assert lines[-1].endswith("| ETA 0s")
    start = f"run folder {run_dir}, log {simplified_run['out'] / 'logs' / 'simple.log'}"
    assert start in log and log.index(start) < log.index(lines[0])
    assert all("| rank acc " in ln and "| spread " in ln and "| val SRCC " in ln for ln in lines)
    assert "label-free validation: 1 held-out images" in log


def test_simplified_loss_falls(simplified_run: dict) -> None:
    # Measured for seeds 0-3 and 42 (this run's): the last four epochs average 41-83 % of the
    # first four.
    records = simplified_run["summary"]["metrics"]
    assert _mean_loss(records, slice(-4, None)) < 0.9 * _mean_loss(records, slice(0, 4))


def test_checkpoint_loads_as_encoder_and_scores_zero_shot(simplified_run: dict) -> None:
    path = simplified_run["run_dir"] / "swin_micro_qualiclip_pretrained.pkl"
    model = build_swin_hyperiqa("micro", crop_size=CROP)
    report = load_encoder(model, path)
    assert report["missing"] == 0 and report["unexpected"] == 0
    assert report["matched"] == len(model.encoder.state_dict())

    scorer = pretrain_model_from_checkpoint(load_checkpoint(path)).eval()
    with torch.no_grad():
        score = scorer(torch.rand(3, 3, CROP, CROP))["score"]
    assert score.shape == (3,) and score.dtype == torch.float32 and torch.isfinite(score).all()


def test_full_loss_falls(demo_root: Path, image_dir: Path, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clip_anchors, "embed_prompt_pairs", _random_anchors)
    summary = pretrain_qualiclip.main(_args(
        demo_root, tmp_path, "full", "--image_dir", str(image_dir), "--loss_type", "full",
        "--clip_weights", "none", "--train_prompt_pairs", "2", "--save_every", "0", *LEARNABLE,
    ))  # fmt: skip
    records = summary["metrics"]
    assert [r["epoch"] for r in records] == list(range(1, 17))
    assert _mean_loss(records, slice(-4, None)) < _mean_loss(records, slice(0, 4))
    ckpt = load_checkpoint(summary["final_checkpoint"], "encoder")
    assert ckpt["config"]["head"]["type"] == "clip"
    # the head holds the two trained pairs only: the zero-shot score averages what was trained
    assert ckpt["config"]["head"]["num_pairs"] == 2
    assert ckpt["config"]["head"]["prompt_pairs"] == [
        list(p) for p in clip_anchors.QUALICLIP_PROMPT_PAIRS[:2]]
    assert ckpt["config"]["train_prompt_pairs"] == 2
    scorer = pretrain_model_from_checkpoint(ckpt).eval()
    with torch.no_grad():
        out = scorer(torch.rand(2, 3, CROP, CROP))
    assert out["sims"].shape == (2, 2, 2)
    assert ((out["score"] > 0) & (out["score"] < 1)).all()


def test_full_loss_trains_the_pairs_its_score_averages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clip_anchors, "embed_prompt_pairs", _random_anchors)
    args = pretrain_qualiclip.get_args_parser().parse_args([
        "--model_size", "micro", "--imagenet_weights", "none", "--crop_size", str(CROP),
        "--loss_type", "full", "--clip_weights", "none", "--train_prompt_pairs", "3",
        "--num_levels", "2"])
    engine.pretrain_setup.resolve_size_defaults(args)
    model = engine.pretrain_setup.build_pretrain_model(args, clip_anchors.QUALICLIP_PROMPT_PAIRS)
    assert model.head.prompt_pairs == [list(p) for p in clip_anchors.QUALICLIP_PROMPT_PAIRS[:3]]
    seen = {}

    def spy(sims_a, sims_b, **kwargs):
        seen["pairs"] = sims_a.shape[-2]
        return qualiclip_full_loss(sims_a, sims_b, **kwargs)

    monkeypatch.setattr(engine.pretrain_setup, "qualiclip_full_loss", spy)
    step = engine.pretrain_setup.QualiCLIPStep(args, ["gaussian_noise"], torch.device("cpu"),
                                               seed=0)
    step(model, {"image": torch.rand(2, 2, 3, CROP, CROP)})
    assert seen["pairs"] == 3  # the loss trains every pair of the head ...
    with torch.no_grad():  # ... and the score is the mean over those same pairs
        out = model(torch.rand(4, 3, CROP, CROP))
    probs = (model.head.logit_scale * out["sims"]).softmax(dim=-1)[..., 0]
    assert out["sims"].shape == (4, 3, 2)
    assert torch.allclose(out["score"], probs.mean(dim=-1))


# The CPU recipe's size with the default four types, on a reduced budget: two epochs of the demo
# KonIQ training split. Validation: held-out images degraded with held-out types.
MINI_SHORT = ("--model_size", "mini", "--dataset", "koniq10k", "--batch_size", "8",
              "--seed", "0", "--save_every", "0", "--val_images", "8",
              "--val_distortions", "lens_blur,pixelate,impulse_noise,jpeg2000",
              "--views_per_image", "1")


@pytest.mark.slow
def test_mini_learns_the_default_types_and_transfers_to_held_out_ones(
        demo_root: Path, tmp_path: Path) -> None:
    trained = pretrain_qualiclip.main(_args(demo_root, tmp_path, "mini", "--epochs", "2",
                                            *MINI_SHORT))
    control = pretrain_qualiclip.main(_args(demo_root, tmp_path, "mini0", "--epochs", "0",
                                            *MINI_SHORT))
    config = load_checkpoint(trained["final_checkpoint"], "encoder")["config"]
    assert config["distortions"] == ["gaussian_blur", "jpeg", "gaussian_noise", "brightness"]
    assert config["lr"] == 3e-4  # mini's default
    records = trained["metrics"]
    # the same validation set, scoring the untrained encoder and head of the same seed
    args = pretrain_qualiclip.get_args_parser().parse_args(
        _args(demo_root, tmp_path, "mini", *MINI_SHORT))
    images = engine.pretrain.pretrain_images(args, logging.getLogger("test"))
    validation = ZeroShotValidation(images.val, images.policy, ImageCache(None),
                                    args.val_distortions.split(","), CROP, args.num_levels,
                                    args.seed, torch.device("cpu"))
    scorer = pretrain_model_from_checkpoint(load_checkpoint(trained["final_checkpoint"]))
    assert validation.evaluate(scorer)["val_srcc"] == pytest.approx(records[-1]["val_srcc"])
    untrained = pretrain_model_from_checkpoint(load_checkpoint(control["final_checkpoint"]))
    untrained_srcc = validation.evaluate(untrained)["val_srcc"]
    assert records[-1]["rank_accuracy"] > 0.6
    assert records[-1]["val_srcc"] > untrained_srcc + 0.2


def _start(args: list[str], stderr: Path) -> subprocess.Popen:
    """pretrain_qualiclip.py in a child process, its stderr (progress bars) in a file."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(stderr, "wb") as err:
        return subprocess.Popen([sys.executable, "pretrain_qualiclip.py", *args], cwd=REPO_ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=err)


def _send_when(proc: subprocess.Popen, ready, sig: int, what: str, timeout: float = 600) -> int:
    """Send `sig` once ready() holds, then return the exit status; the child never outlives it."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"the run ended before {what}"
            assert time.monotonic() < deadline, f"no {what} after {timeout} s"
            time.sleep(0.05)
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_sigterm_and_resume_keep_each_epoch_once(demo_root: Path, tmp_path: Path) -> None:
    args = _args(demo_root, tmp_path, "killed", "--epochs", "3", "--batch_size", "2",
                 "--max_steps_per_epoch", "6", "--save_every", "0")
    run_dir, log = tmp_path / "runs" / "killed", tmp_path / "logs" / "killed.log"

    # 1. SIGKILL as soon as the first epoch is saved: nothing can be cleaned up.
    proc = _start(args, tmp_path / "first.err")
    status = _send_when(proc, (run_dir / "last.pkl").is_file, signal.SIGKILL, "last.pkl")
    assert status == -signal.SIGKILL
    done = load_checkpoint(run_dir / "last.pkl", "train_state")["epoch"]
    assert 1 <= done < 3

    # 2. Resume, then SIGTERM during an epoch: a clean exit that says how to continue.
    err = tmp_path / "second.err"
    proc = _start([*args, "--resume"], err)
    status = _send_when(proc, lambda: f"pretrain {done + 1}/3" in err.read_text(errors="replace"),
                        signal.SIGTERM, "a training epoch")
    assert status == 128 + signal.SIGTERM
    text = log.read_text()
    assert f"resumed from {run_dir / 'last.pkl'} after epoch {done}" in text
    assert "stopped by SIGTERM" in text and "--resume" in text

    # 3. Resume to the end: every epoch recorded once.
    summary = pretrain_qualiclip.main([*args, "--resume"])  # a stop would raise RunStopped
    assert summary["epochs_done"] == 3
    assert _epochs(run_dir) == [1, 2, 3]
    assert load_checkpoint(run_dir / "last.pkl", "train_state")["epoch"] == 3
    assert (run_dir / "swin_micro_qualiclip_pretrained.pkl").is_file()
    saved = json.loads((run_dir / "pretrain_config.json").read_text())
    assert saved["config"]["source"] == "koniq10k training split"
    assert saved["config"]["n_images"] == 112  # the demo KonIQ training split only, no test image
    assert saved["args"]["lr"] == 1e-3 and saved["config"]["lr"] == 1e-3  # micro's default


def test_sigint_inside_an_epoch_resumes_at_the_next_step(
    demo_root: Path, image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT during step 2 of epoch 2 (of 3): saved after that step, the resumed run trains
    step 3 only (the same crops and degradations) and ends with the uninterrupted weights."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "executable", str(REPO_ROOT / ".venv" / "bin" / "python"))
    calls: list[list[str]] = []
    signal_at = [0]
    real_step = engine.pretrain.QualiCLIPStep.__call__

    def counted(self, model, batch):
        calls.append(list(batch["name"]))
        if len(calls) == signal_at[0]:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, model, batch)

    monkeypatch.setattr(engine.pretrain.QualiCLIPStep, "__call__", counted)
    flags = ("--image_dir", str(image_dir), "--epochs", "2", "--batch_size", "2",
             "--save_every", "0", "--distortions", "noise,blur")  # 7 images: 3 steps an epoch
    pretrain_qualiclip.main(_args(demo_root, tmp_path, "whole", *flags))
    whole = list(calls)

    calls.clear()
    signal_at[0] = 5
    argv = _args(demo_root, tmp_path, "cut", *flags)
    assert run_script(lambda: pretrain_qualiclip.main(argv)) == 128 + signal.SIGINT
    run_dir = tmp_path / "runs" / "cut"
    last = run_dir / "last.pkl"
    log = (tmp_path / "logs" / "cut.log").read_text()
    assert (f"stopped by SIGINT in epoch 2 after step 2 of 3; train state saved to {last}. "
            f"Resume with: .venv/bin/python pretrain_qualiclip.py {shlex.join(argv)} --resume "
            f"{last}") in log
    first = list(calls)

    calls.clear()
    signal_at[0] = 0
    pretrain_qualiclip.main([*argv, "--resume"])
    assert f"resumed from {last} in epoch 2 after step 2 of 3" in (
        tmp_path / "logs" / "cut.log").read_text()
    assert len(first) == 5 and len(calls) == 1 and first + calls == whole
    records = MetricsJournal(run_dir / "metrics.jsonl").read()
    expected = MetricsJournal(tmp_path / "runs" / "whole" / "metrics.jsonl").read()
    assert [(r["epoch"], r["steps"], r["images"]) for r in records] == [(1, 3, 6), (2, 3, 6)]
    assert records[1]["loss"] == pytest.approx(expected[1]["loss"], rel=1e-6)
    ours = load_checkpoint(last, "train_state")["state_dict"]
    theirs = load_checkpoint(tmp_path / "runs" / "whole" / "last.pkl")["state_dict"]
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)


def test_config_reruns_a_recorded_pretraining(simplified_run: dict) -> None:
    """--config pretrain_config.json gives the recorded flags; the ones given win."""
    config = simplified_run["run_dir"] / "pretrain_config.json"
    recorded = json.loads(config.read_text())["args"]
    args = parse_with_config(pretrain_qualiclip.get_args_parser(),
                             ["--config", str(config), "--model_name", "again"])
    assert args.model_name == "again" and args.distortions == "noise" and args.epochs == 16
    assert all(json.loads(json.dumps(getattr(args, key))) == value
               for key, value in recorded.items() if key not in ("model_name", "config"))


def test_existing_run_needs_resume(simplified_run: dict, demo_root: Path) -> None:
    out = simplified_run["out"]
    with pytest.raises(RunExistsError, match="pass --resume"):
        pretrain_qualiclip.main(_args(demo_root, out, "simple", "--epochs", "3"))


def test_unwritable_output_stops_before_training(demo_root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    args = _args(demo_root, tmp_path, "blocked", "--epochs", "1")
    args[args.index("--output_dir") + 1] = str(blocker)
    with pytest.raises(CheckpointError, match="not writable"):
        pretrain_qualiclip.main(args)
    assert not (tmp_path / "logs" / "blocked.log").exists()


def test_missing_training_images_stop_before_training(demo_root: Path, tmp_path: Path) -> None:
    images = sorted((demo_root / "koniq10k" / "1024x768").glob("*.jpg"))[:3]
    labels = tmp_path / "labels.csv"
    lines = ["image,mos,split", *(f"{p},50,train" for p in images), "gone.jpg,50,train"]
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"1 of 4 images .* missing: .*gone\.jpg"):
        pretrain_qualiclip.main(_args(demo_root, tmp_path, "missing", "--dataset", f"csv:{labels}"))


def test_bad_flags_are_rejected(demo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown distortion 'smudge'"):
        pretrain_qualiclip.main(_args(demo_root, tmp_path, "bad", "--distortions", "blur,smudge"))
    with pytest.raises(SystemExit):
        pretrain_qualiclip.get_args_parser().parse_args(["--prompt_pairs", "Good photo."])
    parsed = pretrain_qualiclip.get_args_parser().parse_args(
        ["--prompt_pairs", "Good photo.|Bad photo.", "Sharp image.|Blurry image."]
    )
    assert parsed.prompt_pairs == [("Good photo.", "Bad photo."), ("Sharp image.", "Blurry image.")]


def test_size_dependent_defaults_are_resolved_per_size() -> None:
    parser = pretrain_qualiclip.get_args_parser()
    for size, lr, weight, views in (("mini", 3e-4, 0.0, 3), ("micro", 1e-3, 0.0, 1),
                                    ("test", 1e-3, 0.0, 1), ("base", 5e-5, 0.0, 1)):
        args = parser.parse_args(["--model_size", size])
        assert engine.pretrain_setup.resolve_size_defaults(args) == {
            "lr": lr, "consistency_weight": weight, "views_per_image": views}
        assert args.lr == lr and args.consistency_weight == weight
    explicit = parser.parse_args(["--model_size", "mini", "--lr", "1e-2",
                                  "--consistency_weight", "0.5", "--views_per_image", "2"])
    assert engine.pretrain.resolve_size_defaults(explicit) == {} and explicit.lr == 1e-2
    assert explicit.views_per_image == 2
