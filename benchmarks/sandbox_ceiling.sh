#!/usr/bin/env bash
# Sandbox ceiling: requests/s each server candidate sustains with the sandbox's handler behind it.
# The server is pinned to CPU 0 and wrk to CPU 1 so that they don't share a core.
# usage: benchmarks/sandbox_ceiling.sh [duration, default 10s]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
PY=.venv/bin/python
SID=HXSANDBOX00001IN
export PYTHONPATH=benchmarks

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened" >&2; return 1
}

measure() {  # name port command...
  local name=$1 port=$2; shift 2
  taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_port "$port"
  for n in 100 1; do
    taskset -c 1 wrk -t1 -c64 -d2s -s benchmarks/sandbox_ceiling.lua \
      "http://127.0.0.1:$port/v1/$SID/sms" -- "$n" >/dev/null   # warm-up
    local out
    out=$(taskset -c 1 wrk -t1 -c64 -d"$DURATION" --latency -s benchmarks/sandbox_ceiling.lua \
      "http://127.0.0.1:$port/v1/$SID/sms" -- "$n")
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/non-2xx/ {print $3}' <<<"$out")
    printf '%-28s recipients=%-3s %10s req/s  p50 %-8s p99 %-8s non-2xx %s\n' \
      "$name" "$n" "$rps" "$p50" "$p99" "${errors:-0}"
  done
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

measure "asyncio.Protocol+httptools" 8787 \
  $PY -m kaleyra_async sandbox --port 8787 --fail-numbers none
measure "uvicorn (httptools, asyncio)" 8788 \
  .venv/bin/uvicorn sandbox_ceiling_asgi:app --port 8788 --http httptools --loop asyncio \
  --no-access-log --log-level warning
if [ -x .venv/bin/granian ]; then
  measure "granian (asgi, 1 worker)" 8789 \
    .venv/bin/granian --interface asgi --port 8789 --workers 1 --runtime-threads 1 \
    --loop asyncio --log-level warning sandbox_ceiling_asgi:app
fi
