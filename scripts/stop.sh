#!/usr/bin/env bash
# Stop the worker, then the server, that scripts/serve.sh started (by the process ids recorded).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PREFECT_HOME="${PREFECT_HOME:-$PWD/.prefect}"

# serve.sh starts the worker under `set -m`, so its pid is also the id of its own process group,
# which holds what it spawned (flow-run subprocesses): signal the group.
stop() {  # stop <name>: SIGTERM, again after 5 s if still alive, SIGKILL after 30 s
  local file="$PREFECT_HOME/$1.pid" pid
  [[ -f "$file" ]] || return 0
  pid=$(cat "$file")
  if kill -0 -- "-$pid" 2>/dev/null; then
    kill -TERM -- "-$pid"
    for i in $(seq 60); do
      kill -0 -- "-$pid" 2>/dev/null || break
      if [[ $i == 10 ]]; then kill -TERM -- "-$pid" 2>/dev/null || true; fi
      sleep 0.5
    done
    if kill -0 -- "-$pid" 2>/dev/null; then kill -KILL -- "-$pid"; fi
    echo "stopped Prefect $1 (pid $pid)"
  fi
  rm -f "$file"
}

stop worker  # first: a worker outliving its server retries forever
python -m rlvr.server stop
