#!/usr/bin/env bash
# The broker measurement (issue 12), highwater's `broker` example beside `tokio_broker`:
# 1 publisher at full speed, 3 fast subscribers, and (except in the "none" rows) 1 subscriber
# reading one frame per 100 ms; 256-byte frames; SECS seconds measured after a 2 s warm-up
# (WARMUP). The slow subscriber falls behind in its first milliseconds, so under drop and
# disconnect its one grace period (1 s) falls in the warm-up; WARMUP=0 counts it.
# Each row is one run of `broker_load` (benches/compare/broker_load.rs), which checks every
# frame against its sequence number; the broker's RSS is sampled from /proc/PID/status.
#
#   benches/compare/broker.sh [SECS]        (default 20)
#   RATE=100000 benches/compare/broker.sh   (the publisher paced, frames/s; default 0, full speed)
#   HW_ARGS="--grace-ms 250" TOKIO_ARGS="--grace-ms 250" benches/compare/broker.sh  (extra flags)
#   WARMUP=0 benches/compare/broker.sh      (seconds not counted in the rates; default 2)
#
# Each policy runs without the slow subscriber ("none": the baseline the fast subscribers'
# rates are compared with), then with it.
# Timeouts are off on the highwater broker (--idle-timeout-ms 0 --write-timeout-ms 0) so the
# policies alone decide what happens to the slow subscriber; tokio_broker has none.
set -euo pipefail
secs=${1:-20}
cd "$(dirname "$0")/../.."
source benches/compare/lib.sh
cargo build --release -q --example broker --example tokio_broker
load=$(cargo bench --bench broker_load --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="broker_load" and m.get("executable"):
        print(m["executable"])')
bin=target/release/examples

run() { # IMPL POLICY SLOW(yes|no)
  local impl=$1 policy=$2 slow=$3 args=()
  if [ "$impl" = highwater ]; then
    start "broker-$impl-$policy-$slow" "$bin/broker" --addr 127.0.0.1:0 --policy "$policy" \
      --idle-timeout-ms 0 --write-timeout-ms 0 ${HW_ARGS:-}
  else
    start "broker-$impl-$policy-$slow" "$bin/tokio_broker" --addr 127.0.0.1:0 --policy "$policy" ${TOKIO_ARGS:-}
  fi
  [ "$slow" = yes ] && args=(--slow)
  out=$("$load" --addr "$ADDR" --secs "$secs" --warmup-secs "${WARMUP:-2}" --broker-pid "$PID" --rate "${RATE:-0}" "${args[@]}")
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  python3 - "$impl" "$policy" "$slow" "$out" <<'PY'
import json, sys
impl, policy, slow, out = sys.argv[1:]
r = json.loads(out)
s = r["slow"] or {}
rates = "/".join(f"{x:,}" for x in r["fast_rates"])
slow_col = "-" if not s else f'{s["frames"]} frames, {s["gaps"]} gaps ({s["dropped"]} dropped), missing {s["missing"]}, corrupt {s["corrupt"]}, {"cut off" if s["cut_off"] else "connected"}'
print(f'| {impl} | {policy} | {"yes" if slow == "yes" else "none"} | {rates} | {r["fast_gaps"]} ({r["fast_missing"]}/{r["fast_corrupt"]}){"" if all(e == "open" for e in r["fast_end"]) else ", " + str(sum(e != "open" for e in r["fast_end"])) + " cut off"} | {slow_col} | {r["rss_kb_min"]/1024:.1f}–{r["rss_kb_max"]/1024:.1f} | {r["peak_rss_kb"]/1024:.1f} |')
PY
}

echo "| broker | policy | slow sub | fast subs, frames/s each | fast subs' gap notices (missing/corrupt) | slow subscriber | RSS MiB (min–max) | peak RSS MiB |"
echo "|---|---|---|---|---|---|---:|---:|"
for impl in highwater tokio; do
  for policy in drop disconnect pause; do
    run "$impl" "$policy" no
    run "$impl" "$policy" yes
  done
done
