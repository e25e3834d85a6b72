#!/usr/bin/env bash
# The CPU figures of BENCHMARKS.md, one run after another; each run starts only when
# the machine's 1-minute load average is below MAXLOAD (others share this machine).
#
#   benchmarks/cpu_suite.sh                 # writes benchmarks/results/cpu_*.json and *.log (commit them)
#   OUT=/tmp/b MAXLOAD=1.0 benchmarks/cpu_suite.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REF=${REF:-ref/Shift-Net_pytorch}
REFPY=${REFPY:-.venv-ref/bin/python}
OUT=${OUT:-benchmarks/results}
MAXLOAD=${MAXLOAD:-1.5}
mkdir -p "$OUT"

wait_quiet() {
  for _ in $(seq 1 180); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk "BEGIN { exit !($load < $MAXLOAD) }"; then return 0; fi
    sleep 10
  done
  echo "warning: 1-minute load still >= $MAXLOAD after 30 min; running anyway" >&2
}

run() {  # run NAME ARGS...
  local name=$1; shift
  wait_quiet
  echo "== $name  (load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$PY" benchmarks/bench.py --device cpu --threads 2 --ngf 64 --sizes 256 "$@" \
    --json "$OUT/$name.json" 2>&1 | tee "$OUT/$name.log"
}

SIDE=(--reference "$REF" --reference-python "$REFPY")
AUTO=(--conv-impl auto)   # the model's default: per-layer conv formulations on CPU
LAX=(--conv-impl lax)     # plain lax convolutions everywhere (the model before conv_impl)

# float32, side by side with the reference
run cpu_f32_auto --dtypes float32 --batches 1,8 --train-batches 1,4 --repeats 7 \
  --train-repeats 3 --loader-steps 3 --only infer,train "${AUTO[@]}" "${SIDE[@]}"
run cpu_f32_lax --dtypes float32 --batches 1,8 --train-batches 1,4 --repeats 7 \
  --train-repeats 3 --loader-steps 3 --only infer,train "${LAX[@]}" "${SIDE[@]}"
# bfloat16 (no native bf16 arithmetic on this CPU)
run cpu_bf16_auto --dtypes bfloat16 --batches 1,8 --train-batches 1 --repeats 5 \
  --train-repeats 3 --loader-steps 0 --only infer,train "${AUTO[@]}"
run cpu_bf16_lax --dtypes bfloat16 --batches 1 --train-batches 1 --repeats 5 \
  --train-repeats 3 --loader-steps 0 --only infer,train "${LAX[@]}"
# the shift alone, dense vs tiled, each case in a fresh process (peak RSS per case)
run cpu_shift --dtypes float32 --sizes 256,512 --shift-sizes 256,512,1024 \
  --shift-batches 1 --shift-tiles 0,2048 --shift-dense-max 128 --repeats 5 --only shift \
  --isolate
# where the time goes: each layer alone in every formulation, and the whole generator
run cpu_profile_auto --dtypes float32 --repeats 5 --only profile "${AUTO[@]}"
run cpu_profile_lax --dtypes float32 --repeats 5 --only profile "${LAX[@]}"
