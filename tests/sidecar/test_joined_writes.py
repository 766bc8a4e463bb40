"""serving.WRITE_TOGETHER: writes an app makes inside `together()` reach the peer as one.

uvicorn writes a response's head and each body message separately, and asyncio sends each at
once, so a reader can see the head without what follows (serve's race, docs/design.md fact 20,
needs exactly that). Driven through the real uvicorn server the gateway runs (serving.make_server,
httptools) on a socket of our own: an app that waits between its head and its body inside
`together()` still reaches the client in one piece; the control without it arrives in two.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mcp_tailnet_sidecar import serving

BODY = b"event: message\r\ndata: {}\r\n\r\n"
PAUSE = 0.2  # between head and body: the control's first read ends before the body exists
BOUND = 10.0


def app(join: bool):
    async def asgi(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        together = serving.writes_together(scope) if join else contextlib.nullcontext
        with together():
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            await asyncio.sleep(PAUSE)
            await send({"type": "http.response.body", "body": BODY, "more_body": False})
    return asgi


@contextlib.asynccontextmanager
async def serving_app(asgi: Any) -> AsyncIterator[tuple[str, int]]:
    sock = serving.tcp_socket("127.0.0.1", 0)
    server = serving.make_server(asgi, drain_timeout=1)
    server.config.lifespan = "off"
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield sock.getsockname()[:2]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, BOUND)


async def first_read(addr: tuple[str, int]) -> bytes:
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        return await asyncio.wait_for(reader.read(65536), BOUND)
    finally:
        writer.close()


@pytest.mark.parametrize("join", [True, False], ids=["together", "control"])
def test_head_and_body_written_together_arrive_in_one_read(join):
    async def go() -> bytes:
        async with serving_app(app(join)) as addr:
            return await first_read(addr)

    first = asyncio.run(asyncio.wait_for(go(), BOUND))
    assert first.startswith(b"HTTP/1.1 200 ")
    assert (BODY in first) is join, first


def test_writes_held_in_together_go_out_when_the_transport_closes():
    class Recorder:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def close(self) -> None:
            self.closed = True

        def is_closing(self) -> bool:
            return self.closed

    inner = Recorder()
    joined = serving.JoinedWrites(inner)  # type: ignore[arg-type]
    joined.write(b"a")
    with joined.together():
        joined.write(b"b")
        joined.write(b"c")
        assert inner.writes == [b"a"]
        joined.close()
    joined.write(b"d")
    assert inner.writes == [b"a", b"bc", b"d"] and inner.closed and joined.is_closing()


def test_without_the_extension_together_does_nothing():
    assert serving.writes_together({"type": "http"}) is contextlib.nullcontext
