"""A stand-in interpreter for the chain script: it records every stage command instead of training.

The chain's own bookkeeping (markers, timings, the plan and its schedulers) runs for real; the stage
scripts only leave the files the chain looks for (encoder checkpoints, the best label-free
validation epoch's one when pretraining ran epochs, best_model.pkl, dataset summaries, test
results with a predictions CSV per test set).
STUB_SLEEP seconds per training or test command let stages overlap in time;
STUB_FAIL=<model name> makes that run fail; STUB_COLLAPSE=<model name> makes that pretraining run
stop as --stop_on_collapse does (its stop line, exit status 3, or 1 under torchrun, which reports a
failed rank so); STUB_ENV_LOG records each command's CUDA_VISIBLE_DEVICES and OMP_NUM_THREADS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STUB = '''#!{python}
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
if args[:2] in (["-m", "tools.stage_settings"], ["-m", "tools.timings"]) or (
        args[:1] == ["-m"] and args[1].startswith("tools.chain_")):
    os.execv(sys.executable, [sys.executable, *args])
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if "STUB_ENV_LOG" in os.environ:  # the device slot each stage was given
    with open(os.environ["STUB_ENV_LOG"], "a") as log:
        log.write(json.dumps([args, os.environ.get("CUDA_VISIBLE_DEVICES"),
                              os.environ.get("OMP_NUM_THREADS")]) + "\\n")


def flag(name):
    return args[args.index(name) + 1]


torchrun = "torch.distributed.run" in args
if torchrun:
    args = args[next(i for i, a in enumerate(args) if a.endswith(".py")):]
if args[:2] == ["-m", "data"]:  # a dataset summary: KonIQ-10k only, 70 / 10 / 20 images
    if flag("--dataset") != "koniq10k":
        sys.exit(3)
    print(json.dumps({{"dataset": "koniq10k", "n_images": 100,
                      "splits": {{"train": 70, "val": 10, "test": 20}}}}))
elif args[0] in ("pretrain_qualiclip.py", "train_swin.py"):
    time.sleep(float(os.environ.get("STUB_SLEEP", "0")))
    if flag("--model_name") == os.environ.get("STUB_FAIL"):
        print("stand-in failure of " + flag("--model_name"))
        sys.exit(1)
    if flag("--model_name") == os.environ.get("STUB_COLLAPSE"):
        print("stopped after epoch 1 (--stop_on_collapse): COLLAPSE: epoch 1: stand-in")
        sys.exit(1 if torchrun else 3)
    run = Path(flag("--output_dir")) / flag("--model_name")
    run.mkdir(parents=True, exist_ok=True)
    name = ("best_model.pkl" if args[0] == "train_swin.py"
            else "swin_" + flag("--model_size") + "_qualiclip_pretrained.pkl")
    (run / name).write_bytes(b"0")
    if args[0] == "pretrain_qualiclip.py" and flag("--epochs") != "0":  # validated epochs
        (run / ("swin_" + flag("--model_size") + "_qualiclip_best.pkl")).write_bytes(b"0")
elif args[0] == "test_swin.py":
    time.sleep(float(os.environ.get("STUB_SLEEP", "0")))
    output = Path(flag("--output"))
    output.write_text("{{}}")
    for key in args[args.index("--test_datasets") + 1:]:  # a predictions CSV per test set
        if key.startswith("--"):
            break
        (output.parent / f"{{output.stem}}_{{key}}_predictions.csv").write_text("image\\n")
'''


def write_stub(folder: Path) -> Path:
    """Write the stand-in interpreter into `folder`; its path."""
    stub = folder / "python"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    return stub


def logged_commands(log: Path) -> list[list[str]]:
    """The stage commands the stand-in recorded, in order."""
    return [json.loads(line) for line in log.read_text().splitlines()]
