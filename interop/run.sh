#!/usr/bin/env bash
# Runs the Python and Node peers (written from PROTOCOL.md) against the release
# `server` and `client` examples. Needs python3 and node; builds the examples itself.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --examples -q
bin=target/release/examples
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# Starts a server in this shell (not in a `$(...)` subshell, where the pid would be recorded
# in the subshell's copy of `pids` and the cleanup would never stop it), then waits for its
# address in "$tmp/$1.out".
start_server() { # mode args...
  "$bin/server" --addr 127.0.0.1:0 --mode "$1" "${@:2}" >"$tmp/$1.out" 2>"$tmp/$1.err" &
  pids+=($!)
}
address_of() { # mode -> prints address
  for _ in $(seq 100); do
    if grep -q "listening on" "$tmp/$1.out"; then sed 's/listening on //' "$tmp/$1.out"; return; fi
    sleep 0.05
  done
  echo "server did not start" >&2; exit 1
}

start_server echo
start_server sink --process-every 200 --process-ms 50
echo_addr=$(address_of echo)
sink_addr=$(address_of sink)
timeout 120 python3 interop/python_client.py "$echo_addr" echo
timeout 120 python3 interop/python_client.py "$sink_addr" sink
timeout 120 node interop/node_producer.js "$sink_addr" 2000

node interop/node_sink_server.js >"$tmp/node.out" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$tmp/node.out" && break; sleep 0.05; done
node_addr=$(sed 's/listening on //' "$tmp/node.out")
timeout 120 "$bin/client" --addr "$node_addr" --frames 2000
echo "interop: all peers agree"
