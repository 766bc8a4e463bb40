"""Hub benchmark: what the hub adds to one tool call, against calling the same upstream directly.

What runs (all real, on this machine's loopback): the lab's stock MCP server (the `mcp` SDK with
its defaults, `mcp_tailnet_lab.stock_mcp_server`) over Streamable HTTP, mcp-server-time (PyPI)
over stdio, and `mcp-hub` (its console script, on 127.0.0.3, default settings, INFO logs) with
both as upstreams: `stock` shared over HTTP, `time` one child per client session.

Paths, each one SDK client session (`mcp.Client`, mode legacy: the initialize handshake the hub
serves), opened once and kept alive (one HTTP/1.1 connection for its POSTs):
  http-direct    client -> stock server /mcp                         tools/call add
  http-hub       client -> hub /mcp (aggregate) -> stock server      tools/call stock_add
  http-server    client -> hub /servers/stock/mcp -> stock server    tools/call stock_add
  stdio-direct   client -> its own mcp-server-time child (stdio)      tools/call get_current_time
  stdio-hub      client -> hub /mcp -> the session's time child       tools/call time_get_current_time
Rounds interleave the paths (order rotated each round), so load from the rest of this shared
machine lands on all of them alike; each hub path's ratio is paired with its direct path per
round (median of the per-round ratios of medians). Calls are sequential (latency, not load).

    .venv/bin/python bench/hub_bench.py [--rounds 6] [--calls 60] [--warmup 10] [--no-write]

Writes the table into docs/hub.md between the hub-bench markers (unless --no-write).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the hub launcher lives with its tests
from tests.hub.hub_support import TIME_SERVER, start_hub, time_server  # noqa: E402

from mcp_tailnet_lab.gateway_process import start_stock_server, stop  # noqa: E402

DOC = REPO / "docs" / "hub.md"
START, END = "<!-- hub-bench:start -->", "<!-- hub-bench:end -->"
PAIRS = {"http-hub": "http-direct", "http-server": "http-direct", "stdio-hub": "stdio-direct"}


@dataclass
class Route:
    name: str
    client: Client
    tool: str
    args: dict
    samples: list[list[float]] = field(default_factory=list)  # per round, seconds per call


def http_client(url: str) -> Client:
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60))
    return Client(streamable_http_client(url, http_client=http), mode="legacy")


async def timed(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        result = await call()
        out.append(time.perf_counter() - started)
        if getattr(result, "is_error", False):
            raise RuntimeError(f"tool error: {result}")
    return out


async def measure(paths: list[Route], rounds: int, calls: int, warmup: int, limit: float) -> None:
    """Open every session, warm each path, then `rounds` rounds in rotating order; at most `limit` s."""
    with anyio.fail_after(limit):
        async with contextlib.AsyncExitStack() as stack:
            for p in paths:
                await stack.enter_async_context(p.client)
            for p in paths:  # warm: sessions, children, connections, caches
                await timed(lambda p=p: p.client.call_tool(p.tool, p.args), warmup)
            for r in range(rounds):
                order = paths[r % len(paths):] + paths[:r % len(paths)]
                for p in order:
                    p.samples.append(await timed(lambda p=p: p.client.call_tool(p.tool, p.args), calls))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def table(paths: list[Route]) -> str:
    by = {p.name: p for p in paths}
    lines = ["| path | median ms | p90 ms | added ms (median) | ratio to direct (paired per round) |",
             "|---|---:|---:|---:|---:|"]
    for p in paths:
        flat = sorted(x for s in p.samples for x in s)
        med, p90 = statistics.median(flat), flat[int(0.9 * (len(flat) - 1))]
        if p.name in PAIRS:
            d = by[PAIRS[p.name]]
            ratios = [statistics.median(a) / statistics.median(b) for a, b in zip(p.samples, d.samples)]
            direct = statistics.median(x for s in d.samples for x in s)
            added, ratio = ms(med - direct), f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        else:
            added, ratio = "", "1"
        lines.append(f"| {p.name} | {ms(med)} | {ms(p90)} | {added} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--limit", type=float, default=1800, help="seconds the whole measurement may take")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if not (1 <= args.rounds <= 100 and 1 <= args.calls <= 10000 and 0 <= args.warmup <= 1000):
        ap.error("--rounds 1..100, --calls 1..10000, --warmup 0..1000")

    workdir = Path(tempfile.mkdtemp(prefix="hubbench-", dir="/tmp"))
    stock = start_stock_server(log=workdir / "stock.log")
    hub = None
    try:
        hub = start_hub(workdir, {"stock": {"transport": "streamable-http", "url": f"{stock.url}/mcp"},
                                  "time": time_server()})
        paths = [
            Route("http-direct", http_client(f"{stock.url}/mcp"), "add", {"a": 20, "b": 22}),
            Route("http-hub", http_client(f"{hub.base}/mcp"), "stock_add", {"a": 20, "b": 22}),
            Route("http-server", http_client(f"{hub.base}/servers/stock/mcp"), "stock_add", {"a": 20, "b": 22}),
            Route("stdio-direct", Client(StdioServerParameters(command=TIME_SERVER, args=["--local-timezone", "UTC"]),
                                         mode="legacy"), "get_current_time", {"timezone": "UTC"}),
            Route("stdio-hub", http_client(f"{hub.base}/mcp"), "time_get_current_time", {"timezone": "UTC"}),
        ]
        started = time.monotonic()
        anyio.run(measure, paths, args.rounds, args.calls, args.warmup, args.limit)
        took = time.monotonic() - started
    finally:
        if hub is not None:
            hub.stop()
        stop(stock.proc)
        shutil.rmtree(workdir, ignore_errors=True)

    out = table(paths)
    head = (f"Measured {time.strftime('%Y-%m-%d')}, {platform.machine()}, {args.rounds} rounds x {args.calls} "
            f"sequential calls per path ({args.warmup} warm-up), {took:.0f} s, on a shared 2-core machine:")
    block = f"{START}\n{head}\n\n{out}\n{END}"
    print(block)
    if not args.no_write:
        text = DOC.read_text()
        if START in text and END in text:
            DOC.write_text(text[:text.index(START)] + block + text[text.index(END) + len(END):])
        else:
            print(f"(no {START} ... {END} markers in {DOC}; not written)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
