#!/usr/bin/env bash
# One device check from a fresh clone, after the README's install:
#   python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]'
#   bash bench/device_check.sh                 # CUDA: paper configuration (<= 8 min); CPU: small form (<= 5 min)
#   bash bench/device_check.sh --parts loso    # one part; --limit-scale 2 doubles every time limit
# Writes metrics/bench_device.json (host facts and timings; not a DVC metric) and prints a table.
# Figures and what they mean: README, "Speed and GPUs". Needs no data, weights or network.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
exec "$PYTHON" bench/device_check.py "$@"
