#!/usr/bin/env bash
# Issue 13 goal 5: latency with no load. One connection, one 64-byte request at a time, from
# a blocking std client (write, then read the echo), against highwater, tokio-tuned (current-thread,
# LengthDelimitedCodec, IgnoredAny, echo of the received bytes) and a blocking std
# thread-per-connection server: the floor a sleeping readiness loop can only approach;
# highwater-busy is highwater with `Config::busy_poll` of 50 µs, which does not sleep.
#
#   benches/compare/pingpong.sh [COUNT]
set -euo pipefail
. "$(dirname "$0")/perf_lib.sh"
count=${1:-50000}
printf '%-12s %9s %9s %9s\n' server p50-us p99-us p99.9-us
for kind in ${SERVERS:-highwater highwater-busy tokio-tuned std}; do
  start "$kind" "$PERF" server --kind "$kind"
  out=$("$PERF" pingpong --addr "$ADDR" --count "$count" --size 64)
  stop_server
  python3 - "$kind" "$out" <<'PY'
import json, sys
k, j = sys.argv[1], json.loads(sys.argv[2])
print(f"{k:<12} {j['p50_us']:>9} {j['p99_us']:>9} {j['p999_us']:>9}")
PY
done
echo "($count round trips after a 10% warm-up; machine shared with other work)"
