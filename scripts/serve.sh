#!/usr/bin/env bash
# Start a local Prefect server (loopback only; `python -m rlvr.server start`, reused if one is
# running), the `rlvr-lens` process work pool, every deployment in prefect.yaml, and a worker.
# Stop them with scripts/stop.sh. `make reproduce` reuses this server while it runs.
#
#   scripts/serve.sh              # UI and API on http://127.0.0.1:4200
#   PREFECT_PORT=4300 PREFECT_HOME=/tmp/ph scripts/serve.sh
#
# State, logs and process ids live in $PREFECT_HOME (default: .prefect/ in the repository).
# Before binding to anything but 127.0.0.1, protect the API: see README ("Prefect server").
set -euo pipefail
set -m  # jobs get their own process group: a background worker then honours the first SIGTERM
cd "$(dirname "$0")/.."

ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH"
export PREFECT_HOME="${PREFECT_HOME:-$ROOT/.prefect}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export DVC_SITE_CACHE_DIR="${DVC_SITE_CACHE_DIR:-$ROOT/.dvc-site-cache}"
PORT="${PREFECT_PORT:-4200}"
POOL=rlvr-lens
unset PREFECT_API_URL  # the server below says where it is
mkdir -p "$PREFECT_HOME"

if [[ -f "$PREFECT_HOME/worker.pid" ]] && kill -0 "$(cat "$PREFECT_HOME/worker.pid")" 2>/dev/null; then
  echo "a Prefect worker is already running (pid $(cat "$PREFECT_HOME/worker.pid")); run scripts/stop.sh first" >&2
  exit 1
fi

# the first start migrates the database: allow a few minutes on a busy machine
PREFECT_API_URL=$(python -m rlvr.server start --port "$PORT")
export PREFECT_API_URL

prefect --no-prompt work-pool create "$POOL" --type process --overwrite >/dev/null
prefect --no-prompt deploy --all >"$PREFECT_HOME/deploy.log" 2>&1 \
  || { cat "$PREFECT_HOME/deploy.log" >&2; exit 1; }

prefect worker start --pool "$POOL" --type process --install-policy never \
  >"$PREFECT_HOME/worker.log" 2>&1 &
echo $! >"$PREFECT_HOME/worker.pid"

echo "Prefect UI and API: ${PREFECT_API_URL%/api}  (logs and pids in $PREFECT_HOME)"
echo "export PREFECT_API_URL=$PREFECT_API_URL"
echo "prefect deployment ls; prefect deployment run 'reproduce/default' --watch"
