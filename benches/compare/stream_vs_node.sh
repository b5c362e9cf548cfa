#!/usr/bin/env bash
# One-way stream of the article's frames into a sink, side by side in one run: the `client`
# example (a highwater producer obeying its high-water mark) streams FRAMES frames into
#   highwater's `server` example, tokio_server (as usually written, and --tuned), and a
#   Node.js `net` server doing the same job (interop/node_sink_server.js: JSON.parse each).
# Prints MB/s and server CPU per MB for each, and ratios to Node.
# usage: benches/compare/stream_vs_node.sh [FRAMES]   (default 20000; needs node, python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/compare/lib.sh
FRAMES=${1:-20000}
tick=$(getconf CLK_TCK)
cargo build --release --examples -q
bin=target/release/examples

run() { # NAME SERVER-COMMAND...
  local name=$1; shift
  start "$name" "$@"
  local t0; t0=$(cpu_ticks "$PID")
  local out; out=$("$bin/client" --addr "$ADDR" --frames "$FRAMES")
  local t1; t1=$(cpu_ticks "$PID")
  kill "$PID" 2>/dev/null || true
  local mbps; mbps=$(json_field "$out" mb_per_s)
  local bytes; bytes=$(json_field "$out" bytes)
  python3 - "$name" "$mbps" "$bytes" "$t0" "$t1" "$tick" <<'PY'
import sys
name, mbps, nbytes, t0, t1, tick = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
cpu_ms_per_mb = (t1 - t0) / tick * 1e3 / (nbytes / 1e6)
print(f"{name:<22} {mbps:>8.0f} MB/s {cpu_ms_per_mb:>10.3f} ms CPU/MB")
PY
}

echo "streaming $FRAMES frames of the contract's sample records into each sink:"
results=$(
  run highwater "$bin/server" --addr 127.0.0.1:0 --mode sink
  run tokio "$bin/tokio_server" --addr 127.0.0.1:0 --mode sink
  run tokio-tuned "$bin/tokio_server" --addr 127.0.0.1:0 --mode sink --tuned
  run node "node" interop/node_sink_server.js
)
echo "$results"
python3 - "$results" <<'PY'
import sys
rows = {l.split()[0]: float(l.split()[1]) for l in sys.argv[1].splitlines()}
node = rows["node"]
print(f"highwater / node MB/s: {rows['highwater'] / node:.2f}x")
PY
