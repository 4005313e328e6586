#!/usr/bin/env bash
# GPU self-check: in about 8 minutes, offline, that everything a long run needs works on this
# machine. `make gpu-check` runs it; `GC_DEVICE=cpu GC_SIZE=micro make gpu-check` runs the same
# steps on a CPU in a couple of minutes (the compiled benchmark is skipped there: compiling on a
# CPU takes longer than the whole check).
#
# Steps, each under its own timeout (and skipped when the budget is spent): demo data; device
# checks (no host copies or host syncs in a training step, degradations unchanged by TF32);
# the benchmark in bf16; a few steps of both training scripts in bf16 and in fp16 with
# --accum_steps 2; both training scripts under a 2-rank torchrun (NCCL on two GPUs, gloo when
# there is one); a fine-tuning run killed after an epoch and resumed; the GPU-saved checkpoint
# scored on the CPU; last, the benchmark's training step with --compile. The summary (status,
# time, peak memory, throughput, MFU per step) ends the output; every step's log and JSON are in
# the output folder.
#
# Settings (environment): GC_DEVICE (cuda), GC_SIZE (base), GC_CROP (224 on cuda, 64 on cpu),
# GC_OUT (gpu_check_out), GC_BUDGET seconds (480), GC_COMPILE (1 on cuda, 0 on cpu),
# GC_ONLY ("step ..." runs only those), GC_DEMO (demo data already built there),
# PYTHON (.venv/bin/python, else python3). Exit status 0 when every step that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.."

DEV=${GC_DEVICE:-cuda}
SIZE=${GC_SIZE:-base}
if [[ $DEV == cpu ]]; then
  CROP=${GC_CROP:-64}; WORKERS=0; FT_BATCH=4; PT_BATCH=2; COMPILE=${GC_COMPILE:-0}
  BENCH_COUNTS=(--batch_size 2 --steps 1 --repeats 1 --warmup 1 --pretrain_batch_size 1
                --num_levels 2 --eval_patches 2 --loader_images 2 --loader_passes 1)
else
  CROP=${GC_CROP:-224}; WORKERS=8; FT_BATCH=32; PT_BATCH=8; COMPILE=${GC_COMPILE:-1}
  BENCH_COUNTS=(--steps 10 --repeats 3 --warmup 5)
fi
OUT=$(mkdir -p "${GC_OUT:-gpu_check_out}" && cd "${GC_OUT:-gpu_check_out}" && pwd)
BUDGET=${GC_BUDGET:-480}
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
WORK=$(mktemp -d -t gpu_check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
rm -rf "$OUT/records" "$OUT/metrics"
mkdir -p "$OUT/records" "$OUT/metrics"
: > "$OUT/steps.tsv"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export TORCHINDUCTOR_CACHE_DIR=$WORK/inductor

# step NAME MAX_S NOTE CMD...: run CMD under `timeout` with at most MAX_S (less when the budget
# is nearly spent), output to $OUT/NAME.log (stdout alone also to $OUT/NAME.out).
step() {
  local name=$1 max=$2 note=$3; shift 3
  if [[ -n ${GC_ONLY:-} && " $GC_ONLY " != *" $name "* ]]; then
    skip "$name" "not in GC_ONLY"; return
  fi
  local left=$(( BUDGET - ($(date +%s) - START) - 10 ))
  local limit=$(( max < left ? max : left ))
  if (( limit < 15 )); then
    skip "$name" "no time left in GC_BUDGET"; return
  fi
  echo "[run ] $name (up to ${limit}s)"
  local begin=$SECONDS status
  timeout -k 10 "$limit" "$@" > >(tee "$OUT/$name.out" > "$OUT/$name.log") 2> "$OUT/$name.err"
  local rc=$?
  sleep 0.1; cat "$OUT/$name.err" >> "$OUT/$name.log"; rm -f "$OUT/$name.err"
  case $rc in 0) status=ok ;; 124|137) status=TIMEOUT ;; *) status=FAIL ;; esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" $(( SECONDS - begin )) "$note" >> "$OUT/steps.tsv"
  echo "[$status] $name ($(( SECONDS - begin ))s)"
}
skip() { printf '%s\tSKIP\t0\t%s\n' "$1" "$2" >> "$OUT/steps.tsv"; echo "[skip] $1: $2"; }

DEMO=${GC_DEMO:-$WORK/demo}
RUNS=$WORK/runs
COMMON=(--data_root "$DEMO" --device "$DEV" --num_workers "$WORKERS" --log_dir "$OUT/logs"
        --cache_dir "$WORK/cache")
TRAIN=("${COMMON[@]}" --model_size "$SIZE" --imagenet_weights none --crop_size "$CROP"
       --output_dir "$RUNS" --dataset koniq10k --epochs 1 --max_steps_per_epoch 4)
FT=(--batch_size "$FT_BATCH" --val_patches 1 --test_patches 1 --patience 0)
PT=(--batch_size "$PT_BATCH" --save_every 0)
GPUS=0
[[ $DEV == cuda* ]] && GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if (( GPUS >= 2 )); then DIST=(); DIST_NOTE="nccl, 2 GPUs"
else DIST=(env QUALICLIP_DIST_BACKEND=gloo); DIST_NOTE="gloo, ranks share one device"; fi
TORCHRUN=("${DIST[@]}" "$PY" -m torch.distributed.run --standalone --nproc_per_node 2)

# R NAME sets REC: python through the recorder of step NAME (exit status, time, peak memory);
# "${REC[@]:1}" is the same without the interpreter, for torchrun
R() { REC=("$PY" benchmarks/gpu_check.py run --record "$OUT/records/$1.json" --); }

if [[ -n ${GC_DEMO:-} ]]; then
  skip demo_data "GC_DEMO: demo data from $GC_DEMO"
else
  R demo_data
  step demo_data 120 "demo datasets" "${REC[@]}" data/demo.py --out "$DEMO"
fi
R device_checks
step device_checks 180 "host copies, TF32, host syncs" "${REC[@]}" benchmarks/gpu_check.py \
  device --device "$DEV" --model_size "$SIZE" --crop_size "$CROP" --amp bf16
BENCH=(benchmarks/bench.py --device "$DEV" --model_size "$SIZE" --amp bf16 "${BENCH_COUNTS[@]}"
       --json)
R bench_bf16
step bench_bf16 150 "bench.py, bf16" "${REC[@]}" "${BENCH[@]}"
R finetune_bf16
step finetune_bf16 120 "train_swin.py, bf16" "${REC[@]}" train_swin.py "${TRAIN[@]}" "${FT[@]}" \
  --amp bf16 --model_name ft_bf16
R finetune_fp16_acc2
step finetune_fp16_acc2 120 "train_swin.py, fp16, --accum_steps 2" "${REC[@]}" train_swin.py \
  "${TRAIN[@]}" "${FT[@]}" --amp fp16 --accum_steps 2 --model_name ft_fp16
R pretrain_bf16
step pretrain_bf16 120 "pretrain_qualiclip.py, bf16" "${REC[@]}" pretrain_qualiclip.py \
  "${TRAIN[@]}" "${PT[@]}" --amp bf16 --model_name pt_bf16
R pretrain_fp16_acc2
step pretrain_fp16_acc2 120 "pretrain_qualiclip.py, fp16, --accum_steps 2" "${REC[@]}" \
  pretrain_qualiclip.py "${TRAIN[@]}" "${PT[@]}" --amp fp16 --accum_steps 2 --model_name pt_fp16
# the pretraining runs' metrics.jsonl give the summary their throughput
keep_metrics() {
  [[ -f $RUNS/$1/metrics.jsonl ]] && cp "$RUNS/$1/metrics.jsonl" "$OUT/metrics/$2.jsonl"
}
keep_metrics pt_bf16 pretrain_bf16
keep_metrics pt_fp16 pretrain_fp16_acc2
R torchrun_finetune
step torchrun_finetune 180 "train_swin.py, 2 ranks, $DIST_NOTE" "${TORCHRUN[@]}" "${REC[@]:1}" \
  train_swin.py "${TRAIN[@]}" "${FT[@]}" --amp bf16 --model_name ddp_ft
R torchrun_pretrain
step torchrun_pretrain 180 "pretrain_qualiclip.py, 2 ranks, $DIST_NOTE" "${TORCHRUN[@]}" \
  "${REC[@]:1}" pretrain_qualiclip.py "${TRAIN[@]}" "${PT[@]}" --amp bf16 --model_name ddp_pt
keep_metrics ddp_pt torchrun_pretrain
step kill_resume 240 "train_swin.py killed after epoch 1, then --resume" "$PY" \
  benchmarks/gpu_check.py kill-resume --run_dir "$RUNS/resumed" -- "$PY" train_swin.py \
  "${TRAIN[@]}" "${FT[@]}" --amp bf16 --model_name resumed --epochs 3 --max_steps_per_epoch 2
mkdir -p "$WORK/few"
find "$DEMO/koniq10k/1024x768" -name '*.jpg' 2> /dev/null | sort | head -4 | \
  while read -r image; do ln -s "$image" "$WORK/few/"; done
R load_on_cpu
step load_on_cpu 120 "the $DEV-saved best_model.pkl scored with --device cpu" "${REC[@]}" \
  test_swin.py --device cpu --model_path "$RUNS/ft_bf16/best_model.pkl" --images "$WORK/few" \
  --test_patches 1 --batch_size 2 --num_workers 0 --log_dir "$OUT/logs" \
  --cache_dir "$WORK/cache" --output "$OUT/load_on_cpu.json" \
  --scores_csv "$OUT/load_on_cpu_scores.csv" --overwrite
# last: compiling takes minutes, and the budget it leaves is all it may use
if [[ $COMPILE == 1 ]]; then
  R bench_compile
  step bench_compile 240 "bench.py, bf16 + --compile, training step" "${REC[@]}" "${BENCH[@]}" \
    --compile --sections train
else
  skip bench_compile "GC_COMPILE=0 (compiling on a CPU takes longer than this check)"
fi

echo
"$PY" benchmarks/gpu_check.py summary --dir "$OUT" | tee "$OUT/summary.txt"
exit "${PIPESTATUS[0]}"
