#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md and RESULTS.md in one go, in named phases (default: all, in this order):
#   env        the GPU, driver, JAX;
#   build      shape_scenes/64px_mini built on the host's cores (the 64px spec, 512 training scenes);
#   render     the ray tracer renders a chunk of the same scenes on the GPU and on the CPU (render_check.json:
#              time, and whether the PNG bytes are the same);
#   train64    the grid_4min config trained for TRAIN_SECONDS (default 240), evaluated (K = 1..4 context
#              views, EVAL_SCENES (default 64) test scenes), and the per-scene NeRF fitted to the first
#              BASELINE_SCENES (default 32; 0: none) of the same test scenes;
#   generate   the 64px model's prior sampled (experiments.generate: pictures, and the sample metrics against
#              GEN_SCENES (default 128) real scenes), packed into eval.tar.gz beside the evaluation;
#   plan       the memory plan of grid in float32 on an 80 GiB budget: the run starts (or stops with the plan)
#              and the seconds to its first step are recorded, PLAN_LAUNCHES times (default 2) in fresh run
#              folders: the first launch compiles, the next ones read the compilation cache (a relaunch);
#   pipeline   the training pipeline's scenes/s on 64px_mini in batches of 64, in-process, with 1 worker and
#              with the host's cores less 2;
#   bench      the training-step benchmark at the paper's batch (64 scenes x 1024 rays x 64+64 samples): grid
#              and global in bfloat16, grid with a profile (op breakdown), the pipeline beside it.
# For the step's speed alone (time, op breakdown, bytes per op, in about 90 s per config), use
# experiments/gpu_profile.sh instead: BENCHMARKS.md "Where the step's time goes on one GPU".
# Each phase has a time limit, cut to what is left of DEADLINE seconds (default 3600) since the start; a phase
# that fails or times out does not stop the next, and one with under 20 s left is skipped.
# Usage: [PHASES="build train64"] [TRAIN_SECONDS=240] [DEADLINE=540] [TRAIN_FLAGS=...] experiments/gpu_suite.sh
#          [OUT_DIR] [WORK_DIR]
#   (defaults out/gpu_suite, OUT_DIR/work)
# The results land in OUT_DIR (suite.log, *.json, train_64px_metrics.jsonl, eval.tar.gz: the evaluation's
# report and pictures); the dataset, the runs and the profile in WORK_DIR.
set -u
OUT_DIR=${1:-out/gpu_suite}
WORK_DIR=${2:-$OUT_DIR/work}
DATA_DIR=$WORK_DIR/data
PHASES=${PHASES:-env build render train64 generate plan pipeline bench}
TRAIN_SECONDS=${TRAIN_SECONDS:-240}
BASELINE_SCENES=${BASELINE_SCENES:-32}
EVAL_SCENES=${EVAL_SCENES:-64}
GEN_SCENES=${GEN_SCENES:-128}
PLAN_LAUNCHES=${PLAN_LAUNCHES:-2}
TRAIN_FLAGS=${TRAIN_FLAGS:-}  # more config overrides for train64 (e.g. a smaller batch to try the script on a CPU)
DEADLINE=${DEADLINE:-3600}
PY=${PY:-python3}
CORES=$(nproc)
WORKERS=$(( CORES > 9 ? 8 : CORES - 1 ))
CFG=experiments/configs/shape_scenes.py
DATA_FLAGS="--config.data.name=shape_scenes/64px_mini --config.data.data_dir=$DATA_DIR"
mkdir -p "$OUT_DIR" "$DATA_DIR"
LOG="$OUT_DIR/suite.log"
export PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$WORK_DIR/jax_cache}  # a rerun skips the compiles
t0=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - t0 )) s] $*" | tee -a "$LOG"; }
# pack: the 64px run's evaluation, samples and logs (not its checkpoints) into OUT_DIR/eval.tar.gz.
pack() { tar czf "$OUT_DIR/eval.tar.gz" --exclude=checkpoints -C "$WORK_DIR" run_64px 2>/dev/null; }
wants() { case " $PHASES " in *" $1 "*) return 0;; esac; return 1; }
# limit SECONDS CMD...: CMD under `timeout`, at most SECONDS and at most what is left before DEADLINE.
limit() {
  local want=$1; shift
  local left=$(( DEADLINE - ($(date +%s) - t0) ))
  if [ $left -lt 20 ]; then stamp "skipped (${left} s left): $*"; return 124; fi
  timeout $(( want < left ? want : left )) "$@" >>"$LOG" 2>&1
}

if wants env; then
  stamp "env"
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc;
    $PY -c "import jax; print(jax.__version__, jax.devices())"; } >>"$LOG" 2>&1
fi

if wants build; then
  stamp "build shape_scenes/64px_mini on $CORES cores"
  JAX_PLATFORMS=cpu limit 300 $PY -m experiments.build shape_scenes/64px_mini --data_dir="$DATA_DIR" \
    || stamp "build failed or timed out"
fi

if wants render; then
  stamp "render check: the same scenes on the GPU and on the CPU"
  limit 120 $PY -m experiments.render_check --spec=64px_mini --json="$OUT_DIR/render_check.json" \
    || stamp "render check failed or timed out"
fi

if wants train64; then
  stamp "train64: grid_4min for $TRAIN_SECONDS s"
  limit $(( TRAIN_SECONDS + 150 )) $PY -m experiments.train --config=$CFG:grid_4min \
    --config.data.data_dir="$DATA_DIR" \
    --config.train.time_budget_minutes=$(awk "BEGIN{print $TRAIN_SECONDS/60}") --workdir="$WORK_DIR/run_64px" $TRAIN_FLAGS \
    || stamp "64px training failed or timed out"
  cp "$WORK_DIR/run_64px/metrics.jsonl" "$OUT_DIR/train_64px_metrics.jsonl" 2>/dev/null
  stamp "train64: evaluate ($EVAL_SCENES test scenes)"
  limit 180 $PY -m experiments.evaluate --workdir="$WORK_DIR/run_64px" --num_scenes=$EVAL_SCENES \
    || stamp "64px evaluation failed or timed out"
  # Packed now and again after the baseline: the evaluation comes back even if the deadline cuts the baseline.
  pack
  if [ "$BASELINE_SCENES" -gt 0 ]; then
    stamp "train64: the per-scene NeRF on the first $BASELINE_SCENES test scenes"
    limit 150 $PY -m experiments.nerf_baseline --workdir="$WORK_DIR/run_64px" --num_scenes=$BASELINE_SCENES \
      || stamp "NeRF baseline failed or timed out"
    pack
  fi
fi

if wants generate; then
  stamp "generate: the 64px model's prior, metrics against $GEN_SCENES scenes"
  limit 180 $PY -m experiments.generate --workdir="$WORK_DIR/run_64px" --metric_scenes=$GEN_SCENES \
    || stamp "generation failed or timed out"
  pack
fi

if wants plan; then
  for i in $(seq 1 "$PLAN_LAUNCHES"); do
    stamp "plan: grid float32, 80 GiB, launch $i of $PLAN_LAUNCHES"
    start=$(date +%s)
    rm -rf "$WORK_DIR/run_f32_plan_$i"  # a fresh run each time: a relaunch, not a resume
    limit 240 $PY -m experiments.train --config=$CFG:grid --config.train.memory_limit_gib=80 $DATA_FLAGS \
      --config.train.num_steps=2 --config.train.log_every=1 --config.train.image_every=0 \
      --workdir="$WORK_DIR/run_f32_plan_$i" || stamp "grid float32 run stopped (see the plan above)"
    stamp "grid float32 at 80 GiB, launch $i: $(( $(date +%s) - start )) s from launch to exit (2 steps; the first step line says when it came)"
  done
fi

if wants pipeline; then
  stamp "pipeline: 64px_mini, batches of 64 scenes, 0, 1 and $(( CORES - 2 )) workers"
  JAX_PLATFORMS=cpu limit 120 $PY -m experiments.benchmark_data --config=64px_mini --loader_only \
    --data_dir="$DATA_DIR" --loader_workers=0,1,$(( CORES - 2 )) --batch_size=64 \
    || stamp "pipeline measurement failed or timed out"
fi

if wants bench; then
  stamp "bench: the training step at the paper's batch"
  limit 240 $PY -m experiments.benchmark --config=$CFG:grid --config.model.dtype=bfloat16 $DATA_FLAGS \
    --steps=10 --warmup=2 --pipeline_workers=$WORKERS --pipeline_batches=20 \
    --profile_dir="$WORK_DIR/profile_grid" --json="$OUT_DIR/bench_grid_bf16.json" \
    || stamp "grid benchmark failed or timed out"
  limit 180 $PY -m experiments.benchmark --config=$CFG:global --config.model.dtype=bfloat16 $DATA_FLAGS \
    --steps=10 --warmup=2 --pipeline_workers=$WORKERS --pipeline_batches=20 \
    --json="$OUT_DIR/bench_global_bf16.json" || stamp "global benchmark failed or timed out"
fi

stamp "done"
