#!/usr/bin/env bash
# The relay measurement (issue 12): the contract's `client` streams 2,000 frames of 50
# records (~61 KB each) through the `relay` example into the `server` example in sink mode,
# which stops reading for 500 ms after every 200 frames. Prints the client's summary line,
# then whether every frame arrived, the relay's peak RSS (VmHWM, read from /proc while it
# still runs) against its bound, 2 x (high-water + max frame) + 8 MiB, and the client's.
#
#   benches/compare/relay.sh [RELAY FLAGS...]     (e.g. --high-water 1MiB)
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/compare/lib.sh
cargo build --release -q --example relay --example server --example client
bin=target/release/examples
start sink "$bin/server" --addr 127.0.0.1:0 --mode sink --process-every 200 --process-ms 500
sink=$ADDR
start relay "$bin/relay" --addr 127.0.0.1:0 --upstream "$sink" "$@"
relay_pid=$PID
out=$("$bin/client" --addr "$ADDR" --frames 2000 --records 50)
echo "$out"
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$relay_pid/status")
python3 - "$out" "$hwm" "$@" <<'PY'
import json, re, sys
out, hwm, flags = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def size(s):
    m = re.fullmatch(r"(\d+)(KiB|MiB)?", s)
    return int(m[1]) * {None: 1, "KiB": 1024, "MiB": 1 << 20}[m[2]]
def flag(name, default):
    return size(flags[flags.index(name) + 1]) if name in flags else default
high = flag("--high-water", 256 * 1024)
max_frame = flag("--max-frame", 8 << 20)
bound = 2 * (high + max_frame) + (8 << 20)
received = out["server_reply"]["received"]
print(f"frames arrived: {received} of {out['frames']}")
print(f"relay peak RSS: {hwm / 1024:.1f} MiB (bound {bound / (1 << 20):.1f} MiB)")
print(f"client peak RSS: {out['peak_rss_kb'] / 1024:.1f} MiB (bound 8 MiB)")
PY
