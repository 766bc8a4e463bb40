"""UpstreamClient never sends a call on a connection the upstream has closed for idleness.

The MCP servers behind the gateway mostly run on uvicorn (the stock server, FastMCP), whose
kept-alive connections close after 5 s idle. When the gateway's event loop is busy (the load
soak, docs/benchmarks.md) the upstream's close can sit unread in the socket while the pool hands
that connection to the next call: the call is written, the upstream answers nothing, and the
client gets 502 for a call the upstream never saw. A POST cannot be retried safely (the
upstream may have run it), so the pool must not reuse a connection that old
(upstream_client.IDLE_EXPIRY, below uvicorn's 5 s).

Driven as it happens: a real uvicorn upstream (the stock server), one call, the event loop then
blocked past the upstream's keep-alive, then the next call.
"""

from __future__ import annotations

import json
import time

from mcp_tailnet_sidecar.upstream_client import IDLE_EXPIRY, UpstreamClient

from .conftest import ADD_CALL, ADD_CALL_HEADERS

UVICORN_KEEP_ALIVE = 5.0  # uvicorn's default timeout_keep_alive, which the stock server keeps


async def _call(client: UpstreamClient, url: str) -> int:
    r = await client.send(client.build_request("POST", f"{url}/mcp", headers=ADD_CALL_HEADERS, content=ADD_CALL))
    try:
        body = await r.aread()
    finally:
        await r.aclose()
    assert r.status_code == 200, body
    assert json.loads(body)["result"]["structuredContent"] == {"result": 5}
    return r.status_code


def test_expiry_is_below_uvicorns_keep_alive():
    assert 0 < IDLE_EXPIRY < UVICORN_KEEP_ALIVE


def test_a_connection_the_upstream_closed_while_the_loop_was_busy_is_not_reused(stock_server, loop_run):
    async def main() -> None:
        client = UpstreamClient(stock_server.url, connect_timeout=5)
        try:
            await _call(client, stock_server.url)
            assert len(client._idle) == 1
            # a busy event loop: the upstream closes the idle connection meanwhile, unseen by us
            time.sleep(UVICORN_KEEP_ALIVE + 0.7)
            await _call(client, stock_server.url)  # before the fix: RemoteProtocolError / ReadError
            await _call(client, stock_server.url)  # and the new connection is kept alive as usual
            assert len(client._idle) == 1 and not client._busy
        finally:
            await client.aclose()

    loop_run(main())
