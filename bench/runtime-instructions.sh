#!/usr/bin/env bash
# Main-thread instructions per run of the runtime alone (bench/runtime-alone.mjs) under callgrind:
# steadier than timings on a shared VM. Run two builds at the same time for a fair pair, e.g.
#   bash bench/runtime-instructions.sh /tmp/rw-pre & bash bench/runtime-instructions.sh . ; wait
# (each a checkout with dist/ built and its node_modules). Also prints the figure without V8's
# Date-to-ISO formatting: under valgrind a run takes over a millisecond, so the shared clock
# formats a timestamp several times per run where at full speed it is about once per ten runs.
set -euo pipefail
root=$(cd "${1:-.}" && pwd)
warm=${WARM:-8000}
count=${COUNT:-4000}
export USER=${USER:-$(id -un)} LOGNAME=${LOGNAME:-$(id -un)}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
RUNTIME_CALLGRIND=1 WARM=$warm COUNT=$count valgrind --tool=callgrind --separate-threads=yes --instr-atstart=no \
  --callgrind-out-file="$out/cg.out" node "$(dirname "$0")/runtime-alone.mjs" "$root" > "$out/log" 2>&1
main=$(ls "$out"/cg.out*-01 | head -1)
total=$(grep -h '^totals:' "$main" | cut -d' ' -f2)
iso=$(callgrind_annotate --inclusive=yes --threshold=100 "$main" 2> /dev/null | grep -E 'Builtin_DatePrototypeToISOString' | head -1 | awk '{gsub(",", "", $1); print $1}')
echo "$root: $((total / count)) main-thread instructions per run, $(((total - ${iso:-0}) / count)) without Date-to-ISO formatting"
