#!/usr/bin/env python3
"""A client written from PROTOCOL.md alone, run against the `server` example.

usage: python_client.py HOST:PORT echo|sink
Exits non-zero on the first mismatch.
"""
import json
import socket
import struct
import sys


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def read_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            return None if not out else out
        out += chunk
    return out


def recv(s):
    header = read_exact(s, 4)
    if header is None:
        return None
    (n,) = struct.unpack(">I", header)
    return read_exact(s, n)


def check(cond, what):
    if not cond:
        print(f"MISMATCH: {what}", file=sys.stderr)
        sys.exit(1)


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=20)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def echo(addr):
    s = connect(addr)
    values = [None, True, 0, -1.5, "é☃\u0000", [1, [2, [3]]], {"k": {"v": [None]}},
              {"big": "x" * (1 << 20)}]
    for v in values:
        s.sendall(frame(json.dumps(v).encode()))
        check(json.loads(recv(s)) == v, f"echo of {str(v)[:40]}")
    # Split across writes, byte by byte.
    wire = frame(b'{"split": true}')
    for b in wire:
        s.sendall(bytes([b]))
    check(json.loads(recv(s)) == {"split": True}, "split frame")
    # Many frames in one write.
    s.sendall(b"".join(frame(json.dumps(i).encode()) for i in range(5000)))
    for i in range(5000):
        check(json.loads(recv(s)) == i, f"pipelined {i}")
    # Bad payloads: an error frame each, connection kept.
    for bad in [b"", b"{", b"\xff", b"[" * 100000 + b"]" * 100000]:
        s.sendall(frame(bad))
        r = json.loads(recv(s))
        check(r.get("error") == "invalid_json" and isinstance(r.get("detail"), str),
              f"invalid_json for {bad[:10]!r}")
    s.sendall(frame(b'"alive"'))
    check(json.loads(recv(s)) == "alive", "still alive after errors")
    # Half-close: every reply, then end of stream.
    s.sendall(b"".join(frame(json.dumps({"r": i}).encode()) for i in range(1000)))
    s.shutdown(socket.SHUT_WR)
    for i in range(1000):
        check(json.loads(recv(s)) == {"r": i}, f"reply {i} before close")
    check(recv(s) is None, "end of stream after the last reply")
    s.close()
    # Oversized header: error from the header alone, then close.
    s = connect(addr)
    s.sendall(struct.pack(">I", 0xFFFFFFFF))
    r = json.loads(recv(s))
    check(r == {"error": "frame_too_large", "limit": 8388608, "got": 0xFFFFFFFF}, f"frame_too_large: {r}")
    check(recv(s) is None, "closed after frame_too_large")
    s.close()


def sink(addr):
    s = connect(addr)
    total = 0
    for i in range(3000):
        p = json.dumps({"i": i, "pad": "p" * (i % 700)}).encode()
        total += len(p)
        s.sendall(frame(p))
    s.shutdown(socket.SHUT_WR)
    r = json.loads(recv(s))
    check(r == {"received": 3000, "bytes": total}, f"sink summary {r}")
    check(recv(s) is None, "closed after the summary")


if __name__ == "__main__":
    {"echo": echo, "sink": sink}[sys.argv[2]](sys.argv[1])
    print(f"python client: {sys.argv[2]} ok")
