#!/usr/bin/env bash
# Where the training step's device time goes, for several configs in one short lease of a GPU:
# for each NAME "ARGS" pair, `experiments.benchmark --step_only --profile_dir` (compile, time, profile the
# step on synthetic batches: no dataset, no CPU reference compile, no renderer, no pipeline), writing
# OUT_DIR/NAME.json (timing, MFU, op breakdown) and the op table into OUT_DIR/profile.log. The first pair's
# optimised HLO (the fusions the profile's op names refer to) goes to OUT_DIR/NAME_hlo.txt.gz.
# Usage: experiments/gpu_profile.sh OUT_DIR NAME "CONFIG ARGS" [NAME "CONFIG ARGS" ...]
#   e.g. experiments/gpu_profile.sh out/prof grid_bf16 "--config=experiments/configs/shape_scenes.py:grid
#        --config.model.dtype=bfloat16"
# ARGS words that start with --xla_ go to XLA_FLAGS, e.g. --xla_gpu_enable_command_buffer= (CUDA graphs
# off: the profile then sees each kernel rather than one graph).
# Each benchmark has LIMIT seconds (default 200); a failed or timed-out one does not stop the next.
set -u
OUT_DIR=$1; shift
PY=${PY:-python3}
LIMIT=${LIMIT:-200}
WORK=$(mktemp -d)
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/profile.log"
export PYTHONUNBUFFERED=1
t0=$(date +%s)
stamp() { echo "=== [$(( $(date +%s) - t0 )) s] $*" | tee -a "$LOG"; }
first=1
while [ $# -ge 2 ]; do
  name=$1; args=$2; shift 2
  stamp "$name: $args"
  xla=${XLA_FLAGS:-}; rest=""
  for w in $args; do case $w in --xla_*) xla="$xla $w";; *) rest="$rest $w";; esac; done
  if [ $first = 1 ]; then xla="$xla --xla_dump_to=$WORK/hlo --xla_dump_hlo_as_text --xla_dump_hlo_module_re=jit_step"; fi
  # shellcheck disable=SC2086
  XLA_FLAGS="$xla" timeout "$LIMIT" $PY -m experiments.benchmark $rest --step_only --steps=10 --warmup=2 \
    --profile_dir="$WORK/profile_$name" --json="$OUT_DIR/$name.json" >>"$LOG" 2>&1 \
    || stamp "$name failed or timed out"
  if [ $first = 1 ]; then
    hlo=$(ls -S "$WORK"/hlo/*jit_step*after_optimizations.txt 2>/dev/null | head -1)
    [ -n "$hlo" ] && gzip -c "$hlo" >"$OUT_DIR/${name}_hlo.txt.gz"
    first=0
  fi
done
stamp "done"
