#!/usr/bin/env bash
# Producer memory against a slow consumer, side by side in one run: peak RSS of a producer
# streaming 2,000 article frames into the `server` example in sink mode, pausing 500 ms every
# 200 frames: the `client` example (obeying its high-water mark, then ignoring it), and a
# Node.js producer (interop/node_producer.js, obeying write()/'drain', then ignoring it).
# Then user-space memory per idle connection with 10,000 of them (the `idle` example).
# usage: benches/compare/memory.sh   (needs node and python3 for the Node rows)
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/compare/lib.sh
cargo build --release --examples -q
bin=target/release/examples
peak_mib() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])["peak_rss_kb"]/1024)' "$1"; }
slow_sink() { start "$1" "$bin/server" --addr 127.0.0.1:0 --mode sink --process-every 200 --process-ms 500; }

echo "producer peak RSS, 2000 article frames into a sink that pauses 500 ms every 200 frames:"
for variant in obey ignore; do
  slow_sink "sink-hw-$variant"
  flag=(); [ "$variant" = ignore ] && flag=(--ignore-backpressure)
  out=$("$bin/client" --addr "$ADDR" --frames 2000 "${flag[@]}")
  kill "$PID" 2>/dev/null || true
  printf '  %-44s %7.1f MiB\n' "highwater client ($variant backpressure)" "$(peak_mib "$out")"
done
if command -v node >/dev/null; then
  for variant in obey ignore; do
    slow_sink "sink-node-$variant"
    arg=(); [ "$variant" = ignore ] && arg=(ignore)
    out=$(node interop/node_producer.js "$ADDR" 2000 "${arg[@]}")
    kill "$PID" 2>/dev/null || true
    printf '  %-44s %7.1f MiB\n' "Node.js producer ($variant backpressure)" "$(peak_mib "$out")"
  done
fi
echo
echo "user-space memory per idle connection:"
"$bin/idle" --connections 10000
