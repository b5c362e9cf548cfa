#!/usr/bin/env bash
# Issue 16: the scale sweep. 64-byte echo, 4 requests in flight per connection, one server
# thread, highwater vs tokio-tuned (LengthDelimitedCodec + IgnoredAny + echo of the received bytes),
# at 1 .. 10,000 busy connections. One fresh server per point; 1 s warm-up, then SECS measured.
# Prints a table and writes the points to target/scale.points and the plot to docs/scale.svg.
#
#   benches/compare/scale.sh [SECS] [CONNS...]
# Environment: SERVERS (default "highwater tokio-tuned"); BEFORE_BIN, another commit's perf binary
# whose highwater server runs too at every point, as "highwater-before" (interleaved, so
# the machine's moods hit all servers alike); POINTS and SVG, the output files.
set -euo pipefail
. "$(dirname "$0")/perf_lib.sh"
secs=${1:-3}; shift || true
counts=("$@")
if [ ${#counts[@]} -eq 0 ]; then
  counts=(1 16 256 2048 8192)
  # 10,000 needs a descriptor per connection in each process, plus some.
  [ "$(ulimit -n)" -ge 10100 ] && counts+=(10000)
fi
points=${POINTS:-target/scale.points}
svg=${SVG:-docs/scale.svg}
: >"$points"
printf '%-16s %7s %12s %13s %13s %10s %10s\n' server conns msgs/s cpu-ns/msg user/sys-ns p50-us p99-us
for n in "${counts[@]}"; do
  runs=()
  for kind in ${SERVERS:-highwater tokio-tuned}; do runs+=("$kind=$PERF=$kind"); done
  [ -n "${BEFORE_BIN:-}" ] && runs+=("highwater-before=$BEFORE_BIN=highwater")
  for run in "${runs[@]}"; do
    IFS== read -r label bin kind <<<"$run"
    start "$label" "$bin" server --kind "$kind"
    out=$("$PERF" load --addr "$ADDR" --conns "$n" --window 4 --size 64 \
      --warmup-secs 1 --secs "$secs" --server-pid "$PID")
    stop_server
    echo "$label $out" >>"$points"
    python3 - "$label" "$out" <<'PY'
import json, sys
k, j = sys.argv[1], json.loads(sys.argv[2])
print(f"{k:<16} {j['conns']:>7} {j['msgs_per_s']:>12,} {j['server_cpu_ns_per_msg']:>13} "
      f"{str(j['server_user_ns_per_msg'])+'/'+str(j['server_sys_ns_per_msg']):>13} "
      f"{j['p50_us']:>10} {j['p99_us']:>10}")
PY
  done
done
"$PERF" plot --input "$points" --output "$svg"
echo "points: $points; plot: $svg"
