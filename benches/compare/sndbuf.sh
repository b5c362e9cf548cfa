#!/usr/bin/env bash
# Issue 13 goal 3: small socket send buffers. 256-byte frames streamed through a server with
# its SO_SNDBUF at 16, 32, 64 KiB and the kernel default (auto-tuned; Linux doubles what is
# asked), highwater vs tokio-tuned at the same setting, two shapes:
#  - echo: 1 connection, 1,000 frames in flight (the client's replies carry the ACKs);
#  - fan-out: a publisher streaming as fast as its queue allows, 4 subscribers that only read
#    (a broker's shape: their side of TCP sends nothing but ACKs).
# tokio-8M is the tokio-tuned fan-out server writing whole batches (tokio-util's write buffer
# boundary raised from 8 KiB to 8 MiB), which is how highwater writes.
#
#   benches/compare/sndbuf.sh [SECS]
set -euo pipefail
. "$(dirname "$0")/perf_lib.sh"
secs=${1:-3}
printf '%-8s %-11s %8s %14s %11s\n' shape server sndbuf msgs/s cpu-ns/msg
row() { # shape server sndbuf json
  python3 - "$@" <<'PY'
import json, sys
shape, k, size, j = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
rate = j.get("msgs_per_s", j.get("delivered_per_s"))
cpu = j.get("server_cpu_ns_per_msg", j.get("server_cpu_ns_per_delivery"))
label = f"{size // 1024} KiB" if size else "default"
print(f"{shape:<8} {k:<11} {label:>8} {rate:>14,} {cpu:>11}")
PY
}
for size in 16384 32768 65536 0; do
  for kind in highwater tokio-tuned; do
    start "$kind" "$PERF" server --kind "$kind" --sndbuf "$size"
    out=$("$PERF" load --addr "$ADDR" --conns 1 --window 1000 --size 256 \
      --warmup-secs 1 --secs "$secs" --server-pid "$PID")
    stop_server
    row echo "$kind" "$size" "$out"
  done
  for kind in highwater tokio-tuned tokio-8M; do
    if [ "$kind" = tokio-8M ]; then
      PERF_TOKIO_WRITE_BOUNDARY=8388608 start "$kind" "$PERF" server --kind tokio-tuned --fanout --sndbuf "$size"
    else
      start "$kind" "$PERF" server --kind "$kind" --fanout --sndbuf "$size"
    fi
    out=$("$PERF" stream --addr "$ADDR" --conns 5 --size 256 --warmup-secs 1 --secs "$secs" \
      --server-pid "$PID")
    stop_server
    row fan-out "$kind" "$size" "$out"
  done
done
echo "(fan-out msgs/s counts deliveries to subscribers; machine shared with other work)"
