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

start_server() { # mode -> prints address
  "$bin/server" --addr 127.0.0.1:0 --mode "$1" "${@:2}" >"$tmp/$1.out" 2>"$tmp/$1.err" &
  pids+=($!)
  for _ in $(seq 100); do
    if grep -q "listening on" "$tmp/$1.out"; then sed 's/listening on //' "$tmp/$1.out"; return; fi
    sleep 0.05
  done
  echo "server did not start" >&2; exit 1
}

echo_addr=$(start_server echo)
sink_addr=$(start_server sink --process-every 200 --process-ms 50)
timeout 120 python3 interop/python_client.py "$echo_addr" echo
timeout 120 python3 interop/python_client.py "$sink_addr" sink
timeout 120 node interop/node_producer.js "$sink_addr" 2000

node interop/node_sink_server.js >"$tmp/node.out" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$tmp/node.out" && break; sleep 0.05; done
node_addr=$(sed 's/listening on //' "$tmp/node.out")
timeout 120 "$bin/client" --addr "$node_addr" --frames 2000
echo "interop: all peers agree"
