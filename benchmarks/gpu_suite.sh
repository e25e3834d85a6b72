#!/usr/bin/env bash
# One command for a GPU (see benchmarks/gpu_suite.py and BENCHMARKS.md, "GPU suite: the one
# command"): inference, the training step and its loader, the reference side by side, peak
# memory -> OUT/gpu_suite.json + OUT/gpu_suite.md in <= 8 minutes; or a model in M minutes.
#
#   benchmarks/gpu_suite.sh [--out DIR]
#   benchmarks/gpu_suite.sh --train configs/learning.py --minutes 5 [--photos DIR] [--config.K=V]
#   benchmarks/gpu_suite.sh --dry-run [--train ...]     # CPU, tiny sizes, seconds
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" -m benchmarks.gpu_suite "$@"
