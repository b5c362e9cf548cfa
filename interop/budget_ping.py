#!/usr/bin/env python3
"""The budget binds the heavy, not the light: N slow readers against the `server` example's
queue budget, and one ping client beside them whose reply latency is the figure.

Starts the server example itself (release build), on 127.0.0.1 and a free port, with
`--reactors 1 --queue-budget BUDGET`; opens N connections with a 4 KiB receive buffer that
pipeline 1 KiB requests as fast as the server takes them and never read a reply; meanwhile a
well-behaved client sends a ping every 10 ms and waits for each reply. Prints the ping
latencies (p50, p99, max), the replies missed, and the server's peak RSS. The goal: p99 under
50 ms, no ping lost, RSS within the budget plus one read buffer per connection.

usage: python3 interop/budget_ping.py [--readers N] [--budget BYTES] [--seconds S]
       [--server PATH]   (default target/release/examples/server; build it first:
                          cargo build --release --example server)
"""
import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import time


def frame(b):
    return struct.pack(">I", len(b)) + b


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("end of stream")
        buf += chunk
    return buf


def recv_frame(sock):
    (n,) = struct.unpack(">I", read_exact(sock, 4))
    return read_exact(sock, n)


def vm(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readers", type=int, default=1000)
    ap.add_argument("--budget", type=int, default=32 * 1024 * 1024)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--server", default="target/release/examples/server")
    args = ap.parse_args()

    port = free_port()
    server = subprocess.Popen(
        [args.server, "--addr", f"127.0.0.1:{port}", "--reactors", "1",
         "--queue-budget", str(args.budget)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        server.stdout.readline()  # "listening on ..."
        base = vm(server.pid, "VmRSS")

        request = frame(json.dumps("r" * 1000).encode())
        burst = request * 256  # 256 KiB per reader: past its high-water mark in replies
        readers = []
        for _ in range(args.readers):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            readers.append([s, 0])

        ping = socket.create_connection(("127.0.0.1", port))
        ping.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ping.settimeout(5)
        lat, missed, n = [], 0, 0
        end = time.time() + args.seconds
        while time.time() < end:
            for r in readers:
                s, sent = r
                while sent < len(burst):
                    try:
                        k = s.send(burst[sent:])
                    except BlockingIOError:
                        break
                    sent += k
                r[1] = sent
            n += 1
            t = time.perf_counter()
            ping.sendall(frame(json.dumps({"ping": n}).encode()))
            try:
                reply = json.loads(recv_frame(ping))
                assert reply == {"ping": n}, reply
                lat.append(time.perf_counter() - t)
            except socket.timeout:
                missed += 1
            time.sleep(0.01)

        peak = vm(server.pid, "VmHWM")
        sent = sum(r[1] for r in readers)
        lat.sort()
        pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
        print(f"readers={args.readers} budget={args.budget} seconds={args.seconds} "
              f"requests_sent={sent >> 20}MiB")
        print(f"ping: answered={len(lat)} missed={missed} p50={pct(0.50):.2f}ms "
              f"p99={pct(0.99):.2f}ms max={pct(1.0):.2f}ms")
        print(f"server RSS: start={base >> 20}MiB peak={peak >> 20}MiB "
              f"growth={(peak - base) >> 20}MiB (budget {args.budget >> 20}MiB)")
        for r in readers:
            r[0].close()
        return 0 if missed == 0 else 1
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
