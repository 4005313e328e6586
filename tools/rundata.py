"""Read everything a run folder of run_qualiclip_experiments.sh holds into plain Python values.

Layout (RUN_DIR):
  checkpoints/pretrain/                   pretraining run (pretrain_config.json, metrics.jsonl,
                                          *.pkl)
  checkpoints/untrained/                  the same encoder and head before pretraining (--epochs 0;
                                          its metrics.jsonl holds their validation as epoch 0)
  checkpoints/pretrain_r<j>/, untrained_r<j>/   further pretraining runs (seed + j) and their
                                          controls (--pretrain_repeats)
  checkpoints/baseline/, pretrained/      fine-tuning runs (finetune_config.json, metrics.jsonl,
                                          results.json, best_model.pkl)
  checkpoints/pretrained_matched/         the pretrained run at the baseline's encoder rate
                                          (the matched-rate arm)
  checkpoints/<main>_r<i>/                extra repeats of a fine-tuning run (seed / split i)
  checkpoints/ablation_<kind>_<variant>[_pretrain]/   ablation runs
  eval/<name>.json (+ <name>_<dataset>_predictions.csv)   test_swin.py outputs
  eval/classical_<method>.json (+ CSVs)   classical baselines (test_swin.py --baselines)
  eval/<main>_r<i>.json                   cross-dataset tests of the repeats
  checkpoints/labels_f<pct>_<main>/, eval/labels_f<pct>_<main>.json   label-efficiency runs
  checkpoints/ctl_<arm>_s<i>/              controls (--controls): scratch, positive and sham
                                          fine-tuning on a fraction of the labels, seed i
  probe/probe.json (+ per-image CSVs)     linear probe of frozen encoders (tools.probe)
  data/<key>.json or data/<key>.missing.txt              `python -m data` summary or why it failed
  model_info.json                         `python -m models` output
  logs/gpu_<stage>.csv                    nvidia-smi samples (GPU runs only)
  timings.json                            wall time per stage (tools.timings)
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tools.timings import read_timings

MATCHED = "pretrained_matched"  # the pretrained runs again at the baseline's encoder rate
MAIN_RUNS = ("baseline", "pretrained", MATCHED)
EVAL_NAMES = ("baseline", "pretrained", MATCHED, "zero_shot", "zero_shot_untrained")
CLASSICAL_PREFIX = "classical_"  # eval/classical_<method>.json: test_swin.py --baselines
ABLATION_KINDS = ("epochs", "distortions", "loss")
ENV_KEYS = ("python", "torch", "cuda", "cudnn", "gpu_name", "gpu_count", "cpu", "cpu_count",
            "ram_gb", "timm", "open_clip", "git_commit", "hostname")
_ABLATION_RE = re.compile(r"^ablation_(epochs|distortions|loss)_(.+?)(_pretrain)?$")
_REPEAT_RE = re.compile(r"^(baseline|pretrained|pretrained_matched)_r(\d+)$")
_STAGE1_REPEAT_RE = re.compile(r"^(pretrain|untrained)_r(\d+)$")
_LABELS_RE = re.compile(r"^labels_f(\d+)_(baseline|pretrained)$")
_CONTROL_RE = re.compile(r"^ctl_(scratch|positive|sham)_s(\d+)$")


def load_json(path: Path) -> dict | None:
    """A JSON object from disk, or None when the file is absent."""
    if not path.is_file():
        return None
    with path.open() as f:
        return json.load(f)


def load_jsonl(path: Path) -> list[dict]:
    """One dict per non-empty line; a later record of the same epoch replaces the earlier one."""
    if not path.is_file():
        return []
    records: dict[object, dict] = {}
    with path.open() as f:
        for i, line in enumerate(f):
            if line.strip():
                record = json.loads(line)
                records[record.get("epoch", f"line{i}")] = record
    return list(records.values())


def config_args(config: dict | None) -> dict:
    """The resolved flags of a saved config (nested under "args" or at the top level)."""
    if not config:
        return {}
    if isinstance(config.get("args"), dict):
        return config["args"]
    return {k: v for k, v in config.items() if k not in ("environment", "env", *ENV_KEYS)}


def config_env(config: dict | None) -> dict:
    """The environment info saved with a config (nested or at the top level)."""
    if not config:
        return {}
    for key in ("environment", "env"):
        if isinstance(config.get(key), dict):
            return config[key]
    return {k: config[k] for k in ENV_KEYS if k in config}


@dataclass
class PretrainRun:
    """One pretraining run folder."""

    path: Path
    config: dict
    metrics: list[dict]
    encoder: Path | None  # the final encoder checkpoint
    best: Path | None = None  # the best label-free validation epoch's encoder checkpoint

    @property
    def args(self) -> dict:
        """Resolved flags of the run."""
        return config_args(self.config)

    def loss_weight(self, term: str) -> float | None:
        """The resolved weight of a loss term (consistency, ranking); None when not recorded."""
        for source in (self.config.get("config") or {}, self.args):
            value = source.get(f"{term}_weight")
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
        return None


@dataclass
class FinetuneRun:
    """One fine-tuning run folder."""

    path: Path
    config: dict
    metrics: list[dict]
    results: dict | None

    @property
    def args(self) -> dict:
        """Resolved flags of the run."""
        return config_args(self.config)

    @property
    def test(self) -> dict:
        """Test-split metrics of the selected checkpoint ({} when the run has not finished)."""
        return (self.results or {}).get("test") or {}


@dataclass
class EvalResult:
    """One test_swin.py output (JSON + predictions CSV per dataset)."""

    path: Path
    data: dict
    predictions: dict[str, Path]

    @property
    def results(self) -> dict:
        """Metrics per dataset key."""
        return self.data.get("results") or {}

    @property
    def classical(self) -> dict | None:
        """What a classical baseline's result file records about it (None for a model)."""
        return self.data.get("baseline") if self.data.get("mode") == "classical" else None


@dataclass
class AblationVariant:
    """One ablation variant: its pretraining, its fine-tuning and its cross-dataset test."""

    kind: str
    variant: str
    pretrain: PretrainRun | None = None
    finetune: FinetuneRun | None = None
    evaluation: EvalResult | None = None


@dataclass
class RunData:
    """Everything the report reads from one run folder."""

    run_dir: Path
    timings: dict
    pretrain: PretrainRun | None
    finetunes: dict[str, FinetuneRun]
    evals: dict[str, EvalResult]
    datasets: dict[str, dict | str]
    model_info: dict | None
    gpu_samples: dict[str, list[tuple[float, float]]]
    repeats: dict[str, list[FinetuneRun]] = field(default_factory=dict)
    ablations: dict[str, list[AblationVariant]] = field(default_factory=dict)
    repeat_evals: dict[str, dict[int, EvalResult]] = field(default_factory=dict)
    label_runs: dict[int, dict[str, tuple[FinetuneRun | None, EvalResult | None]]] = field(
        default_factory=dict)  # percent of training labels -> model -> (run, KonIQ test)
    probe: dict | None = None
    controls: dict[str, dict[int, FinetuneRun]] = field(default_factory=dict)  # arm -> seed -> run
    untrained: PretrainRun | None = None  # the Stage-1 control: the same command, --epochs 0
    # further Stage-1 runs (--pretrain_repeats): "pretrain" / "untrained" -> j -> run of seed + j
    stage1_repeats: dict[str, dict[int, PretrainRun]] = field(default_factory=dict)

    def environment(self) -> dict:
        """Environment info of the first config that carries one."""
        configs = [r.config for r in self.finetunes.values()]
        if self.pretrain:
            configs.insert(0, self.pretrain.config)
        for cfg in configs:
            env = config_env(cfg)
            if env:
                return env
        return {}


def repeat_index(run: FinetuneRun) -> int:
    """The repeat a fine-tuning run folder belongs to: i of <arm>_r<i>, 0 for the main run."""
    name = run.path.name
    return int(name.rsplit("_r", 1)[1]) if _REPEAT_RE.match(name) else 0


def seed_runs(run: RunData, arm: str) -> dict[int, FinetuneRun]:
    """The fine-tuning runs of one arm (baseline, pretrained, pretrained_matched) by repeat."""
    runs = [run.finetunes[arm]] if arm in run.finetunes else []
    return {repeat_index(r): r for r in runs + run.repeats.get(arm, [])}


def seed_evals(run: RunData, arm: str) -> dict[int, EvalResult]:
    """The cross-dataset tests of one arm by repeat (0: eval/<arm>.json)."""
    main = {0: run.evals[arm]} if arm in run.evals else {}
    return {**main, **run.repeat_evals.get(arm, {})}


def classical_names(run: RunData) -> list[str]:
    """Names in run.evals of the classical baselines, in file order."""
    return [name for name, ev in run.evals.items() if ev.classical]


def read_pretrain(path: Path) -> PretrainRun | None:
    """A pretraining run folder, or None when it has no pretrain_config.json yet."""
    config = load_json(path / "pretrain_config.json")
    if config is None:
        return None
    finals = sorted(path.glob("swin_*_qualiclip_pretrained.pkl"))
    bests = sorted(path.glob("swin_*_qualiclip_best.pkl"))
    return PretrainRun(path, config, load_jsonl(path / "metrics.jsonl"),
                       finals[0] if finals else None, bests[0] if bests else None)


def read_finetune(path: Path) -> FinetuneRun | None:
    """A fine-tuning run folder, or None when it has no finetune_config.json yet."""
    config = load_json(path / "finetune_config.json")
    if config is None:
        return None
    return FinetuneRun(path, config, load_jsonl(path / "metrics.jsonl"),
                       load_json(path / "results.json"))


def read_eval(path: Path) -> EvalResult | None:
    """A test_swin.py JSON and the prediction CSVs written beside it."""
    data = load_json(path)
    if data is None:
        return None
    prefix = f"{path.stem}_"
    predictions = {}
    for csv_path in sorted(path.parent.glob(f"{path.stem}_*_predictions.csv")):
        key = csv_path.name[len(prefix):-len("_predictions.csv")]
        if key in (data.get("results") or {}):
            predictions[key] = csv_path
    return EvalResult(path, data, predictions)


def read_predictions(path: Path) -> list[dict]:
    """Rows of a predictions CSV as dicts with float mos/prediction (non-numeric rows dropped)."""
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                mos, pred = float(row["mos"]), float(row["prediction"])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(mos) and math.isfinite(pred):
                rows.append({"image": row.get("image", ""), "mos": mos, "prediction": pred})
    return rows


def read_gpu_samples(path: Path) -> list[tuple[float, float]]:
    """(utilisation %, memory MiB) samples of an nvidia-smi CSV without header."""
    samples = []
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            samples.append((float(parts[0]), float(parts[1])))
        except (IndexError, ValueError):
            continue
    return samples


def _read_datasets(folder: Path) -> dict[str, dict | str]:
    found: dict[str, dict | str] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json":
            found[path.stem] = load_json(path) or {}
        elif path.name.endswith(".missing.txt"):
            text = path.read_text().strip().splitlines()
            found[path.name[: -len(".missing.txt")]] = text[-1] if text else "not found"
    return found


def _read_ablations(ckpt: Path, eval_dir: Path) -> dict[str, list[AblationVariant]]:
    variants: dict[tuple[str, str], AblationVariant] = {}
    folders = sorted(p for p in ckpt.glob("ablation_*") if p.is_dir()) if ckpt.is_dir() else []
    evals = sorted(eval_dir.glob("ablation_*.json")) if eval_dir.is_dir() else []
    for path in folders + evals:
        match = _ABLATION_RE.match(path.stem if path.is_file() else path.name)
        if not match:
            continue
        kind, name, is_pretrain = match.groups()
        entry = variants.setdefault((kind, name), AblationVariant(kind, name))
        if path.is_file():
            entry.evaluation = read_eval(path)
        elif is_pretrain:
            entry.pretrain = read_pretrain(path)
        else:
            entry.finetune = read_finetune(path)
    out: dict[str, list[AblationVariant]] = {}
    for (kind, _), entry in variants.items():
        out.setdefault(kind, []).append(entry)
    return out


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder; absent pieces come back as None / empty so the report can say why."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run folder not found: {run_dir} (expected the RUN_DIR of "
            "run_qualiclip_experiments.sh, e.g. results/qualiclip_base)")
    ckpt, eval_dir = run_dir / "checkpoints", run_dir / "eval"
    finetunes = {n: r for n in MAIN_RUNS if (r := read_finetune(ckpt / n)) is not None}
    repeats: dict[str, list[FinetuneRun]] = {}
    if ckpt.is_dir():
        extra = sorted((m.group(1), int(m.group(2)), p) for p in ckpt.iterdir()
                       if (m := _REPEAT_RE.match(p.name)))
        for name, _, path in extra:
            run = read_finetune(path)
            if run is not None:
                repeats.setdefault(name, []).append(run)
    evals = {n: e for n in EVAL_NAMES if (e := read_eval(eval_dir / f"{n}.json")) is not None}
    if eval_dir.is_dir():
        evals.update({path.stem: ev for path in sorted(eval_dir.glob(f"{CLASSICAL_PREFIX}*.json"))
                      if (ev := read_eval(path)) is not None and ev.classical})
    repeat_evals: dict[str, dict[int, EvalResult]] = {}
    label_runs: dict[int, dict[str, tuple[FinetuneRun | None, EvalResult | None]]] = {}
    if eval_dir.is_dir():
        for path in sorted(eval_dir.glob("*.json")):
            if (m := _REPEAT_RE.match(path.stem)) and (ev := read_eval(path)) is not None:
                repeat_evals.setdefault(m.group(1), {})[int(m.group(2))] = ev
    controls: dict[str, dict[int, FinetuneRun]] = {}
    stage1_repeats: dict[str, dict[int, PretrainRun]] = {}
    if ckpt.is_dir():
        for path in sorted(ckpt.iterdir()):
            if (m := _STAGE1_REPEAT_RE.match(path.name)) and (pre := read_pretrain(path)):
                stage1_repeats.setdefault(m.group(1), {})[int(m.group(2))] = pre
            elif m := _LABELS_RE.match(path.name):
                label_runs.setdefault(int(m.group(1)), {})[m.group(2)] = (
                    read_finetune(path), read_eval(eval_dir / f"{path.name}.json"))
            elif (m := _CONTROL_RE.match(path.name)) and (ft := read_finetune(path)) is not None:
                controls.setdefault(m.group(1), {})[int(m.group(2))] = ft
    gpu = {p.stem[len("gpu_"):]: read_gpu_samples(p)
           for p in sorted((run_dir / "logs").glob("gpu_*.csv"))}
    return RunData(
        run_dir=run_dir,
        timings=read_timings(run_dir / "timings.json"),
        pretrain=read_pretrain(ckpt / "pretrain"),
        finetunes=finetunes,
        evals=evals,
        datasets=_read_datasets(run_dir / "data"),
        model_info=load_json(run_dir / "model_info.json"),
        gpu_samples=gpu,
        repeats=repeats,
        ablations=_read_ablations(ckpt, eval_dir),
        repeat_evals=repeat_evals,
        label_runs=label_runs,
        probe=load_json(run_dir / "probe" / "probe.json"),
        controls=controls,
        untrained=read_pretrain(ckpt / "untrained"),
        stage1_repeats=stage1_repeats,
    )
