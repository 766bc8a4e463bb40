"""Benchmark worker for bench/sidecar_bench.py: many idle MCP sessions over the SSE transport.

Why raw HTTP and not the SDK client: thousands of SDK client sessions in one process
would make the client, not the sidecar, the thing that runs out first. Each session here
still does what an MCP client does on the SSE transport: GET /sse, read the `endpoint`
event, POST `initialize` and read its answer on the stream, POST
`notifications/initialized`, then stay connected and idle (reading keepalives). `check`
proves sessions are alive by calling a tool on some of them.

One JSON command per stdin line, one JSON answer per line on stdout:

    {"op": "open", "n": 250, "batch": 50} -> {"ok": true, "open": total, "failed": k, "errors": {...}}
    {"op": "check", "n": 20}              -> {"ok": true, "alive": k, "of": 20, "errors": {...}}
    {"op": "count"}                       -> {"ok": true, "open": total}
    {"op": "quit"}
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

import anyio
import httpx

OPEN_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0
INIT = {"protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "sidecar-bench-sse-hold", "version": "0"}}


class Session:
    """One SSE session: its stream, its message endpoint and answers it waits for."""

    def __init__(self, client: httpx.AsyncClient, base: str) -> None:
        self.client = client
        self.base = base
        self.endpoint = ""
        self.open = False
        self.waiting: dict[int, tuple[anyio.Event, list[dict[str, Any]]]] = {}
        self.ids = itertools.count(1)

    async def run(self, opened: anyio.Event, failed: list[str]) -> None:
        try:
            async with self.client.stream("GET", f"{self.base}/sse",
                                          headers={"Accept": "text/event-stream"}) as resp:
                if resp.status_code != 200:
                    body = (await resp.aread()).decode(errors="replace").strip()[:160]
                    failed.append(f"GET /sse: HTTP {resp.status_code}: {body}")
                    return
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._handshake, tg, opened, failed)
                    await self._read(resp)
                    tg.cancel_scope.cancel()
        except Exception as exc:  # noqa: BLE001 - counted by kind, the run goes on
            if not opened.is_set():
                failed.append(f"{type(exc).__name__}: {str(exc)[:120]}")
        finally:
            self.open = False
            opened.set()

    async def _read(self, resp: httpx.Response) -> None:
        event, data = "message", []
        async for line in resp.aiter_lines():
            if line.startswith(":"):
                continue
            if line == "":
                self._dispatch(event, "\n".join(data))
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))

    def _dispatch(self, event: str, data: str) -> None:
        if event == "endpoint":
            self.endpoint = data
            if 0 in self.waiting:
                ev, _ = self.waiting.pop(0)
                ev.set()
            return
        if event != "message" or not data:
            return
        try:
            message = json.loads(data)
        except ValueError:
            return
        entry = self.waiting.pop(message.get("id"), None) if isinstance(message, dict) else None
        if entry is not None:
            entry[1].append(message)
            entry[0].set()

    async def _wait_endpoint(self) -> None:
        if not self.endpoint:
            ev = anyio.Event()
            self.waiting[0] = (ev, [])
            await ev.wait()

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        rid = next(self.ids)
        ev, box = anyio.Event(), []
        self.waiting[rid] = (ev, box)
        resp = await self.client.post(f"{self.base}{self.endpoint}",
                                      json={"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        if resp.status_code != 202:
            self.waiting.pop(rid, None)
            raise RuntimeError(f"POST {method}: HTTP {resp.status_code}")
        await ev.wait()
        return box[0]

    async def _handshake(self, tg: anyio.abc.TaskGroup, opened: anyio.Event, failed: list[str]) -> None:
        try:
            with anyio.fail_after(OPEN_TIMEOUT):
                await self._wait_endpoint()
                answer = await self.request("initialize", INIT)
                if "result" not in answer:
                    raise RuntimeError(f"initialize: {str(answer.get('error'))[:120]}")
                resp = await self.client.post(f"{self.base}{self.endpoint}",
                                              json={"jsonrpc": "2.0", "method": "notifications/initialized"})
                if resp.status_code != 202:
                    raise RuntimeError(f"POST notifications/initialized: HTTP {resp.status_code}")
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            opened.set()
            tg.cancel_scope.cancel()
            return
        self.open = True
        opened.set()


async def main_async(args: argparse.Namespace) -> int:
    # The transport carries the connection limits (a client's own limits do not apply to a
    # transport passed in): none here, one connection per session plus the POSTs.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    transport = httpx.AsyncHTTPTransport(uds=args.uds, limits=limits) if args.uds else None
    headers = {"Host": args.host_header} if args.host_header else None
    client = httpx.AsyncClient(transport=transport, proxy=None if args.uds else args.proxy, trust_env=False,
                               headers=headers,
                               timeout=httpx.Timeout(30.0, read=None), limits=limits)
    sessions: list[Session] = []
    async with client, anyio.create_task_group() as tg:
        print(json.dumps({"ok": True, "ready": 0}), flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "quit":
                break
            if op == "open":
                errors: Counter[str] = Counter()
                started = time.perf_counter()
                remaining = int(cmd["n"])
                while remaining > 0:
                    size = min(int(cmd.get("batch", 50)), remaining)
                    remaining -= size
                    failed: list[str] = []
                    events = []
                    for _ in range(size):
                        s = Session(client, args.base)
                        sessions.append(s)
                        ev = anyio.Event()
                        events.append(ev)
                        tg.start_soon(s.run, ev, failed)
                    with anyio.move_on_after(OPEN_TIMEOUT + 5):
                        for ev in events:
                            await ev.wait()
                    errors.update(failed)
                    if failed:
                        break  # a limit was reached: the driver reports it and stops opening
                reply = {"ok": True, "open": sum(s.open for s in sessions), "failed": sum(errors.values()),
                         "errors": dict(errors.most_common(5)), "secs": time.perf_counter() - started}
            elif op == "check":
                live = [s for s in sessions if s.open]
                n = min(int(cmd.get("n", 20)), len(live))
                picked = live[:: max(1, len(live) // n)][:n] if n else []
                errors = Counter()
                alive = 0
                for s in picked:
                    try:
                        with anyio.fail_after(CALL_TIMEOUT):
                            answer = await s.request("tools/call", {"name": "echo", "arguments": {"text": "alive"}})
                        alive += answer.get("result", {}).get("structuredContent", {}).get("result") == "alive"
                    except Exception as exc:  # noqa: BLE001
                        errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                reply = {"ok": True, "alive": alive, "of": len(picked), "errors": dict(errors)}
            elif op == "count":
                reply = {"ok": True, "open": sum(s.open for s in sessions)}
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
            print(json.dumps(reply), flush=True)
        tg.cancel_scope.cancel()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="e.g. http://srv.lab.tailnet (no path)")
    parser.add_argument("--uds", help="connect through this unix socket (the gateway's)")
    parser.add_argument("--proxy", help="connect through this HTTP proxy (a userspace tailscaled's)")
    parser.add_argument("--host-header", help="send this Host (a gateway on a loopback TCP port)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one socket per session, plus POSTs
    try:
        return anyio.run(main_async, args)
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
