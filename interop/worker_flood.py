#!/usr/bin/env python3
"""Drives a `server --workers N --work-us U` (echo) far faster than its workers: a flood of
20,000 requests on one connection, a light client pinging every 50 ms on another, the
server's RSS sampled throughout. Checks every flood reply arrives once and in order.

usage: python3 interop/worker_flood.py PORT SERVER_PID
"""
import json
import socket
import struct
import sys
import threading
import time

port, pid = int(sys.argv[1]), sys.argv[2]
N = 20000


def rss_kb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


def frame(b):
    return struct.pack(">I", len(b)) + b


def recv(s):
    h = b""
    while len(h) < 4:
        h += s.recv(4 - len(h))
    n = struct.unpack(">I", h)[0]
    d = b""
    while len(d) < n:
        d += s.recv(n - len(d))
    return d


flood = socket.create_connection(("127.0.0.1", port))
got = []
reader = threading.Thread(target=lambda: got.extend(json.loads(recv(flood))["n"] for _ in range(N)))
reader.start()
writer = threading.Thread(
    target=lambda: [flood.sendall(frame(json.dumps({"n": i, "pad": "x" * 200}).encode())) for i in range(N)]
)
writer.start()
light = socket.create_connection(("127.0.0.1", port))
light.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
lat, rs = [], []
t0 = time.time()
while reader.is_alive() and time.time() - t0 < 120:
    s = time.time()
    light.sendall(frame(b'{"ping":1}'))
    recv(light)
    lat.append((time.time() - s) * 1e3)
    rs.append(rss_kb())
    time.sleep(0.05)
reader.join()
writer.join()
lat.sort()
ok = got == list(range(N))
print(f"flood: {len(got)} replies, each once and in order: {ok}; {time.time() - t0:.1f} s")
print(f"light client: {len(lat)} pings, p50 {lat[len(lat) // 2]:.2f} ms, "
      f"p99 {lat[int(len(lat) * 0.99) - 1]:.2f} ms, max {lat[-1]:.2f} ms")
print(f"server RSS during the flood: min {min(rs)} KiB, max {max(rs)} KiB")
sys.exit(0 if ok else 1)
