"""The gateway keeps an idle kept-alive connection longer than tailscale serve does.

serve's reverse proxy (tailscale v1.102.3 ipn/ipnlocal/serve.go, getTransport) closes a backend
connection after 90 s idle. If the gateway closed first, a POST that serve writes on that
connection just as the gateway closes it fails with 502: Go's transport retries only replayable
requests (net/http Transport.shouldRetryRequest), and a tools/call is a POST with a body. So the
gateway's listener must keep an idle connection past serve's 90 s (docs/benchmarks.md, "What
limits the tailnet path beyond the gateway").

The server here is the one the gateway runs (serving.make_server on serving.tcp_socket, httptools
as deployed); the idle deadline is read from the timer uvicorn arms on the real connection after
a real answer, so nothing waits 90 s.
"""

from __future__ import annotations

import asyncio

from mcp_tailnet_sidecar import serving

from .conftest import free_port


async def _ok(scope, receive, send):  # noqa: ANN001, ANN202 - a bare ASGI app
    if scope["type"] == "lifespan":
        for _ in range(2):  # startup, then shutdown
            message = await receive()
            await send({"type": message["type"] + ".complete"})
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _idle_deadline_after_one_answer() -> tuple[float, bool]:
    """Seconds until the server closes a kept-alive connection left idle after one answer, and
    whether that connection is still open."""
    port = free_port("127.0.0.2")
    sock = serving.tcp_socket("127.0.0.2", port)
    server = serving.make_server(_ok, drain_timeout=1.0)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(20):
            while not server.started:
                await asyncio.sleep(0.05)
            reader, writer = await asyncio.open_connection("127.0.0.2", port)
            writer.write(b"POST /mcp HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert await reader.readexactly(2) == b"ok"
            await asyncio.sleep(0.1)  # the server arms its idle timer once the answer is complete
            (conn,) = server.server_state.connections
            timer = conn.timeout_keep_alive_task
            assert timer is not None, "no idle timer armed: the connection would never be closed"
            left = timer.when() - asyncio.get_running_loop().time()
            still_open = not reader.at_eof()
            writer.close()
        return left, still_open
    finally:
        server.should_exit = True
        async with asyncio.timeout(20):
            await task


def test_gateway_outlasts_serves_idle_timeout():
    left, still_open = asyncio.run(_idle_deadline_after_one_answer())
    assert still_open
    assert left > serving.SERVE_IDLE_CONN_TIMEOUT, (
        f"the gateway closes an idle connection after {left:.0f} s, before serve's "
        f"{serving.SERVE_IDLE_CONN_TIMEOUT:.0f} s: a POST serve writes at that moment fails with 502")

