#!/usr/bin/env bash
# Server CPU per blocking echo run (no delay), for two builds one after the other in one run.
# Usage: bench/cpu-per-request.sh BASE_DIR HEAD_DIR   (each a checkout with dist/ built and node_modules)
# e.g.   git worktree add /tmp/rw-base 2702415 && ln -s "$PWD/node_modules" /tmp/rw-base/ &&
#        (cd /tmp/rw-base && npx tsc -p tsconfig.build.json) && npm run build && bench/cpu-per-request.sh /tmp/rw-base .
# CPU time (utime + stime of the server process) over 40,000 requests after 20,000 of warm-up,
# 16 connections: a figure that other load on the machine does not move much, unlike req/s.
set -euo pipefail
measure() {
  local dir=$1 port=$2
  (cd "$dir" && PORT=$port HOST=127.0.0.1 LOG_LEVEL=warn RUNWAY_ECHO_DELAY_MS=0 exec node dist/src/server.js >/dev/null 2>&1) &
  local pid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.2; done
  local body='{"input":"the quick brown fox jumps over the lazy dog"}'
  npx autocannon -c 16 -a 20000 -m POST -H content-type=application/json -b "$body" "http://127.0.0.1:$port/runs" >/dev/null 2>&1
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  local out; out=$(npx autocannon -c 16 -a 40000 -m POST -H content-type=application/json -b "$body" "http://127.0.0.1:$port/runs" 2>&1 | grep 'requests in')
  read -r u2 s2 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  kill "$pid"
  echo "$dir: $out; server CPU per request: $(( ((u2 - u1) + (s2 - s1)) * 1000000 / $(getconf CLK_TCK) / 40000 )) µs"
}
for round in 1 2; do
  measure "$1" 18191
  measure "$2" 18192
done
