"""Closed-loop keep-alive load over a unix socket (or TCP), for the path wrk cannot dial.

wrk speaks TCP only; the gateway's root listener is a unix socket. This sends the same
pre-built request as bench/mcp_tools_call.lua (bench/native_load.py defines it) on N
kept-alive connections, one thread each, every thread waiting for its answer before the
next call, and prints the same `wrk-result {...}` line. Blocking sockets and no HTTP
library keep it at tens of microseconds of CPU a call (sidecar_bench.py runs it against
the direct path too, beside wrk, so its own cost shows).

    python bench/raw_load.py --target unix:/run/gw.sock --host mcp.lab.tailnet --connections 8 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from native_load import EXPECT, REQUEST_BODY, REQUEST_HEADERS, RESULT_PREFIX  # noqa: E402

MAX_ANSWER = 1 << 20


def connect(target: str) -> socket.socket:
    if target.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(target[len("unix:"):])
    else:
        host, _, port = target.rpartition(":")
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(10)
    return sock


def read_answer(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """(status, body) of one Content-Length answer; `buf` keeps bytes past it (none expected)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer's head")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next((int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:])
                   if k.strip().lower() == b"content-length"), None)
    if length is None or length > MAX_ANSWER:
        raise ConnectionError(f"answer without a usable Content-Length (status {status})")
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside the answer's body")
        rest += chunk
    buf[:] = rest[length:]
    return status, rest[:length]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="unix:/path or host:port")
    parser.add_argument("--host", required=True, help="the Host header")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    body = REQUEST_BODY.encode()
    request = (f"POST /mcp HTTP/1.1\r\nHost: {args.host}\r\nContent-Length: {len(body)}\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in REQUEST_HEADERS.items()) + "\r\n").encode() + body
    expect = EXPECT.encode()
    latencies: list[list[float]] = [[] for _ in range(args.connections)]
    errors = {"connect": 0, "read": 0, "bad": 0}
    first_bad: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds

    def fail(kind: str, what: str) -> None:
        with lock:
            errors[kind] += 1
            if not first_bad:
                first_bad.append(what[:200])

    def loop(i: int) -> None:
        sock = None
        buf = bytearray()
        while time.monotonic() < stop_at:
            if sock is None:
                try:
                    sock = connect(args.target)
                except OSError as exc:
                    fail("connect", repr(exc))
                    time.sleep(0.05)
                    continue
            t0 = time.perf_counter()
            try:
                sock.sendall(request)
                status, answer = read_answer(sock, buf)
            except (OSError, ConnectionError, ValueError, IndexError) as exc:
                fail("read", repr(exc))
                sock.close()
                sock, buf = None, bytearray()
                continue
            elapsed = time.perf_counter() - t0
            if status != 200 or expect not in answer:
                fail("bad", f"{status} {answer[:200]!r}")
            else:
                latencies[i].append(elapsed)
        if sock is not None:
            sock.close()

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + 30)
    duration = time.monotonic() - started
    lat = sorted(x for per in latencies for x in per)

    def pct(q: float) -> int:
        return int(lat[min(len(lat) - 1, round(q / 100 * (len(lat) - 1)))] * 1e6) if lat else 0

    print(RESULT_PREFIX + json.dumps({
        "requests": len(lat) + errors["bad"], "duration_us": int(duration * 1e6), "p50_us": pct(50),
        "p99_us": pct(99), "max_us": pct(100), "connect_errors": errors["connect"], "read_errors": errors["read"],
        "write_errors": 0, "status_errors": 0, "timeouts": 0, "bad": errors["bad"],
        "first_bad": first_bad[0] if first_bad else ""}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
