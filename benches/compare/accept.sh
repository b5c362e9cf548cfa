#!/usr/bin/env bash
# Issue 13 goal 4: accepting at scale. Client threads loop "connect, one 64-byte echo round
# trip, close"; the figure is connections per second and the server's CPU per connection
# (/proc/<pid>/stat over the measured window). Servers, interleaved, ROUNDS times:
#  - highwater-acceptor: a ReactorGroup of N (reactor 0 accepts and hands out round-robin);
#  - highwater-reuseport: the same group with Config::reuse_port (a listener per reactor);
#  - tokio-reuseport: N threads, a current-thread runtime and an SO_REUSEPORT listener each.
#
#   benches/compare/accept.sh [REACTORS] [CLIENT_THREADS] [SECS] [ROUNDS]
set -euo pipefail
. "$(dirname "$0")/perf_lib.sh"
reactors=${1:-2}
threads=${2:-8}
secs=${3:-3}
rounds=${4:-3}
printf '%-20s %8s %12s %16s %8s\n' server reactors conns/s cpu-ns/conn failed
for round in $(seq "$rounds"); do
  for kind in highwater-acceptor highwater-reuseport tokio-reuseport; do
    case $kind in
      highwater-acceptor) start "$kind" "$PERF" server --kind highwater-group --reactors "$reactors" ;;
      highwater-reuseport) start "$kind" "$PERF" server --kind highwater-group --reuse-port --reactors "$reactors" ;;
      tokio-reuseport) start "$kind" "$PERF" server --kind tokio-reuseport --reactors "$reactors" ;;
    esac
    out=$("$PERF" churn --addr "$ADDR" --threads "$threads" --warmup-secs 1 --secs "$secs" \
      --server-pid "$PID")
    stop_server
    python3 - "$kind" "$reactors" "$out" <<'PY'
import json, sys
k, r, j = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"{k:<20} {r:>8} {j['conns_per_s']:>12,} {j['server_cpu_ns_per_conn']:>16,} {j['failed']:>8}")
PY
  done
done
echo "(client threads: $threads; machine shared with other work)"
