#!/usr/bin/env bash
# Start a local Prefect server (loopback only), the `rlvr-lens` process work pool, every
# deployment in prefect.yaml, and a worker. Stop them with scripts/stop.sh.
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
HOST=127.0.0.1
PORT="${PREFECT_PORT:-4200}"
POOL=rlvr-lens
export PREFECT_API_URL="http://$HOST:$PORT/api"
mkdir -p "$PREFECT_HOME"

for name in server worker; do
  if [[ -f "$PREFECT_HOME/$name.pid" ]] && kill -0 "$(cat "$PREFECT_HOME/$name.pid")" 2>/dev/null; then
    echo "a Prefect $name is already running (pid $(cat "$PREFECT_HOME/$name.pid")); run scripts/stop.sh first" >&2
    exit 1
  fi
done

prefect server start --host "$HOST" --port "$PORT" >"$PREFECT_HOME/server.log" 2>&1 &
echo $! >"$PREFECT_HOME/server.pid"

# the first start migrates the database: allow a couple of minutes on a busy machine
for _ in $(seq 240); do
  if python -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
      "$PREFECT_API_URL/health" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$(cat "$PREFECT_HOME/server.pid")" 2>/dev/null; then
    echo "the Prefect server exited; see $PREFECT_HOME/server.log" >&2
    exit 1
  fi
  sleep 0.5
done
python -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=5)" \
  "$PREFECT_API_URL/health"

prefect --no-prompt work-pool create "$POOL" --type process --overwrite >/dev/null
prefect --no-prompt deploy --all >"$PREFECT_HOME/deploy.log" 2>&1 \
  || { cat "$PREFECT_HOME/deploy.log" >&2; exit 1; }

prefect worker start --pool "$POOL" --type process --install-policy never \
  >"$PREFECT_HOME/worker.log" 2>&1 &
echo $! >"$PREFECT_HOME/worker.pid"

echo "Prefect UI and API: http://$HOST:$PORT  (logs and pids in $PREFECT_HOME)"
echo "export PREFECT_API_URL=$PREFECT_API_URL"
echo "prefect deployment ls; prefect deployment run 'reproduce/default' --watch"
