"""Benchmark worker for bench/sidecar_bench.py: MCP SDK client sessions that time tool calls.

Why a separate process: each path of the benchmark needs its client in a different
place (inside the sidecar's network namespace for loopback and the gateway, on the host
behind a userspace node's HTTP proxy, inside a TUN node's namespace), and a client in
its own process does not share an event loop or a GIL with the driver or other clients.

The worker opens `--sessions` Streamable HTTP sessions with the `mcp` SDK client (the
same client code every variant uses) and keeps them for its whole life, then answers
one JSON command per stdin line with one JSON line on stdout:

    {"op": "calls", "n": 200, "sessions": 1, "tool": "echo", "arguments": {...}}
      -> {"ok": true, "lat": [seconds per call ...], "wall": seconds for all n}
    {"op": "quit"}

`sessions` > 1 spreads the n calls over that many sessions calling at the same time
(closed loop: each session sends its next call when the previous one answers).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import Counter
from typing import Any

import anyio
import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

CALL_TIMEOUT = 60.0


def describe(exc: BaseException) -> str:
    """The first leaf of an exception group, as one short line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]


def http_client(uds: str | None, proxy: str | None, host_header: str | None) -> httpx2.AsyncClient:
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=None)
    transport = httpx2.AsyncHTTPTransport(uds=uds, limits=limits) if uds else None  # limits live on the transport
    headers = {"Host": host_header} if host_header else None
    return httpx2.AsyncClient(transport=transport, proxy=proxy if not uds else None, headers=headers,
                              timeout=httpx2.Timeout(30.0, read=None), trust_env=False, limits=limits)


async def call_once(session: ClientSession, tool: str, arguments: dict[str, Any]) -> float:
    started = time.perf_counter()
    with anyio.fail_after(CALL_TIMEOUT):
        result = await session.call_tool(tool, arguments)
    elapsed = time.perf_counter() - started
    if result.is_error:
        raise RuntimeError(f"tool {tool} answered an error: {result.content[0].text[:200]}")
    return elapsed


async def run_calls(sessions: list[ClientSession], n: int, width: int, tool: str, arguments: dict[str, Any]
                    ) -> dict[str, Any]:
    width = max(1, min(width, len(sessions), n))
    lat: list[float] = []
    errors: Counter[str] = Counter()
    shares = [n // width + (1 if i < n % width else 0) for i in range(width)]

    async def loop(session: ClientSession, count: int) -> None:
        for _ in range(count):
            try:
                lat.append(await call_once(session, tool, arguments))
            except Exception as exc:  # noqa: BLE001 - counted and reported; the driver decides
                errors[describe(exc)] += 1
                if sum(errors.values()) > max(10, n // 10):
                    raise

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for session, count in zip(sessions, shares):
            tg.start_soon(loop, session, count)
    return {"ok": True, "lat": lat, "wall": time.perf_counter() - started, "errors": dict(errors)}


async def main_async(args: argparse.Namespace) -> int:
    async with contextlib.AsyncExitStack() as stack:
        sessions: list[ClientSession] = []
        for _ in range(args.sessions):
            client = await stack.enter_async_context(http_client(args.uds, args.proxy, args.host_header))
            read, write = await stack.enter_async_context(
                streamable_http_client(args.url, http_client=client))
            session = await stack.enter_async_context(ClientSession(read, write))
            with anyio.fail_after(CALL_TIMEOUT):
                await session.initialize()
            sessions.append(session)
        print(json.dumps({"ok": True, "ready": len(sessions)}), flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                return 0
            cmd = json.loads(line)
            if cmd.get("op") == "quit":
                return 0
            try:
                reply = await run_calls(sessions, int(cmd["n"]), int(cmd.get("sessions", 1)),
                                        cmd.get("tool", "echo"), cmd.get("arguments", {"text": "ping"}))
            except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the run
                reply = {"ok": False, "error": describe(exc)}
            print(json.dumps(reply), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://srv.lab.tailnet/mcp")
    parser.add_argument("--uds", help="connect through this unix socket (the gateway's)")
    parser.add_argument("--proxy", help="connect through this HTTP proxy (a userspace tailscaled's)")
    parser.add_argument("--host-header", help="send this Host (a gateway on a loopback TCP port)")
    parser.add_argument("--sessions", type=int, default=1)
    args = parser.parse_args()
    try:
        return anyio.run(main_async, args)
    except Exception as exc:  # noqa: BLE001 - one line the driver can show
        print(json.dumps({"ok": False, "error": describe(exc)}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
