#!/usr/bin/env python3
"""Answers lost behind Go's reverse proxy: golang/go#40747, as `tailscale serve` meets it.

Through `tailscale serve`, about 1 in 1,000-2,500 `mcp` SDK tool calls answered on an event
stream ended without its answer ("SSE stream ended without a response") while the gateway sent
an answer's head as soon as the server did; serve logs "httputil: ReverseProxy read error during
body copy: ... use of closed network connection" (docs/design.md fact 20). This reproduces it on
loopback with no tailscale and, with `--backend server`, no gateway: bench/serve_body_race/main.go
is httputil.ReverseProxy set up as serve sets it up (lab/src/mcp_tailnet_lab/race_proxy.py builds
and runs it), with traces of why it closed the backend connection.

    .venv/bin/python bench/serve_body_race.py [--backend gateway|server] [--rounds 10] [--tail-delay 2ms]

`--tail-delay` holds the proxy's read past the body's declared length that long (the window a
busy machine opens by descheduling the proxy's writeLoop goroutine, made wide): an answer whose
head reaches the proxy inside it is cut unless what the client needs came in the same read as
the head. The gateway writes an event-stream answer's head and first event as one
(relay_events.HEAD_HOLD); the figures before and after are in docs/reliability.md.

Each round: 100 `echo` calls on 1 session, then 200 over 8 sessions (bench/sidecar_client.py, the
same worker as the bench). Printed: calls, calls that lost their answer, and the proxy's traces
counted by kind. Needs the Go toolchain the lab builds tailscaled with (`go` on PATH).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from sidecar_bench import stop_proc  # noqa: E402

from mcp_tailnet_lab.gateway_process import TAILNET_HOST, start_gateway, start_stock_server  # noqa: E402
from mcp_tailnet_lab import race_proxy  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("gateway", "server"), default="gateway",
                        help="what the proxy forwards to: the gateway (unix socket) in front of the stock "
                             "server, or the stock server itself")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tail-delay", default="", help="a Go duration, e.g. 2ms (default: none)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sbr-"))
    procs: list[subprocess.Popen] = []
    stack = contextlib.ExitStack()  # the proxy
    try:
        stock = start_stock_server(log=work / "stock.log")
        procs.append(stock.proc)
        backend, host = f"tcp:127.0.0.1:{stock.port}", f"127.0.0.1:{stock.port}"
        if args.backend == "gateway":
            gw = start_gateway(stock.url, work)
            procs.append(gw.proc)
            backend, host = str(gw.socket), TAILNET_HOST
        proxy_log = work / "proxy.log"
        listen = stack.enter_context(race_proxy.running(backend, host, proxy_log, tail_delay=args.tail_delay))
        worker = subprocess.Popen([sys.executable, str(BENCH / "sidecar_client.py"), "--url", f"{listen}/mcp",
                                   "--sessions", "8"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=(work / "worker.log").open("w"), text=True)
        procs.append(worker)
        assert worker.stdin is not None and worker.stdout is not None
        if not json.loads(worker.stdout.readline()).get("ok"):
            raise SystemExit(f"the client worker did not start; see {work / 'worker.log'}")
        calls, lost = 0, Counter()
        for _ in range(args.rounds):
            for sessions, n in ((1, 100), (8, 200)):
                worker.stdin.write(json.dumps({"op": "calls", "n": n, "sessions": sessions, "tool": "echo",
                                               "arguments": {"text": "x"}}) + "\n")
                worker.stdin.flush()
                reply = json.loads(worker.stdout.readline())
                calls += n
                lost.update(reply.get("errors", {}))
        worker.stdin.write('{"op": "quit"}\n')
        worker.stdin.flush()
        traces = Counter()
        for line in proxy_log.read_text(errors="replace").splitlines():
            if "TRACE inbound request body read failed" in line:
                traces["inbound request body read failed: " + line.split("failed: ", 1)[1]] += 1
            elif "ReverseProxy read error during body copy" in line:
                traces["ReverseProxy read error during body copy"] += 1
            elif "persistConn).writeLoop" in line:
                traces["backend connection closed by persistConn.writeLoop (a failed request write)"] += 1
        print(json.dumps({"backend": args.backend, "tail_delay": args.tail_delay or None, "calls": calls,
                          "answers_lost": dict(lost),
                          "proxy_traces": dict(traces)}, indent=2))
        return 0
    finally:
        for p in reversed(procs):
            stop_proc(p, 10)
        stack.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
