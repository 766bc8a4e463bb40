"""Keepalive comments go only between events, never inside one (docs/design.md fact 4).

The upstream here is a raw HTTP server because the point is byte timing a real MCP
server does not produce on demand: half an event, a long pause, the rest, then silence.
"""

from __future__ import annotations

import asyncio
import threading

from mcp_tailnet_sidecar.sse import KEEPALIVE

from .conftest import free_port, wait_for

FIRST_HALF = b'event: message\r\ndata: {"jsonrpc": "2.0", "method": "notifications/progress",'
SECOND_HALF = b' "params": {"progress": 1}}\r\n\r\n'
SECOND_EVENT = b'event: message\ndata: {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}\n\n'
PAUSE = 1.6


class SlowSseUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        writer.write(FIRST_HALF)
        await writer.drain()
        await asyncio.sleep(PAUSE)
        writer.write(SECOND_HALF)
        await writer.drain()
        await asyncio.sleep(PAUSE)
        writer.write(SECOND_EVENT)
        await writer.drain()
        writer.close()

    def __enter__(self) -> "SlowSseUpstream":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, "127.0.0.1", self.port),
                                         self.loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_keepalive_only_between_events(gateway_factory):
    with SlowSseUpstream() as upstream:
        gw = gateway_factory(f"http://127.0.0.1:{upstream.port}", SIDECAR_KEEPALIVE_INTERVAL="0.3")
        received: list[bytes] = []
        with gw.client(timeout=30) as c, c.stream("GET", "/mcp", headers={"Accept": "text/event-stream"}) as r:
            assert r.status_code == 200
            assert r.headers["x-accel-buffering"] == "no"
            assert r.headers["content-type"].startswith("text/event-stream")
            for chunk in r.iter_raw():
                received.append(chunk)
    body = b"".join(received)
    # transparent: without our comments the bytes are exactly the upstream's
    assert body.replace(KEEPALIVE, b"") == FIRST_HALF + SECOND_HALF + SECOND_EVENT
    # never inside an event: the first event arrives whole, with nothing in between
    assert FIRST_HALF + SECOND_HALF in body
    # and during the idle pause after it, keepalives did flow
    after_first = body.split(FIRST_HALF + SECOND_HALF, 1)[1]
    assert after_first.count(KEEPALIVE) >= 2, after_first
    # each keepalive starts at an event boundary
    pos = body.find(KEEPALIVE)
    while pos != -1:
        before = body[:pos].replace(KEEPALIVE, b"")
        assert before == b"" or before.endswith((b"\r\n\r\n", b"\n\n")), before[-40:]
        pos = body.find(KEEPALIVE, pos + 1)
    # (the keepalives that follow the first event were made during the pause after it, so
    # the first event was relayed as soon as it was complete, not held until stream end)
