#!/usr/bin/env bash
# GPU check (no download): scorer / sampler / cross-sampler throughput and MFU at Qwen2.5-1.5B's
# shape on one GPU. Needs only torch + transformers + this checkout (no vLLM).
#   benchmarks/gpu_check.sh              # on a GPU machine, under 8 minutes
#   benchmarks/gpu_check.sh --dry-run    # small shape on the CPU
# Extra arguments go to benchmarks/gpu_check.py; the JSON summary is printed and written to
# ${OUT:-.}/gpu_check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out="${OUT:-.}/gpu_check.json"
# a hard stop below the 8-minute budget, so a slow stage cannot eat a lent machine's time
exec timeout --signal=INT --kill-after=10 470 "$python" benchmarks/gpu_check.py --out "$out" "$@"
