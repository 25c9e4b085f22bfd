#!/usr/bin/env bash
# Time and peak memory of each family stage (prepare, base, rl, sft, evaluate), rebuilt from
# scratch with `dvc repro --force --single-item`. Run from the repo root with the Makefile's
# environment (e.g. `make install` first, then `bash benchmarks/bench_family.sh`).
# Prints one line per stage: wall seconds and peak RSS (MiB) of the stage's largest process.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DO_NOT_TRACK=1 \
  PREFECT_HOME="$PWD/.prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false \
  DVC_SITE_CACHE_DIR="$PWD/.dvc-site-cache" PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120
log=$(mktemp)
total=0
for stage in prepare base rl sft evaluate; do
  /usr/bin/time -v dvc repro --force --single-item "$stage" >"$log" 2>&1 || { cat "$log"; exit 1; }
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log" |
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$log")
  printf '%-9s %7.1f s  peak RSS %5s MiB\n' "$stage" "$wall" "$rss"
  total=$(awk -v a="$total" -v b="$wall" 'BEGIN {print a + b}')
done
printf '%-9s %7.1f s\n' total "$total"
rm -f "$log"
