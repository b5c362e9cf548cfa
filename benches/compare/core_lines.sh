#!/usr/bin/env bash
# The size of the two brokers' cores (issue 12): the lines between the "broker's core" and
# "end of the core" markers of examples/broker.rs (highwater) and examples/tokio_broker.rs
# (tokio + tokio-util), not counting blank lines or lines that are only a comment. Argument
# parsing, the listening line and main are outside the markers in both.
#
#   benches/compare/core_lines.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
count() {
  awk '/-- the broker.s core/ {on=1; next} /-- end of the core/ {on=0} on' "$1" |
    grep -v -E '^[[:space:]]*$' | grep -v -E '^[[:space:]]*//' | wc -l
}
printf 'highwater (examples/broker.rs):    %d lines\n' "$(count examples/broker.rs)"
printf 'tokio (examples/tokio_broker.rs):  %d lines\n' "$(count examples/tokio_broker.rs)"
