#!/usr/bin/env bash
# Issue 13 goal 2: system calls per 1,000 echoed messages, and server CPU per message split
# into user and kernel time, for highwater and the two tokio servers (tokio-tuned: IgnoredAny,
# echo of the received bytes, one flush per batch; tokio: a Value per frame, send per reply).
# Load: CONNS connections x WINDOW in flight x 64-byte echo (default 64 x 32, the load of
# the issue's `strace -c`). Two runs per server: one under `strace -c -f -p` over exactly
# the measured window (for the counts; strace slows the server, so its rate is not used),
# and one without (for the CPU split and msgs/s).
#
#   [SERVERS="highwater tokio-tuned"] [PERF_BIN=...] benches/compare/syscalls.sh [CONNS] [WINDOW] [SECS]
set -euo pipefail
. "$(dirname "$0")/perf_lib.sh"
conns=${1:-64}; window=${2:-32}; secs=${3:-3}
printf '%s connections x %s in flight x 64-byte echo; per 1,000 messages:\n' "$conns" "$window"
printf '%-16s %8s %8s %8s %8s %8s %8s %8s %9s %8s %8s\n' server recv send epoll_w epoll_ctl \
  madvise brk+mmap other msgs/s user-ns sys-ns
for kind in ${SERVERS:-highwater tokio-tuned tokio}; do
  start "$kind" "$PERF" server --kind "$kind"
  traced=$("$PERF" load --addr "$ADDR" --conns "$conns" --window "$window" --size 64 \
    --warmup-secs 1 --secs "$secs" --server-pid "$PID" --strace "$tmp/$kind.strace")
  stop_server
  start "$kind" "$PERF" server --kind "$kind"
  plain=$("$PERF" load --addr "$ADDR" --conns "$conns" --window "$window" --size 64 \
    --warmup-secs 1 --secs "$secs" --server-pid "$PID")
  stop_server
  python3 - "$kind" "$tmp/$kind.strace" "$traced" "$plain" <<'PY'
import json, sys
kind, path, traced, plain = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
calls = {}
for line in open(path):
    f = line.split()
    # "% time seconds usecs/call calls [errors] syscall"
    if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
        calls[f[-1]] = calls.get(f[-1], 0) + int(f[3])
groups = {
    "recv": ["recvfrom", "read", "recvmsg", "readv"],
    "send": ["writev", "write", "sendto", "sendmsg"],
    "epoll_w": ["epoll_wait", "epoll_pwait", "epoll_pwait2"],
    "epoll_ctl": ["epoll_ctl"],
    "madvise": ["madvise"],
    "brk+mmap": ["brk", "mmap", "munmap", "mremap"],
}
k = 1000 / traced["msgs"]
row = {g: sum(calls.pop(n, 0) for n in names) * k for g, names in groups.items()}
row["other"] = sum(calls.values()) * k
cells = " ".join(f"{row[g]:>8.1f}" for g in list(groups) + ["other"])
print(f"{kind:<16} {cells} {plain['msgs_per_s']:>9,} {plain['server_user_ns_per_msg']:>8} "
      f"{plain['server_sys_ns_per_msg']:>8}")
if calls:
    print(" " * 17 + "other: " + ", ".join(f"{n} {c * k:.2f}" for n, c in sorted(calls.items())))
PY
done
echo "(machine shared with other work; ratios within one run are the figure to trust)"
