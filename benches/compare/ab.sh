#!/usr/bin/env bash
# Before/after on a shared machine: the servers of several `perf` binaries, interleaved round
# by round (A, B, C, A, B, C, ...) so that they see the same moments of the machine. One line
# per run; compare medians, not single runs.
#
#   benches/compare/ab.sh ROUNDS SECS LOAD_BIN LABEL=PERF_BIN:KIND ...
#   e.g. benches/compare/ab.sh 6 5 /tmp/perf-new before=/tmp/perf-old:highwater \
#          after=/tmp/perf-new:highwater tokio-tuned=/tmp/perf-new:tokio-tuned
#
# Load: CONNS (64) connections x WINDOW (32) in flight x 64-byte echo, from LOAD_BIN's
# `perf load`; with MODE=pingpong, COUNT (30000) round trips of LOAD_BIN's `perf pingpong`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
rounds=$1; secs=$2; loadbin=$3; shift 3
echo "# $(date -u +%H:%M) $(uptime | sed 's/.*load/load/')"
for _ in $(seq "$rounds"); do
  for spec in "$@"; do
    label=${spec%%=*}; rest=${spec#*=}; bin=${rest%%:*}; kind=${rest#*:}
    start "$label" "$bin" server --kind "$kind"
    if [ "${MODE:-echo}" = pingpong ]; then
      out=$("$loadbin" pingpong --addr "$ADDR" --count "${COUNT:-30000}" --size 64)
    else
      out=$("$loadbin" load --addr "$ADDR" --conns "${CONNS:-64}" --window "${WINDOW:-32}" \
        --size 64 --warmup-secs 1 --secs "$secs" --server-pid "$PID")
    fi
    kill "$PID"; wait "$PID" 2>/dev/null || true
    python3 - "$label" "$out" <<'PY'
import json, sys
label, j = sys.argv[1], json.loads(sys.argv[2])
if "msgs_per_s" in j:
    print(f"{label:<14} msgs/s {j['msgs_per_s']:>9,} cpu {j['server_cpu_ns_per_msg']:>4} "
          f"user {j['server_user_ns_per_msg']:>4} sys {j['server_sys_ns_per_msg']:>4}")
else:
    print(f"{label:<14} p50 {j['p50_us']:>6} us  p99 {j['p99_us']:>6} us  p99.9 {j['p999_us']:>6} us")
PY
  done
done
echo "# $(date -u +%H:%M) $(uptime | sed 's/.*load/load/')"
