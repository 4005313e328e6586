#!/usr/bin/env bash
# The chained QualiCLIP experiment: data check -> pretraining -> baseline and pretrained fine-tuning
# -> cross-dataset tests -> filled results report. Every stage is resumable; see --help.
set -Eeuo pipefail

usage() {
  cat <<'EOF'
Usage: bash run_qualiclip_experiments.sh [--demo] [--force STAGE]... [--repeats N] [--controls]
           [--ablation epochs|distortions|loss|labels|all]... [--parallel N]
           [--plan | --submit slurm [--dry_run]] [--KNOB VALUE]...

Runs, each stage once. A finished stage's marker RUN_DIR/.done/<stage> records its settings (the
flags of its command and the knobs it declares); a rerun skips it only when they are unchanged and
otherwise stops, naming the differences (--force STAGE redoes it, or use another EXP_NAME):
  demo_data         (--demo only) python -m data.demo --out RUN_DIR/demo_data
  data              python -m data per dataset (missing ones are skipped with a notice; KonIQ-10k is
                    required) and python -m models (parameter counts)
  pretrain          pretrain_qualiclip.py --model_name pretrain (run folder checkpoints/pretrain),
                    with --stop_on_collapse unless STOP_ON_COLLAPSE=0: two collapsed epochs stop
                    the chain before fine-tuning, naming the monitor's figures and what to do
  pretrain_r<j>, untrained_r<j>   --pretrain_repeats N: the pretraining runs j = 1..N-1 and
                    their untrained controls (seed SEED+j); the pretrained runs of fine-tuning
                    seed i start from Stage-1 run i mod N; the zero-shot test and the probe
                    stay on pretrain
  untrained         the same command with --epochs 0: encoder and head before pretraining, the
                    control of the zero-shot test (checkpoints/untrained)
  baseline          train_swin.py on KonIQ-10k from ImageNet weights
  pretrained        train_swin.py on KonIQ-10k from this run's swin_<size>_qualiclip_best.pkl
                    (the epoch with the best label-free validation; the final
                    swin_<size>_qualiclip_pretrained.pkl only when the run has no validation);
                    the zero-shot test and the probe score the same encoder
  baseline_r<i>, pretrained_r<i>   extra repeats i = 1..REPEATS-1 (seed SEED+i, split seed i)
  pretrained_matched, pretrained_matched_r<i>   the matched-rate arm (MATCHED_RATE): the
                    pretrained runs of each seed again, from the same Stage-1 encoder, with
                    --lr_encoder_pretrained equal to the rate the baseline's encoder trains at
  test_baseline, test_pretrained, test_zero_shot, test_zero_shot_untrained
                    test_swin.py on SPAQ, KADID-10K, AGIQA-3K, LIVE-C and the KonIQ-10k test
                    split (whichever are present); KADID-10k is also reported per distortion type
  test_baseline_r<i>, test_pretrained_r<i>   the same tests of the repeats (paired seed tests)
  test_pretrained_matched, test_pretrained_matched_r<i>   the same tests of the matched-rate arm
  test_classical    test_swin.py --baselines BASELINES on the same test sets: the classical
                    opinion-unaware rows beside the zero-shot ones (eval/classical_<name>.json)
  probe             python -m tools.probe: linear probe (ridge) of the frozen random, ImageNet and
                    QualiCLIP-pretrained encoders on every dataset present
  abl_<kind>_<variant>_{pretrain,finetune,test}     ablation variants (--ablation)
  labels_f<pct>_{baseline,pretrained}, test_labels_f<pct>_{baseline,pretrained}
                    --ablation labels: fine-tuning on PCT % of the training labels, KonIQ-10k test
  ctl_scratch_s<i>, ctl_positive_s<i>, ctl_sham_s<i>    --controls, i = 0..CONTROL_SEEDS-1
                    (seed SEED+i): train_swin.py on CONTROL_FRACTION % of the training labels
                    from the usual initialisation (scratch), from the baseline run's
                    best_model.pkl encoder (positive control: a real gain) and from the untrained
                    stage's encoder (sham control: no gain); KonIQ-10k test SRCC from results.json
  report            python -m tools.report --runs_dir RUN_DIR (writes comparisons.json first:
                    paired bootstrap intervals, seed tests, the four verdicts, the controls,
                    the matched-rate and rate-effect answers and which variance they carry)

Options:
  --demo              demo data, mini model at 64 px, CPU: the whole chain in about 15 minutes
  --force STAGE       redo a stage from scratch (repeatable; `all` redoes every stage); the stages
                      that use its output are redone too. An unknown stage name is an error
  --repeats N         fine-tune N times (seeds / random splits) and report median and spread
  --controls          also run a positive and a sham control with known answers (yes / no gain),
                      CONTROL_SEEDS seeds each on CONTROL_FRACTION % of the training labels: can
                      this experiment detect a gain, and does it invent one?
  --ablation KIND     epochs (0/5/10/20 pretraining epochs), distortions (blur / jpeg / all four),
                      loss (simplified / full), labels (LABEL_FRACTIONS % of the training labels,
                      both models, the same seeded subsets), or all; repeatable
  --run_dir DIR       experiment folder (default results/<EXP_NAME>)
  --report_out FILE   also copy the report there (e.g. QUALICLIP_RESULTS.md)
  --parallel N        run up to N stages at once, each as soon as the stages it needs are done
                      (knob PARALLEL; 1 runs them one after another). A stage gets its own
                      GPU(s) (CUDA_VISIBLE_DEVICES; GPUS per stage, PRETRAIN_GPUS for the
                      pretraining stages) or, on a CPU, OMP_NUM_THREADS / N threads. Output
                      goes to the stage logs only; `tail -f RUN_DIR/logs/status.log` follows
                      the run. A failed stage stops only the stages that need its output
  --plan              dry run: print each stage it would run with its command, crop steps and
                      estimated GPU time (benchmark figures of `make gpu-check` in BENCH_JSON,
                      else reference figures), the total GPU hours and the wall time at
                      --parallel N; runs and writes nothing. Without the data stage's
                      summaries it assumes every dataset present at its official size
  --submit slurm      write one sbatch job per stage to RUN_DIR/slurm/ with afterok
                      dependencies from the stage graph and submit them (submit.sh); the data
                      stages run here first. --dry_run writes them without submitting
  -h, --help          this text

Knobs: each is an environment variable and a flag (--data_root DIR is DATA_ROOT=DIR); default in [].
  EXP_NAME               [qualiclip_<model_size>; qualiclip_demo with --demo]
  RUN_DIR                [results/<EXP_NAME>]
  DATA_ROOT              [./datasets; RUN_DIR/demo_data with --demo]
  MODEL_SIZE             [base; mini]             micro, mini, tiny, small, base
  PROTOCOL               [plan]                   fine-tuning preset of train_swin.py: plan,
                                                  hyperiqa or smart (README, "Fine-tuning
                                                  protocols"); a fine-tuning knob marked
                                                  "protocol" below overrides it only when set
                                                  (micro and mini: the size's own defaults
                                                  replace part of the preset,
                                                  docs/PROTOCOLS.md)
  PRETRAIN_EPOCHS        [10]                     FINETUNE_EPOCHS [protocol; 10]
  PRETRAIN_BATCH         [8]                      FINETUNE_BATCH  [protocol] crops per step
  PRETRAIN_LR            [the model size's]       FINETUNE_LR     [protocol]
  PRETRAIN_VIEWS         [the model size's; 1]    crop pairs per image and pretraining epoch
                                                  (--views_per_image: mini 3, others 1)
  CROP_SIZE              [224; 64]                crop side of pretraining and fine-tuning
  LR_RATIO               [protocol]               head learning rate = FINETUNE_LR x LR_RATIO
  LR_ENCODER_PRETRAINED  [protocol]               encoder rate of the pretrained fine-tuning
  DISTORTIONS            [blur,jpeg,noise,brightness]
  LOSS_TYPE              [simplified]             simplified or full
  NUM_LEVELS             [5; 3]                   PATIENCE [protocol]
  TRAIN_PATCHES          [protocol; 20]           random crops per training image and epoch
  TEST_PATCHES           [protocol; 5]            crops per image at test time
  VAL_PATCHES            [protocol; 5]            crops per validation image (model selection)
  PRETRAIN_STEPS         [no cap]                 optimizer steps per pretraining epoch
  FINETUNE_STEPS         [no cap]                 optimizer steps per fine-tuning epoch
  SPLIT                  [official]               official (KonIQ sets file) or random: the
                                                  repeats then use split seeds 0..REPEATS-1
                                                  (Stage 1 keeps the official training split,
                                                  so random test splits hold images it saw
                                                  without labels; the controls keep seed 0)
  TEST_DATASETS          [spaq kadid10k agiqa3k livec koniq10k]
  BASELINES              [niqe brisque piqe]      classical baselines of test_classical (none:
                                                  skip the stage)
  ABLATION_EPOCHS        [5 10 20; 4 8]           pretraining epochs of the epochs ablation
  LABEL_FRACTIONS        [10 25 50; 25 50]        percent of training labels (labels ablation;
                                                  100 % is the main pair)
  PROBE_PATCHES          [5; 2]                   fixed crops per image of the linear probe
  CONTROL_SEEDS          [3]                      seeds of each control arm (--controls; >= 2)
  CONTROL_FRACTION       [25]                     percent of training labels of the controls
  NUM_WORKERS            [4; 0]                   DEVICE [auto; cpu]     AMP [auto; off]
  SEED                   [42]                     REPEATS [1]
  PRETRAIN_REPEATS       [1]                      N pretraining runs, 1 to REPEATS (run j at
                                                  seed SEED+j), shared by the fine-tuning
                                                  seeds: seed i starts from run i mod N;
                                                  N = REPEATS gives each seed its own Stage-1
                                                  run, so the seed intervals carry Stage-1
                                                  variance too (N-1 more pretraining runs)
  MATCHED_RATE           [auto]                   1: add the matched-rate arm (pretrained at
                                                  the baseline's encoder rate: separates
                                                  pretraining from the lower encoder rate;
                                                  REPEATS more fine-tuning runs); auto: on
                                                  when REPEATS >= 3, where the answer is a
                                                  paired seed test; 0: off. Left out when
                                                  both arms' encoder rates are equal anyway
  GPUS                   [1]                      >1: torchrun --standalone --nproc_per_node GPUS
  PRETRAIN_GPUS          [GPUS]                   the same for the pretraining stages (epochs > 0)
  PARALLEL               [1]                      stages at once (--parallel)
  BENCH_JSON             [gpu_check_out/bench_bf16.out]  bench.py JSON used by --plan
  SLURM_PARTITION        []                       --submit slurm: sbatch --partition
  SLURM_ACCOUNT          []                       sbatch --account
  SLURM_TIME             [24:00:00]               sbatch --time of every job
  SLURM_CPUS_PER_GPU     [8]                      --cpus-per-task = this x the job's GPUs
  SLURM_ARGS             []                       extra sbatch flags, e.g. "--qos=high --mem=64G"
  IMAGENET_WEIGHTS       [auto; none]             auto (timm), a local file, or none
  CLIP_WEIGHTS           [openai; none]           openai, a local file, or none
  STOP_ON_COLLAPSE       [1]                      1: pretraining runs with --stop_on_collapse
                                                  (docs/STAGE1.md); 0: it only
                                                  warns, and fine-tuning starts from its encoder
  EXTRA_PRETRAIN_ARGS    []                       extra flags for pretrain_qualiclip.py
  EXTRA_FINETUNE_ARGS    []                       extra flags for train_swin.py
  STRICT_REPORT          [0]                      1: a report figure that fails to draw fails
                                                  the report stage (tools.report --strict)
  PYTHON                 [.venv/bin/python if present, else python]

Layout of RUN_DIR: checkpoints/<run>/ (run folders of the scripts), eval/ (test_swin.py JSON and
prediction CSVs), data/ (dataset summaries), logs/<stage>.log (each stage's output through tee),
logs/runs/ (the scripts' own logs), timings.json, .done/<stage>, plots/, QUALICLIP_RESULTS.md.
An interrupted stage is rerun with --resume (the scripts continue from last.pkl); a failing stage
stops the chain, naming the stage and its log RUN_DIR/logs/<stage>.log.
EOF
}

KNOBS=(EXP_NAME RUN_DIR DATA_ROOT MODEL_SIZE CROP_SIZE PROTOCOL PRETRAIN_EPOCHS FINETUNE_EPOCHS
  PRETRAIN_BATCH FINETUNE_BATCH PRETRAIN_LR PRETRAIN_VIEWS FINETUNE_LR LR_RATIO
  LR_ENCODER_PRETRAINED DISTORTIONS LOSS_TYPE
  NUM_LEVELS PATIENCE TRAIN_PATCHES TEST_PATCHES VAL_PATCHES PRETRAIN_STEPS FINETUNE_STEPS SPLIT
  TEST_DATASETS BASELINES ABLATION_EPOCHS LABEL_FRACTIONS PROBE_PATCHES CONTROL_SEEDS CONTROL_FRACTION
  NUM_WORKERS DEVICE AMP SEED REPEATS PRETRAIN_REPEATS MATCHED_RATE
  GPUS IMAGENET_WEIGHTS CLIP_WEIGHTS EXTRA_PRETRAIN_ARGS EXTRA_FINETUNE_ARGS PYTHON REPORT_OUT
  STRICT_REPORT STOP_ON_COLLAPSE PRETRAIN_GPUS PARALLEL BENCH_JSON SLURM_PARTITION SLURM_ACCOUNT
  SLURM_TIME SLURM_CPUS_PER_GPU SLURM_ARGS)
# Every stage name run_stage may be given (shell patterns): --force checks its argument against
# these, and run_stage refuses a name missing here, so a new stage must be declared.
STAGES=(demo_data data pretrain 'pretrain_r[1-9]*' untrained 'untrained_r[1-9]*' baseline
  pretrained 'baseline_r[1-9]*' 'pretrained_r[1-9]*' pretrained_matched 'pretrained_matched_r[1-9]*'
  test_baseline test_pretrained test_zero_shot test_zero_shot_untrained test_classical
  'test_baseline_r[1-9]*' 'test_pretrained_r[1-9]*' test_pretrained_matched
  'test_pretrained_matched_r[1-9]*' probe
  'abl_*_pretrain' 'abl_*_finetune' 'abl_*_test'
  'labels_f[1-9]*_baseline' 'labels_f[1-9]*_pretrained' 'test_labels_f[1-9]*_baseline'
  'test_labels_f[1-9]*_pretrained' 'ctl_scratch_s[0-9]*' 'ctl_positive_s[0-9]*'
  'ctl_sham_s[0-9]*' report)

die() { echo "error: $*" >&2; exit 2; }

is_stage() { # is_stage NAME: NAME matches a declared stage
  local pattern
  for pattern in "${STAGES[@]}"; do
    # shellcheck disable=SC2053 # the patterns are globs on purpose
    [[ $1 == $pattern ]] && return 0
  done
  return 1
}

DEMO=0
CONTROLS=0
PLAN=0
SUBMIT=""
DRY_RUN=0
FORCE=()
ABLATIONS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --demo) DEMO=1; shift ;;
    --controls) CONTROLS=1; shift ;;
    --plan) PLAN=1; shift ;;
    --dry_run|--dry-run) DRY_RUN=1; shift ;;
    --submit)
      [[ $# -ge 2 && $2 == slurm ]] || die "--submit takes slurm (the scheduler it writes jobs \
for), got '${2:-nothing}'"
      SUBMIT=slurm; shift 2 ;;
    --force) [[ $# -ge 2 ]] || die "--force needs a stage name (or all)"; FORCE+=("$2"); shift 2 ;;
    --ablation)
      [[ $# -ge 2 ]] || die "--ablation needs epochs, distortions, loss, labels or all"
      case "$2" in
        all) ABLATIONS+=(epochs distortions loss labels) ;;
        epochs|distortions|loss|labels) ABLATIONS+=("$2") ;;
        *) die "unknown ablation '$2': expected epochs, distortions, loss, labels or all" ;;
      esac
      shift 2 ;;
    --*)
      knob=${1#--}; knob=${knob//-/_}; knob=${knob^^}
      [[ " ${KNOBS[*]} " == *" $knob "* ]] || die "unknown option $1 (see --help)"
      [[ $# -ge 2 ]] || die "$1 needs a value"
      printf -v "$knob" '%s' "$2"
      shift 2 ;;
    *) die "unexpected argument '$1' (see --help)" ;;
  esac
done
for f in "${FORCE[@]+"${FORCE[@]}"}"; do
  [[ $f == all ]] || is_stage "$f" || die "--force $f: no such stage; the stages are: all \
${STAGES[*]}"
done

# Paths the caller gives are relative to the caller's folder; the defaults to the repository.
for var in RUN_DIR DATA_ROOT REPORT_OUT; do
  if [[ -n ${!var:-} && ${!var} != /* ]]; then printf -v "$var" '%s' "$PWD/${!var}"; fi
done
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$REPO_DIR"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi

if [[ $DEMO == 1 ]]; then
  # Demo: the random mini model at 64 px learns the four default types in CPU minutes
  # (docs/DEMO_FINDINGS.md); the zero-shot rows show transfer to types it never saw.
  : "${EXP_NAME:=qualiclip_demo}" "${MODEL_SIZE:=mini}" "${CROP_SIZE:=64}"
  # Fine-tuning takes the mini size's defaults (train_swin.py, docs/PROTOCOLS.md "Stage 2 at
  # the CPU sizes") with 20 crops per image and epoch (demo seed 0: last-epoch test SRCC 0.60,
  # 0.42 with 10; docs/STAGE2_CPU.md) and fewer evaluation crops.
  : "${FINETUNE_EPOCHS:=10}" "${TRAIN_PATCHES:=20}" "${TEST_PATCHES:=5}" "${VAL_PATCHES:=5}"
  : "${ABLATION_EPOCHS:=4 8}" "${NUM_WORKERS:=0}"
  : "${LABEL_FRACTIONS:=25 50}" "${PROBE_PATCHES:=2}" "${PRETRAIN_VIEWS:=1}"
  : "${DEVICE:=cpu}" "${AMP:=off}" "${IMAGENET_WEIGHTS:=none}" "${CLIP_WEIGHTS:=none}"
fi
: "${MODEL_SIZE:=base}" "${CROP_SIZE:=224}" "${EXP_NAME:=qualiclip_${MODEL_SIZE}}"
: "${RUN_DIR:=results/${EXP_NAME}}"
# Fine-tuning knobs left empty take the value of the PROTOCOL preset (train_swin.py --protocol).
: "${PROTOCOL:=plan}" "${FINETUNE_EPOCHS:=}" "${FINETUNE_BATCH:=}" "${FINETUNE_LR:=}"
: "${LR_RATIO:=}" "${LR_ENCODER_PRETRAINED:=}" "${PATIENCE:=}" "${TRAIN_PATCHES:=}"
: "${TEST_PATCHES:=}" "${VAL_PATCHES:=}"
: "${PRETRAIN_EPOCHS:=10}" "${PRETRAIN_BATCH:=8}" "${PRETRAIN_LR:=}" "${PRETRAIN_VIEWS:=}"
: "${DISTORTIONS:=blur,jpeg,noise,brightness}" "${LOSS_TYPE:=simplified}" "${NUM_LEVELS:=5}"
: "${PRETRAIN_STEPS:=}" "${FINETUNE_STEPS:=}" "${SPLIT:=official}"
: "${TEST_DATASETS:=spaq kadid10k agiqa3k livec koniq10k}" "${ABLATION_EPOCHS:=5 10 20}"
: "${BASELINES:=niqe brisque piqe}"
: "${LABEL_FRACTIONS:=10 25 50}" "${PROBE_PATCHES:=5}" "${CONTROL_SEEDS:=3}"
: "${CONTROL_FRACTION:=25}"
: "${NUM_WORKERS:=4}" "${DEVICE:=auto}" "${AMP:=auto}" "${SEED:=42}" "${REPEATS:=1}" "${GPUS:=1}"
: "${PRETRAIN_REPEATS:=1}" "${MATCHED_RATE:=auto}"
: "${IMAGENET_WEIGHTS:=auto}" "${CLIP_WEIGHTS:=openai}" "${EXTRA_PRETRAIN_ARGS:=}"
: "${EXTRA_FINETUNE_ARGS:=}" "${REPORT_OUT:=}" "${STRICT_REPORT:=0}" "${STOP_ON_COLLAPSE:=1}"
[[ $REPEATS =~ ^[1-9][0-9]*$ ]] || die "REPEATS must be an integer >= 1, got '$REPEATS'"
[[ $PRETRAIN_REPEATS =~ ^[1-9][0-9]*$ && $PRETRAIN_REPEATS -le $REPEATS ]] || die \
  "PRETRAIN_REPEATS must be an integer from 1 to REPEATS ($REPEATS): each pretraining run serves \
at least one fine-tuning seed; got '$PRETRAIN_REPEATS'"
[[ $MATCHED_RATE =~ ^(0|1|auto)$ ]] || die "MATCHED_RATE must be 1 (add the matched-rate arm), 0 \
(leave it out) or auto (on when REPEATS >= 3), got '$MATCHED_RATE'"
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || die "GPUS must be an integer >= 1, got '$GPUS'"
: "${PRETRAIN_GPUS:=$GPUS}" "${PARALLEL:=1}" "${BENCH_JSON:=gpu_check_out/bench_bf16.out}"
: "${SLURM_PARTITION:=}" "${SLURM_ACCOUNT:=}" "${SLURM_TIME:=24:00:00}" "${SLURM_CPUS_PER_GPU:=8}"
: "${SLURM_ARGS:=}"
[[ $PRETRAIN_GPUS =~ ^[1-9][0-9]*$ ]] || die "PRETRAIN_GPUS must be an integer >= 1, got \
'$PRETRAIN_GPUS'"
[[ $PARALLEL =~ ^[1-9][0-9]*$ ]] || die "--parallel (PARALLEL) must be an integer >= 1, got \
'$PARALLEL'"
[[ $DRY_RUN == 0 || -n $SUBMIT ]] || die "--dry_run goes with --submit slurm (it writes the job \
scripts without submitting them); for a dry run of the whole chain use --plan"
[[ $PLAN == 0 || -z $SUBMIT ]] || die "--plan and --submit exclude each other: --plan prints the \
stages and their cost, --submit slurm --dry_run writes the job scripts"
[[ $CONTROL_SEEDS =~ ^[1-9][0-9]*$ && $CONTROL_SEEDS -ge 2 ]] || die "CONTROL_SEEDS must be an \
integer >= 2 (a paired t interval needs two seeds), got '$CONTROL_SEEDS'"
for pct in $LABEL_FRACTIONS $CONTROL_FRACTION; do
  [[ $pct =~ ^[1-9][0-9]?$ ]] || die "LABEL_FRACTIONS and CONTROL_FRACTION take percents 1..99, \
got '$pct'"
done
[[ $STOP_ON_COLLAPSE =~ ^[01]$ ]] || die "STOP_ON_COLLAPSE must be 1 (stop on a collapse) or 0 \
(warn only), got '$STOP_ON_COLLAPSE'"
[[ $PROTOCOL =~ ^(plan|hyperiqa|smart)$ ]] || die "PROTOCOL must be plan, hyperiqa or smart, \
got '$PROTOCOL'"

if [[ $RUN_DIR != /* ]]; then RUN_DIR=$REPO_DIR/$RUN_DIR; fi
if [[ -z "${DATA_ROOT:-}" ]]; then
  if [[ $DEMO == 1 ]]; then DATA_ROOT=$RUN_DIR/demo_data; else DATA_ROOT=$REPO_DIR/datasets; fi
fi
if [[ $PLAN == 1 ]]; then
  # A dry run creates nothing; the data may not be here yet.
  if [[ -d $DATA_ROOT ]]; then DATA_ROOT=$(cd "$DATA_ROOT" && pwd); fi
else
  if [[ $DEMO == 1 ]]; then mkdir -p "$DATA_ROOT"; fi
  [[ -d $DATA_ROOT ]] || die "data root not found: $DATA_ROOT (expected DATA_ROOT/<dataset key>/ \
in the official layouts; set DATA_ROOT or --data_root, or run --demo)"
  DATA_ROOT=$(cd "$DATA_ROOT" && pwd)
  mkdir -p "$RUN_DIR"
  RUN_DIR=$(cd "$RUN_DIR" && pwd)
fi
CKPT=$RUN_DIR/checkpoints
LOGS=$RUN_DIR/logs
EVAL=$RUN_DIR/eval
DONE=$RUN_DIR/.done
if [[ $PLAN == 0 ]]; then mkdir -p "$CKPT" "$LOGS" "$EVAL" "$DONE" "$RUN_DIR/data"; fi
export IQA_CACHE_DIR=${IQA_CACHE_DIR:-$RUN_DIR/cache}
export MPLBACKEND=Agg

launcher() { # launcher N: fill LAUNCHER with the interpreter, under torchrun when N > 1
  if [[ $1 -gt 1 ]]; then
    LAUNCHER=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$1")
  else
    LAUNCHER=("$PYTHON")
  fi
}
launcher "$PRETRAIN_GPUS"
PRETRAIN_LAUNCH=("${LAUNCHER[@]}")
launcher "$GPUS"
LAUNCH=("${LAUNCHER[@]}")
read -r -a EXTRA_PRE <<<"$EXTRA_PRETRAIN_ARGS"
read -r -a EXTRA_FT <<<"$EXTRA_FINETUNE_ARGS"
COMMON=(--data_root "$DATA_ROOT" --model_size "$MODEL_SIZE" --device "$DEVICE" --amp "$AMP"
  --num_workers "$NUM_WORKERS" --output_dir "$CKPT" --log_dir "$LOGS/runs")

# ---------------------------------------------------------------- stage machinery
STAGE=""
STAGE_DIR=""  # the run folder of the stage running now (- when it has none)
RAN_ANY=0
GPU_SAMPLER=""
COLLECT=""  # --parallel N > 1, --plan, --submit: run_stage adds each stage to this plan file

timing() { "$PYTHON" -m tools.timings "$RUN_DIR/timings.json" "$1" "$2"; }

on_error() {
  local rc=$?
  trap - ERR
  # A stage that is a shell function runs in the subshell of its `| tee` pipeline: only the main
  # shell reports, once.
  if [[ $BASHPID != "$$" ]]; then exit "$rc"; fi
  stop_gpu_sampler
  if [[ -n $STAGE ]]; then
    timing "$STAGE" failed || true
    if stopped_on_collapse "$rc"; then
      collapse_notice
      exit 3
    fi
    if [[ $rc == 130 || $rc == 143 ]]; then
      echo "INTERRUPTED: stage '$STAGE'; log: $LOGS/$STAGE.log" >&2
    else
      echo "FAILED: stage '$STAGE' (exit status $rc); log: $LOGS/$STAGE.log" >&2
    fi
    echo "Rerun the same command (after fixing the cause): finished stages are skipped and this" \
      "one resumes from its last checkpoint." >&2
  fi
  exit "$rc"
}
# stopped_on_collapse RC: the failed stage is a pretraining stage that --stop_on_collapse ended:
# exit status 3, or under torchrun (which exits 1 when a rank fails) the stop line in the log of
# this attempt (the part after the stage's last "=== ... stage NAME" header).
stopped_on_collapse() {
  [[ $STAGE == *pretrain || $STAGE == pretrain_r[1-9]* ]] || return 1
  [[ $1 == 3 ]] && return 0
  [[ $GPUS -gt 1 && $1 == 1 ]] || return 1
  awk -v head="stage $STAGE" 'index($0, "=== ") == 1 && index($0, head) { text = "" }
    { text = text $0 "\n" } END { printf "%s", text }' "$LOGS/$STAGE.log" |
    grep -- "(--stop_on_collapse): COLLAPSE" >/dev/null  # not -q: awk must not get SIGPIPE
}

# collapse_notice: a pretraining stage stopped on a collapse (--stop_on_collapse).
collapse_notice() {
  {
    echo "STOPPED before fine-tuning: Stage 1 collapsed in stage '$STAGE' (--stop_on_collapse," \
      "exit status 3): its encoder scores degraded crops alike, and fine-tuning from it would" \
      "answer \"does pretraining help?\" for the wrong reason."
    echo "Evidence (training batches, checkpoints/${STAGE_DIR##*/}/metrics.jsonl):" \
      "$("$PYTHON" -m tools.stage1 --run_dir "$STAGE_DIR" --last 2>&1)"
    echo "Next: change what collapsed (docs/STAGE1.md: e.g. --pretrain_lr, or" \
      "--extra_pretrain_args '--consistency_weight 0')" \
      "and rerun with --force $STAGE; or rerun with STOP_ON_COLLAPSE=0 to resume this run and" \
      "fine-tune from it anyway (the report then marks Stage 1 as failed). Log: $LOGS/$STAGE.log"
  } >&2
}
on_interrupt() {
  trap - ERR INT TERM
  if [[ $BASHPID != "$$" ]]; then exit 130; fi
  stop_gpu_sampler
  if [[ -n $STAGE ]]; then
    timing "$STAGE" failed || true
    echo "INTERRUPTED: stage '$STAGE'; rerun the same command to resume it from last.pkl" >&2
  fi
  exit 130
}
trap on_error ERR
trap on_interrupt INT TERM

is_forced() {
  local f
  for f in "${FORCE[@]+"${FORCE[@]}"}"; do
    [[ $f == all || $f == "$1" ]] && return 0
  done
  return 1
}

start_gpu_sampler() {
  if [[ $DEVICE != cpu ]] && command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 2 \
      >>"$LOGS/gpu_$1.csv" 2>/dev/null &
    GPU_SAMPLER=$!
  fi
}
stop_gpu_sampler() {
  if [[ -n $GPU_SAMPLER ]]; then
    kill "$GPU_SAMPLER" 2>/dev/null || true
    wait "$GPU_SAMPLER" 2>/dev/null || true
    GPU_SAMPLER=""
  fi
}

# run_stage NAME RUN_FOLDER|- CLEAN_PATHS [--feeds "STAGE..."] [--after all] [KEY=VALUE...]
#           -- COMMAND...
#   The stage's settings are the flags of COMMAND plus the KEY=VALUE pairs it declares (for what
#   COMMAND does not show). A stage with a marker is skipped when the marker records the same
#   settings and stops the chain, naming the differences, when not. Otherwise runs COMMAND
#   (adding --resume when RUN_FOLDER holds a last.pkl of an interrupted attempt), tees its output
#   to logs/NAME.log and writes the marker with the settings. A forced stage first deletes
#   CLEAN_PATHS (space separated) so it starts from scratch. --feeds names the stages that use
#   this one's output: when it runs, they are redone too (invalidate), whatever their markers say.
#   --after all: the stage uses the output of every stage before it (the report). When COLLECT is
#   set, the stage is only added to the plan file (tools.chain_graph) for a scheduler to run.
run_stage() {
  local name=$1 folder=$2 clean=$3 feeds="" after="" declared=() verdict
  shift 3
  while [[ $1 != -- ]]; do
    if [[ $1 == --feeds ]]; then
      feeds=$2
      shift 2
    elif [[ $1 == --after ]]; then
      after=$2
      shift 2
    else
      declared+=("$1")
      shift
    fi
  done
  shift
  is_stage "$name" || die "stage '$name' is not declared in STAGES at the top of $0"
  local marker=$DONE/$name settings=("${declared[@]+"${declared[@]}"}" -- "$@")
  if [[ -n $COLLECT ]]; then
    "$PYTHON" -m tools.chain_graph add "$COLLECT" "$name" "$folder" "$clean" "$feeds" "$after" \
      "${settings[@]}"
    return 0
  fi
  if is_forced "$name"; then
    rm -f "$marker"
    local p
    for p in $clean; do rm -rf "$p"; done
  fi
  if [[ -f $marker ]]; then
    if verdict=$("$PYTHON" -m tools.stage_settings check "$marker" "${settings[@]}"); then
      echo "[skip] $name: $verdict; --force $name redoes it"
      timing "$name" skipped
      return 0
    fi
    die "stage '$name' $verdict. Pass --force $name to redo it (the stages that use its output" \
      "are redone too), or choose another EXP_NAME / --run_dir for the new settings"
  fi
  local cmd=("$@")
  if [[ $folder != - && -f $folder/last.pkl ]]; then
    echo "[resume] $name: continuing the interrupted run from $folder/last.pkl"
    cmd+=(--resume)
  fi
  echo "[run] $name: ${cmd[*]}"
  STAGE=$name
  STAGE_DIR=$folder
  RAN_ANY=1
  timing "$name" start
  start_gpu_sampler "$name"
  {
    echo "=== $(date -u +%FT%TZ) stage $name"
    echo "=== ${cmd[*]}"
  } >>"$LOGS/$name.log"
  "${cmd[@]}" 2>&1 | tee -a "$LOGS/$name.log"
  stop_gpu_sampler
  timing "$name" "done"
  "$PYTHON" -m tools.stage_settings record "$marker" "${settings[@]}"
  STAGE=""
  # shellcheck disable=SC2086  # a list of stage names
  invalidate $feeds
}

# invalidate STAGE...: force the stages that use the output of a stage that just ran.
invalidate() {
  local s
  for s in "$@"; do is_forced "$s" || FORCE+=("$s"); done
}

# ---------------------------------------------------------------- stages
check_dataset() { # check_dataset KEY: data/KEY.json, or data/KEY.missing.txt saying why not
  local key=$1 out=$RUN_DIR/data
  if "$PYTHON" -m data --data_root "$DATA_ROOT" --dataset "$key" >"$out/$key.json.tmp" \
    2>"$out/$key.err"; then
    mv "$out/$key.json.tmp" "$out/$key.json"
    rm -f "$out/$key.missing.txt" "$out/$key.err"
  else
    rm -f "$out/$key.json.tmp" "$out/$key.json"
    mv "$out/$key.err" "$out/$key.missing.txt"
  fi
}

stage_data() { # uses DATA_ROOT and MODEL_SIZE (declared as the data stage's settings)
  local key pids=()
  for key in koniq10k spaq kadid10k agiqa3k livec; do
    check_dataset "$key" &
    pids+=($!)
  done
  "$PYTHON" -m models --model_size "$MODEL_SIZE" --imagenet_weights none \
    >"$RUN_DIR/model_info.json.tmp"
  mv "$RUN_DIR/model_info.json.tmp" "$RUN_DIR/model_info.json"
  wait "${pids[@]}"
  for key in koniq10k spaq kadid10k agiqa3k livec; do
    if [[ -f $RUN_DIR/data/$key.json ]]; then
      echo "dataset $key: found"
    else
      echo "notice: dataset $key skipped ($(tail -n 1 "$RUN_DIR/data/$key.missing.txt"))"
    fi
  done
  if [[ ! -f $RUN_DIR/data/koniq10k.json ]]; then
    echo "KonIQ-10k is required for fine-tuning: expected $DATA_ROOT/koniq10k in the official" \
      "layout (set DATA_ROOT or --data_root); see $RUN_DIR/data/koniq10k.missing.txt" >&2
    return 1
  fi
}

# have_dataset KEY: the data stage found it (a --plan without the data stage's summaries plans
# for every dataset).
have_dataset() {
  [[ -f $RUN_DIR/data/$1.json ]] || [[ $PLAN == 1 && ! -f $RUN_DIR/data/koniq10k.json ]]
}

# The test sets among TEST_DATASETS that the data stage found (a notice names the others).
present_test_sets() {
  local key
  TEST_SETS=()
  for key in $TEST_DATASETS; do
    if have_dataset "$key"; then
      TEST_SETS+=("$key")
    else
      echo "notice: $key is not present under $DATA_ROOT: not tested"
    fi
  done
}

# The *_cmd functions fill the global array CMD with one stage's command line.
pretrain_cmd() { # pretrain_cmd MODEL_NAME EPOCHS DISTORTIONS LOSS_TYPE [SEED]
  CMD=("${PRETRAIN_LAUNCH[@]}")
  if [[ $2 == 0 ]]; then CMD=("${LAUNCH[@]}"); fi  # no training: the untrained encoder is saved
  CMD+=(pretrain_qualiclip.py "${COMMON[@]}" --model_name "$1" --epochs "$2"
    --distortions "$3" --loss_type "$4" --batch_size "$PRETRAIN_BATCH"
    --num_levels "$NUM_LEVELS" --seed "${5:-$SEED}" --imagenet_weights "$IMAGENET_WEIGHTS"
    --crop_size "$CROP_SIZE"
    --clip_weights "$CLIP_WEIGHTS")
  if [[ -n $PRETRAIN_STEPS ]]; then CMD+=(--max_steps_per_epoch "$PRETRAIN_STEPS"); fi
  if [[ -n $PRETRAIN_LR ]]; then CMD+=(--lr "$PRETRAIN_LR"); fi  # else the model size's default
  if [[ $STOP_ON_COLLAPSE == 1 ]]; then CMD+=(--stop_on_collapse); fi
  add_flag --views_per_image "$PRETRAIN_VIEWS"
  CMD+=("${EXTRA_PRE[@]+"${EXTRA_PRE[@]}"}")
}

# r_suffix I: the stage-name suffix of repeat I ("" for 0, _rI after it)
r_suffix() { if [[ $1 -gt 0 ]]; then echo "_r$1"; fi; }

# add_flag FLAG VALUE: append `FLAG VALUE` to CMD when VALUE is set (else the preset decides).
add_flag() { if [[ -n $2 ]]; then CMD+=("$1" "$2"); fi; }

# finetune_cmd MODEL_NAME SEED SPLIT_SEED [ENCODER_CHECKPOINT [ENCODER_LR]]: ENCODER_LR replaces
# LR_ENCODER_PRETRAINED (the matched-rate arm)
finetune_cmd() {
  CMD=("${LAUNCH[@]}" train_swin.py "${COMMON[@]}" --dataset koniq10k --model_name "$1"
    --seed "$2" --split "$SPLIT" --split_seed "$3" --protocol "$PROTOCOL"
    --crop_size "$CROP_SIZE" --imagenet_weights "$IMAGENET_WEIGHTS")
  add_flag --epochs "$FINETUNE_EPOCHS"
  add_flag --batch_size "$FINETUNE_BATCH"
  add_flag --lr "$FINETUNE_LR"
  add_flag --lr_ratio "$LR_RATIO"
  add_flag --patience "$PATIENCE"
  add_flag --train_patches "$TRAIN_PATCHES"
  add_flag --test_patches "$TEST_PATCHES"
  add_flag --val_patches "$VAL_PATCHES"
  add_flag --max_steps_per_epoch "$FINETUNE_STEPS"
  if [[ $# -ge 4 ]]; then
    CMD+=(--pretrained_encoder "$4")
    if [[ $# -lt 5 ]]; then add_flag --lr_encoder_pretrained "$LR_ENCODER_PRETRAINED"; fi
  fi
  CMD+=("${EXTRA_FT[@]+"${EXTRA_FT[@]}"}")
  # after the extra flags, which could hold another --lr_encoder_pretrained (the last one counts)
  if [[ $# -ge 5 ]]; then CMD+=(--lr_encoder_pretrained "$5"); fi
}

test_cmd() { # test_cmd MODEL_PATH OUTPUT_JSON [DATASET...] (default: the present TEST_SETS)
  local sets=("${TEST_SETS[@]}")
  if [[ $# -gt 2 ]]; then sets=("${@:3}"); fi
  CMD=("${LAUNCH[@]}" test_swin.py --data_root "$DATA_ROOT" --device "$DEVICE" --amp "$AMP"
    --num_workers "$NUM_WORKERS" --log_dir "$LOGS/runs" --seed "$SEED"
    --model_path "$1" --output "$2" --test_datasets "${sets[@]}"
    --overwrite)  # a stage redone (markers decide) replaces its own eval files
  add_flag --test_patches "$TEST_PATCHES"  # else a fine-tuned model's own, from its checkpoint
}

# eval_files NAME [KEY...]: the files test_cmd writes for NAME, its JSON and one predictions CSV per
# test set (default: the present TEST_SETS), which a forced test stage deletes: named one by one,
# since a glob NAME_*_predictions.csv would also take those of NAME_r1 or NAME_untrained.
eval_files() {
  local key keys=("${TEST_SETS[@]}") files="$EVAL/$1.json"
  if [[ $# -gt 1 ]]; then keys=("${@:2}"); fi
  for key in "${keys[@]}"; do files+=" $EVAL/$1_${key}_predictions.csv"; done
  echo "$files"
}

# add_label_fraction PCT LABEL_SEED: append to CMD the flags that fine-tune on PCT % of the
# training labels (the same seeded subset for every model given the same LABEL_SEED).
add_label_fraction() { CMD+=(--label_fraction "$(printf '0.%02d' "$1")" --label_seed "$2"); }

# run_label_fractions: baseline and pretrained on LABEL_FRACTIONS % of the training labels (the
# same --label_seed subset for both), each tested on the KonIQ-10k test split.
run_label_fractions() {
  local pct name
  for pct in $LABEL_FRACTIONS; do
    for name in baseline pretrained; do
      if [[ $name == baseline ]]; then
        finetune_cmd "labels_f${pct}_$name" "$SEED" 0
      else
        finetune_cmd "labels_f${pct}_$name" "$SEED" 0 "$ENCODER"
      fi
      add_label_fraction "$pct" "$SEED"
      run_stage "labels_f${pct}_$name" "$CKPT/labels_f${pct}_$name" \
        "$CKPT/labels_f${pct}_$name" --feeds "test_labels_f${pct}_$name" -- "${CMD[@]}"
      test_cmd "$CKPT/labels_f${pct}_$name/best_model.pkl" "$EVAL/labels_f${pct}_$name.json" \
        koniq10k
      run_stage "test_labels_f${pct}_$name" - "$(eval_files "labels_f${pct}_$name" koniq10k)" \
        -- "${CMD[@]}"
    done
  done
}

# run_controls: --controls. Per seed i, fine-tuning on CONTROL_FRACTION % of the training labels
# (the same subset for the three arms of a seed) from the usual initialisation (scratch, the
# reference), from the encoder of the baseline run, which was fine-tuned on all training labels
# (positive control: it certainly carries quality signal), and from the untrained stage's Stage-1
# encoder (sham control: saved by the pretraining code, no quality signal). Every seed keeps the
# baseline's split (split seed 0): under SPLIT=random another split would put images whose labels
# the positive control's encoder was trained on into its test set. The test split is never seen by
# any of them; each run scores it once in its results.json.
run_controls() {
  local i arm name start=()
  for ((i = 0; i < CONTROL_SEEDS; i++)); do
    for arm in scratch positive sham; do
      case $arm in
        scratch) start=() ;;
        positive) start=("$CKPT/baseline/best_model.pkl") ;;
        sham) start=("$(encoder_of "$CKPT/untrained")") ;;
      esac
      name=ctl_${arm}_s$i
      finetune_cmd "$name" $((SEED + i)) 0 "${start[@]+"${start[@]}"}"
      add_label_fraction "$CONTROL_FRACTION" $((SEED + i))
      run_stage "$name" "$CKPT/$name" "$CKPT/$name" --feeds report -- "${CMD[@]}"
    done
  done
}

# encoder_of RUN_FOLDER: the encoder of a finished pretraining run that fine-tuning starts from:
# the epoch with the best label-free validation, or the final one when the run had no
# validation (--val_distortions none, or --epochs 0: the untrained control). While stages are
# only collected (--parallel, --plan, --submit) it names the file the pretraining will write.
encoder_of() {
  local final=("$1"/swin_*_qualiclip_pretrained.pkl) best=("$1"/swin_*_qualiclip_best.pkl)
  if [[ ! -f ${final[0]} && -n $COLLECT ]]; then
    if [[ $(basename "$1") == untrained ]]; then
      echo "$1/swin_${MODEL_SIZE}_qualiclip_pretrained.pkl"
    else
      echo "$1/swin_${MODEL_SIZE}_qualiclip_best.pkl"
    fi
    return 0
  fi
  if [[ ! -f ${final[0]} ]]; then
    echo "no swin_*_qualiclip_pretrained.pkl in $1: its pretraining did not finish" >&2
    return 1
  fi
  if [[ -f ${best[0]} ]]; then echo "${best[0]}"; else echo "${final[0]}"; fi
}

# pretrain_finetune_test PREFIX MODEL_NAME EPOCHS DISTORTIONS LOSS: one ablation variant
pretrain_finetune_test() {
  local prefix=$1 name=$2 encoder
  pretrain_cmd "${name}_pretrain" "$3" "$4" "$5"
  run_stage "${prefix}_pretrain" "$CKPT/${name}_pretrain" "$CKPT/${name}_pretrain" \
    --feeds "${prefix}_finetune" -- "${CMD[@]}"
  encoder=$(encoder_of "$CKPT/${name}_pretrain")
  finetune_cmd "$name" "$SEED" 0 "$encoder"
  run_stage "${prefix}_finetune" "$CKPT/$name" "$CKPT/$name" --feeds "${prefix}_test" \
    -- "${CMD[@]}"
  test_cmd "$CKPT/$name/best_model.pkl" "$EVAL/$name.json"
  run_stage "${prefix}_test" - "$(eval_files "$name")" -- "${CMD[@]}"
}

run_ablation() { # run_ablation KIND: every variant that differs from the main runs
  local kind=$1 values v epochs distortions loss variant
  if [[ $kind == labels ]]; then
    run_label_fractions
    return
  fi
  case "$kind" in
    epochs) values=$ABLATION_EPOCHS ;;
    distortions) values="blur jpeg blur,jpeg,noise,brightness" ;;
    loss) values="simplified full" ;;
  esac
  for v in $values; do
    epochs=$PRETRAIN_EPOCHS distortions=$DISTORTIONS loss=$LOSS_TYPE variant=$v
    case "$kind" in
      epochs) epochs=$v variant=e$v ;;
      distortions) distortions=$v variant=${v//,/+} ;;
      loss) loss=$v ;;
    esac
    if [[ $epochs == 0 ]]; then
      echo "[reuse] ablation epochs=0: the baseline run is the no-pretraining variant"
    elif [[ $epochs == "$PRETRAIN_EPOCHS" && $distortions == "$DISTORTIONS" \
      && $loss == "$LOSS_TYPE" ]]; then
      echo "[reuse] ablation $kind=$v: the main pretrained run is this variant"
    else
      pretrain_finetune_test "abl_${kind}_${variant}" "ablation_${kind}_${variant}" \
        "$epochs" "$distortions" "$loss"
    fi
  done
}

# ---------------------------------------------------------------- the chain
echo "QualiCLIP experiment in $RUN_DIR (model $MODEL_SIZE, data $DATA_ROOT, python $PYTHON)"
if [[ $PLAN == 1 ]]; then
  COLLECT=$(mktemp -t chain_plan.XXXXXX)
  trap 'rm -f "$COLLECT"' EXIT
fi
if [[ $DEMO == 1 ]]; then
  if [[ -f $DATA_ROOT/koniq10k/koniq10k_distributions_sets.csv && ! -f $DONE/demo_data ]]; then
    echo "[skip] demo_data: $DATA_ROOT already holds datasets"
  else
    run_stage demo_data - "" --feeds data -- "$PYTHON" -m data.demo --out "$DATA_ROOT"
  fi
fi
run_stage data - "" DATA_ROOT="$DATA_ROOT" MODEL_SIZE="$MODEL_SIZE" -- stage_data
if [[ $PLAN == 0 && ( $PARALLEL -gt 1 || -n $SUBMIT ) ]]; then
  # The data stages ran here; the stages after them go to the plan file for the scheduler.
  COLLECT=$RUN_DIR/chain_plan.jsonl
  : >"$COLLECT"
fi
present_test_sets

# The matched-rate arm: the plan fine-tunes the Stage-1 encoder at a lower rate than the baseline's
# encoder, so baseline vs pretrained changes two things; pretrained_matched* changes only the start.
finetune_cmd pretrained "$SEED" 0 "$CKPT/pretrain"  # any encoder file: only the rates are read
rates=$("$PYTHON" -m tools.chain_rates -- "${CMD[@]}")
read -r BASELINE_LR PRETRAINED_LR <<<"$rates"
MATCHED=0
if [[ $MATCHED_RATE == 1 || ( $MATCHED_RATE == auto && $REPEATS -ge 3 ) ]]; then MATCHED=1; fi
if [[ $MATCHED == 1 && $BASELINE_LR == "$PRETRAINED_LR" ]]; then
  echo "notice: no matched-rate arm: the pretrained runs fine-tune the encoder at the baseline's" \
    "rate ($BASELINE_LR) already"
  MATCHED=0
elif [[ $MATCHED == 1 ]]; then
  echo "matched-rate arm: pretrained_matched* fine-tune the Stage-1 encoder at the baseline's" \
    "encoder rate $BASELINE_LR (pretrained*: $PRETRAINED_LR)"
fi
ARMS=(baseline pretrained)
if [[ $MATCHED == 1 ]]; then ARMS+=(pretrained_matched); fi

# Stage 1: pretrain and, with PRETRAIN_REPEATS N > 1, pretrain_r<j> (seed SEED+j). The pretrained
# runs of fine-tuning seed i start from run i mod N; the zero-shot test, the probe and the labels
# ablation from pretrain.
ENCODERS=()
for ((j = 0; j < PRETRAIN_REPEATS; j++)); do
  feeds=""
  if [[ $j == 0 ]]; then
    feeds="test_zero_shot probe"
    for pct in $LABEL_FRACTIONS; do feeds+=" labels_f${pct}_pretrained"; done
  fi
  for ((i = j; i < REPEATS; i += PRETRAIN_REPEATS)); do
    suffix=$(r_suffix "$i")
    feeds+=" pretrained$suffix"
    if [[ $MATCHED == 1 ]]; then feeds+=" pretrained_matched$suffix"; fi
  done
  name=pretrain$(r_suffix "$j")
  pretrain_cmd "$name" "$PRETRAIN_EPOCHS" "$DISTORTIONS" "$LOSS_TYPE" $((SEED + j))
  run_stage "$name" "$CKPT/$name" "$CKPT/$name" --feeds "$feeds" -- "${CMD[@]}"
  encoder=$(encoder_of "$CKPT/$name")
  ENCODERS+=("$encoder")
done
ENCODER=${ENCODERS[0]}
# The controls (--controls) start from the baseline's and the untrained stage's encoders.
BASELINE_FEEDS=test_baseline UNTRAINED_FEEDS=test_zero_shot_untrained
for ((i = 0; i < CONTROL_SEEDS; i++)); do
  BASELINE_FEEDS+=" ctl_positive_s$i" UNTRAINED_FEEDS+=" ctl_sham_s$i"
done
pretrain_cmd untrained 0 "$DISTORTIONS" "$LOSS_TYPE"
run_stage untrained "$CKPT/untrained" "$CKPT/untrained" --feeds "$UNTRAINED_FEEDS" \
  -- "${CMD[@]}"
# The control of each further Stage-1 run (its seed's initial weights and validation set), for the
# report's Stage-1 health of that run: no training, one validation pass.
for ((j = 1; j < PRETRAIN_REPEATS; j++)); do
  pretrain_cmd "untrained_r$j" 0 "$DISTORTIONS" "$LOSS_TYPE" $((SEED + j))
  run_stage "untrained_r$j" "$CKPT/untrained_r$j" "$CKPT/untrained_r$j" -- "${CMD[@]}"
done

for ((i = 0; i < REPEATS; i++)); do
  suffix=$(r_suffix "$i")
  encoder=${ENCODERS[i % PRETRAIN_REPEATS]}
  feeds=test_baseline$suffix
  if [[ $i == 0 ]]; then feeds=$BASELINE_FEEDS; fi
  finetune_cmd "baseline$suffix" $((SEED + i)) "$i"
  run_stage "baseline$suffix" "$CKPT/baseline$suffix" "$CKPT/baseline$suffix" \
    --feeds "$feeds" -- "${CMD[@]}"
  finetune_cmd "pretrained$suffix" $((SEED + i)) "$i" "$encoder"
  run_stage "pretrained$suffix" "$CKPT/pretrained$suffix" "$CKPT/pretrained$suffix" \
    --feeds "test_pretrained$suffix" -- "${CMD[@]}"
  if [[ $MATCHED == 1 ]]; then
    name=pretrained_matched$suffix
    finetune_cmd "$name" $((SEED + i)) "$i" "$encoder" "$BASELINE_LR"
    run_stage "$name" "$CKPT/$name" "$CKPT/$name" --feeds "test_$name" -- "${CMD[@]}"
  fi
done

for ((i = 0; i < REPEATS; i++)); do
  for arm in "${ARMS[@]}"; do
    name=$arm$(r_suffix "$i")
    test_cmd "$CKPT/$name/best_model.pkl" "$EVAL/$name.json"
    run_stage "test_$name" - "$(eval_files "$name")" -- "${CMD[@]}"
  done
done
test_cmd "$ENCODER" "$EVAL/zero_shot.json"
run_stage test_zero_shot - "$(eval_files zero_shot)" -- "${CMD[@]}"
test_cmd "$(encoder_of "$CKPT/untrained")" "$EVAL/zero_shot_untrained.json"
run_stage test_zero_shot_untrained - "$(eval_files zero_shot_untrained)" -- "${CMD[@]}"
if [[ $BASELINES != none ]]; then
  read -r -a baseline_names <<<"$BASELINES"
  run_stage test_classical - "$EVAL/classical_*" -- "$PYTHON" test_swin.py --data_root \
    "$DATA_ROOT" --device cpu --num_workers "$NUM_WORKERS" --log_dir "$LOGS/runs" \
    --baselines "${baseline_names[@]}" --output "$EVAL/classical.json" \
    --test_datasets "${TEST_SETS[@]}" --overwrite  # a stage redone replaces its own files
fi

PROBE_SETS=()
for key in koniq10k spaq kadid10k agiqa3k livec; do
  if have_dataset "$key"; then PROBE_SETS+=("$key"); fi
done
run_stage probe - "$RUN_DIR/probe" -- "$PYTHON" -m tools.probe --data_root "$DATA_ROOT" \
  --out "$RUN_DIR/probe" --model_size "$MODEL_SIZE" --crop_size "$CROP_SIZE" \
  --patches "$PROBE_PATCHES" --imagenet_weights "$IMAGENET_WEIGHTS" --device "$DEVICE" \
  --seed "$SEED" --encoders random imagenet "qualiclip=$ENCODER" --datasets "${PROBE_SETS[@]}"

for kind in "${ABLATIONS[@]+"${ABLATIONS[@]}"}"; do
  run_ablation "$kind"
done
if [[ $CONTROLS == 1 ]]; then run_controls; fi

if [[ $RAN_ANY == 1 ]]; then invalidate report; fi
REPORT_CMD=("$PYTHON" -m tools.report --runs_dir "$RUN_DIR" --data_root "$DATA_ROOT")
if [[ -n $REPORT_OUT ]]; then REPORT_CMD+=(--out "$REPORT_OUT"); fi
if [[ $STRICT_REPORT == 1 ]]; then REPORT_CMD+=(--strict); fi
run_stage report - "" --after all -- "${REPORT_CMD[@]}"
if [[ -n $COLLECT ]]; then
  GRAPH=(--run_dir "$RUN_DIR" --plan "$COLLECT" --force "${FORCE[@]+"${FORCE[@]}"}")
  SCHEDULE=("${GRAPH[@]}" --parallel "$PARALLEL" --gpus "$GPUS" --device "$DEVICE")
  COST=(--bench_json "$BENCH_JSON" --model_size "$MODEL_SIZE" --crop_size "$CROP_SIZE")
  if [[ $PLAN == 1 ]]; then
    "$PYTHON" -m tools.chain_cost "${SCHEDULE[@]}" "${COST[@]}" || exit $?
    exit 0
  fi
  if [[ -n $SUBMIT ]]; then COST+=(--cluster); fi
  "$PYTHON" -m tools.chain_cost "${SCHEDULE[@]}" "${COST[@]}" \
    --save "$RUN_DIR/cost_estimate.json" || exit $?
  if [[ -n $SUBMIT ]]; then
    SLURM=(--partition "$SLURM_PARTITION" --account "$SLURM_ACCOUNT" --time "$SLURM_TIME"
      --cpus_per_gpu "$SLURM_CPUS_PER_GPU" --sbatch_args "$SLURM_ARGS" --job_prefix "$EXP_NAME")
    if [[ $DRY_RUN == 1 ]]; then SLURM+=(--dry_run); fi
    "$PYTHON" -m tools.chain_slurm "${GRAPH[@]}" "${SLURM[@]}" || exit $?
    exit 0
  fi
  "$PYTHON" -m tools.chain_parallel "${SCHEDULE[@]}" || exit $?
fi
echo "done: $RUN_DIR/QUALICLIP_RESULTS.md"
