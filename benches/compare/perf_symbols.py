#!/usr/bin/env python3
"""A flat profile of a `perf record` of one of our binaries, user-space symbols resolved here.

The machine's perf (6.1) cannot read the ELF files this rustc writes ("cannot get elf
header"), so `perf report` shows bare addresses for them. This asks perf for the samples per
address and names them with `nm`, mapping perf's file offsets to virtual addresses through
the executable LOAD segment.

    perf record -F 2000 -o perf.data -p <server pid> -- sleep 8
    benches/compare/perf_symbols.py perf.data <the server's binary> [ROWS]
"""
import bisect
import collections
import re
import subprocess
import sys

data, binary = sys.argv[1], sys.argv[2]
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 30


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


syms = []
for line in run("nm", "-C", "--defined-only", binary).splitlines():
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[1] in "tTwW":
        syms.append((int(parts[0], 16), parts[2]))
syms.sort()
addrs = [a for a, _ in syms]
shift = 0
for line in run("readelf", "-lW", binary).splitlines():
    f = line.split()
    if f and f[0] == "LOAD" and "E" in f[6:-1]:
        shift = int(f[2], 16) - int(f[1], 16)

report = run("perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol",
             "--stdio", "-F", "overhead,dso,sym")
shares = collections.Counter()
kernel = 0.0
for line in report.splitlines():
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
    if not m:
        continue
    pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
    if kind == "k":
        kernel += pct
        continue
    if sym.startswith("0x"):
        i = bisect.bisect_right(addrs, int(sym.split()[0], 16) + shift) - 1
        sym = re.sub(r"::h[0-9a-f]{16}$", "", syms[i][1] if i >= 0 else "?")
    else:
        sym = sym.split("  ")[0] + f" ({dso})"
    shares[sym[:120]] += pct
print(f"kernel {kernel:.1f}%, user {100 - kernel:.1f}% of the samples")
for sym, pct in shares.most_common(rows):
    print(f"{pct:6.2f}%  {sym}")
