#!/usr/bin/env python3
"""Hostile load against a running `server` example (echo mode), from the contract alone:
64 slow readers that send and never read, a well-behaved client's latency meanwhile, then
200,000 pipelined tiny frames; prints the server's RSS at each step (Linux /proc).

usage: python3 interop/hostile_probe.py PORT SERVER_PID
"""
import json
import socket
import struct
import sys
import threading
import time

port, pid = int(sys.argv[1]), sys.argv[2]


def rss():
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("VmHWM", "VmRSS")):
            k, v = line.split(":")
            fields[k] = v.strip()
    return fields


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


def conn():
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


print("baseline", rss())
payload = frame(json.dumps("x" * 1000).encode()) * 64
slow = []
for _ in range(64):
    s = conn()
    s.setblocking(False)
    slow.append(s)
sent = 0
t0 = time.time()
while time.time() - t0 < 5:
    for s in slow:
        try:
            sent += s.send(payload)
        except BlockingIOError:
            pass
print(f"64 slow readers sent {sent / 64 / 1e6:.1f} MB each and read nothing:", rss())

good = conn()
lat = []
for _ in range(200):
    t = time.time()
    good.sendall(frame(b'{"ping":1}'))
    recv(good)
    lat.append(time.time() - t)
lat.sort()
print(f"well-behaved client meanwhile: p50 {lat[100] * 1e3:.3f} ms, p99 {lat[198] * 1e3:.3f} ms")

p = conn()
data = b"".join(frame(b"1") for _ in range(200000))


def read_all():
    got, buf = 0, b""
    while got < 200000:
        buf += p.recv(1 << 20)
        whole = len(buf) // 5
        got += whole
        buf = buf[whole * 5:]


t = threading.Thread(target=read_all)
t.start()
start = time.time()
p.sendall(data)
t.join()
print(f"200,000 pipelined tiny frames echoed in {time.time() - start:.2f} s:", rss())
