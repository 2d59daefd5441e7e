#!/usr/bin/env bash
# Instructions per request of one server, counted by valgrind's callgrind on the main thread only:
# deterministic where this VM's timings drift by tens of percent, so two builds can be compared
# to ~1-2% (run them at the same time, in two terminals, for the fairest pair).
#
#   bash bench/callgrind-count.sh dist                 # Runway from a build (npm run build first)
#   bash bench/callgrind-count.sh /tmp/other/dist      # another build (its own node_modules not needed)
#   bash bench/callgrind-count.sh bare                 # bench/bare-server.ts
#   WARM=20000 COUNT=3000 PORT=18500 bash bench/callgrind-count.sh dist
#
# Why the main thread only: under valgrind V8's background threads keep compiling through the
# counted window (15-22% of all instructions, in both servers), which the server at full speed
# does not. Why a figure without V8's Date-to-ISO formatting: Runway formats a timestamp at most
# once per millisecond, which under valgrind (a run takes over a millisecond) is several times a
# request and at full speed about once per ten; the bare route formats one per request, which is
# its real cost and stays in its figure (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: callgrind-count.sh <build dir | bare>}
warm=${WARM:-20000}
count=${COUNT:-3000}
port=${PORT:-18500}
for tool in valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" > /dev/null || { echo "needs $tool (Debian: apt-get install valgrind)" >&2; exit 1; }
done
if [ "$target" = bare ]; then entry=(--import tsx bench/bare-server.ts); else entry=("$target/src/server.js"); fi
# valgrind names its control pipe after USER and HOST, and callgrind_control finds it by the same
# names: both must see them set alike (HOST is also the address the server listens on).
export USER=${USER:-$(id -un)} LOGNAME=${LOGNAME:-$(id -un)} HOST=127.0.0.1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
PORT=$port LOG_LEVEL=warn RUNWAY_ECHO_DELAY_MS=0 \
  valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no --callgrind-out-file="$out/cg.out" \
  node "${entry[@]}" > "$out/server.log" 2>&1 &
vp=$!
url=http://127.0.0.1:$port/runs
for _ in $(seq 300); do curl -s -o /dev/null -X POST -H content-type:application/json -d '{"input":"x"}' "$url" && break; sleep 1; done
body='{"input":"hello from the benchmark, one word at a time"}'
# Past the JIT's warm-up and, with 10,000 finished runs retained, into steady-state retention.
npx autocannon -c 10 -a "$warm" -m POST -H content-type=application/json -b "$body" "$url" > /dev/null 2>&1
callgrind_control -i on "$vp" > /dev/null 2>&1
npx autocannon -c 10 -a "$count" -m POST -H content-type=application/json -b "$body" "$url" 2>&1 | grep -E 'requests in' || true
callgrind_control -d "$vp" > /dev/null 2>&1
callgrind_control -i off "$vp" > /dev/null 2>&1
kill "$vp"
wait "$vp" 2> /dev/null || true
# The dump of the main thread is the one numbered 01.
main=$(ls "$out"/cg.out.1-01)
total=$(grep -h '^totals:' "$main" | cut -d' ' -f2)
iso=$(callgrind_annotate --inclusive=yes --threshold=100 "$main" 2> /dev/null | grep -E 'DatePrototypeToISOString' | head -1 | awk '{gsub(",", "", $1); print $1}')
echo "$target: $((total / count)) main-thread instructions per request, $(((total - ${iso:-0}) / count)) without Date-to-ISO formatting"
