#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md and RESULTS.md in one go (aimed at 10 minutes on one H100 or H200;
# its first run, on one H200 on 2026-11-27, did not reach its end in 570 s: BENCHMARKS.md):
#   1. the environment (GPU, driver, JAX);
#   2. shape_scenes/64px_mini built on the host's cores, while the ray tracer renders a chunk of the same
#      scenes on the GPU and on the CPU (render_check.json: time, and whether the PNG bytes are the same);
#   3. the grid_4min config trained for TRAIN_SECONDS (default 240) and evaluated (K = 1..4 context views);
#   4. the training-step benchmark at the paper's batch (64 scenes x 1024 rays x 64+64 samples): grid and
#      global in bfloat16, grid with a profile (op breakdown), the pipeline with the host's cores;
#   5. the memory plan of grid in float32 on an 80 GiB budget: the run starts (or stops with the plan)
#      and the seconds to its first step are recorded.
# For the step's speed alone (time, op breakdown, bytes per op, in about 90 s per config), use
# experiments/gpu_profile.sh instead: BENCHMARKS.md "Where the step's time goes on one GPU".
# Each phase has a time limit and the next one runs whatever happened; on the first run (2026-11-27, one
# H200) a GPU compile of the full step took a minute or more, so phases 4-5 need the limits below.
# Usage: [TRAIN_SECONDS=240] experiments/gpu_suite.sh [OUT_DIR] [WORK_DIR]   (default out/gpu_suite, OUT_DIR/work)
# The results land in OUT_DIR (suite.log, *.json, train_64px_metrics.jsonl, eval.tar.gz: the evaluation's
# report and pictures); the dataset, the runs and the profile in WORK_DIR.
set -u
OUT_DIR=${1:-out/gpu_suite}
WORK_DIR=${2:-$OUT_DIR/work}
DATA_DIR=$WORK_DIR/data
TRAIN_SECONDS=${TRAIN_SECONDS:-240}
PY=${PY:-python3}
CORES=$(nproc)
WORKERS=$(( CORES > 9 ? 8 : CORES - 1 ))
CFG=experiments/configs/shape_scenes.py
mkdir -p "$OUT_DIR" "$DATA_DIR"
LOG="$OUT_DIR/suite.log"
export PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$WORK_DIR/jax_cache}  # a rerun skips the compiles
t0=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - t0 )) s] $*" | tee -a "$LOG"; }

stamp "1. environment"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc;
  $PY -c "import jax; print(jax.__version__, jax.devices())"; } >>"$LOG" 2>&1

stamp "2. build shape_scenes/64px_mini on $CORES cores; the GPU render check beside it"
JAX_PLATFORMS=cpu $PY -m experiments.build shape_scenes/64px_mini --data_dir="$DATA_DIR" >>"$LOG" 2>&1 &
build_pid=$!
timeout 120 $PY -m experiments.render_check --spec=64px_mini --json="$OUT_DIR/render_check.json" \
  >>"$LOG" 2>&1 || stamp "render check failed or timed out"
wait $build_pid || stamp "build failed"

stamp "3. grid_4min: train $TRAIN_SECONDS s, evaluate"
timeout $(( TRAIN_SECONDS + 150 )) $PY -m experiments.train --config=$CFG:grid_4min \
  --config.data.data_dir="$DATA_DIR" \
  --config.train.time_budget_minutes=$(awk "BEGIN{print $TRAIN_SECONDS/60}") --workdir="$WORK_DIR/run_64px" \
  >>"$LOG" 2>&1 || stamp "64px training failed or timed out"
cp "$WORK_DIR/run_64px/metrics.jsonl" "$OUT_DIR/train_64px_metrics.jsonl" 2>/dev/null
timeout 180 $PY -m experiments.evaluate --workdir="$WORK_DIR/run_64px" --num_scenes=64 >>"$LOG" 2>&1 \
  || stamp "64px evaluation failed or timed out"
tar czf "$OUT_DIR/eval.tar.gz" --exclude=checkpoints -C "$WORK_DIR" run_64px 2>/dev/null
stamp "4. benchmarks at the paper's batch"
timeout 240 $PY -m experiments.benchmark --config=$CFG:grid --config.model.dtype=bfloat16 \
  --config.data.name=shape_scenes/64px_mini --config.data.data_dir="$DATA_DIR" --steps=10 --warmup=2 \
  --pipeline_workers=$WORKERS --pipeline_batches=20 --profile_dir="$WORK_DIR/profile_grid" \
  --json="$OUT_DIR/bench_grid_bf16.json" >>"$LOG" 2>&1 || stamp "grid benchmark failed or timed out"
timeout 180 $PY -m experiments.benchmark --config=$CFG:global --config.model.dtype=bfloat16 \
  --config.data.name=shape_scenes/64px_mini --config.data.data_dir="$DATA_DIR" --steps=10 --warmup=2 \
  --pipeline_workers=$WORKERS --pipeline_batches=20 \
  --json="$OUT_DIR/bench_global_bf16.json" >>"$LOG" 2>&1 || stamp "global benchmark failed or timed out"

stamp "5. memory plan: grid float32, 80 GiB"
start=$(date +%s)
timeout 240 $PY -m experiments.train --config=$CFG:grid --config.train.memory_limit_gib=80 \
  --config.data.name=shape_scenes/64px_mini --config.data.data_dir="$DATA_DIR" --config.train.num_steps=2 \
  --config.train.log_every=1 --config.train.image_every=0 --workdir="$WORK_DIR/run_f32_plan" >>"$LOG" 2>&1 \
  || stamp "grid float32 run stopped (see the plan above)"
stamp "grid float32 at 80 GiB: $(( $(date +%s) - start )) s from launch to exit (2 steps; the first step line says when it came)"

stamp "done"
