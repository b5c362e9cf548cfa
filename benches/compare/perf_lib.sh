# Shared by the issue 13/16 scripts: builds the `perf` bench binary once and sets PERF to it.
# Sources lib.sh for `start` (server in the background, ADDR and PID set) and the cleanup.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
cd "$here/../.." || exit 1
# PERF_BIN: a perf binary built elsewhere (another commit's, for before/after figures).
PERF=${PERF_BIN:-}
[ -n "$PERF" ] || PERF=$(cargo bench --bench perf --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="perf" and m.get("executable"):
        print(m["executable"])')
[ -x "$PERF" ] || { echo "could not build the perf bench" >&2; exit 1; }
# Thousands of connections: the client and the server each need a descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# stop_server: kills the server started last and waits for it.
stop_server() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
