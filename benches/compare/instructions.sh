#!/usr/bin/env bash
# Issue 13 goal 2, the repeatable half: user-space instructions per echoed message, counted
# by valgrind's callgrind on the server while the usual load (CONNS x WINDOW x 64-byte echo)
# runs for SECS. Instructions are not time, but on this shared machine a wall-clock figure
# moves by 10% between runs while this count moves by under 1%: it is the figure to compare
# two commits by, before confirming with `ab.sh`. Kernel work is not counted (callgrind sees
# user space only), nor is the load generator.
#
#   [SERVERS="highwater tokio-tuned"] [PERF_BIN=...] benches/compare/instructions.sh [SECS] [CONNS] [WINDOW]
#
# The server runs about 50x slower under callgrind, so SECS (default 2) buys a few hundred
# thousand messages; the count per message is the program's total over the messages the
# load generator saw (start-up included, a few hundred thousand instructions: noise here).
# KEEP=DIR keeps each server's callgrind output there for `callgrind_annotate`.
set -euo pipefail
. "$(dirname "$0")/perf_lib.sh"
secs=${1:-2}; conns=${2:-64}; window=${3:-32}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
printf '%-16s %10s %16s\n' server messages instructions/msg
for kind in ${SERVERS:-highwater tokio-tuned}; do
  out="$tmp/callgrind.$kind"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$PERF" server --kind "$kind" \
    >"$tmp/addr.$kind" 2>/dev/null &
  vg=$!
  for _ in $(seq 200); do grep -q listening "$tmp/addr.$kind" 2>/dev/null && break; sleep 0.1; done
  addr=$(awk '{print $3}' "$tmp/addr.$kind")
  msgs=$("$PERF" load --addr "$addr" --conns "$conns" --window "$window" --size 64 \
    --warmup-secs 0 --secs "$secs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["msgs"])')
  # The server never exits on its own: ask callgrind for a dump, then end it.
  callgrind_control -d "$vg" >/dev/null 2>&1 || true
  for _ in $(seq 50); do ls "$out".* >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 0.5
  kill -9 "$vg" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
  dump=$(ls -S "$out".* | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
  python3 -c "import sys; k,m,t=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]); print(f'{k:<16} {m:>10,} {t/m:>16,.0f}')" \
    "$kind" "$msgs" "$total"
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$dump" "$KEEP/callgrind.$kind"; fi
done
