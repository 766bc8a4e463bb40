#!/usr/bin/env python3
"""Bench only: the two floors under the gateway's per-call cost, as processes to time beside it.

    python bench/relay_floors.py pipe --listen 127.0.0.30:9080 --upstream 127.0.0.1:8080 [--uvloop]
    python bench/relay_floors.py asgi --listen 127.0.0.31:9080 --upstream 127.0.0.1:8080

`pipe`: the least any Python relay can do: asyncio protocols copying bytes between a client
connection and one upstream connection opened for it, nothing parsed, nothing judged.
`asgi`: the gateway's architecture with none of its work: uvicorn (httptools, asyncio's loop, as
the image runs it) serving a minimal ASGI app that reads the body and relays it through
upstream_client.UpstreamClient, the gateway's own pooled client, with no routing, judging,
policy, identity, audit or metrics. What the gateway costs above `asgi` is its own work; what
`asgi` costs above `pipe` is uvicorn's and the client's.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from mcp_tailnet_sidecar.upstream_client import UpstreamClient


class _Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _Pipe(asyncio.Protocol):
    """One client connection piped to its own upstream connection."""

    upstream_host = "127.0.0.1"
    upstream_port = 8080

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.upstream: asyncio.Transport | None = None
        self.early: list[bytes] = []
        asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        upstream, _ = await loop.create_connection(lambda: _Upstream(self.transport), self.upstream_host,
                                                   self.upstream_port)
        self.upstream = upstream
        for data in self.early:
            upstream.write(data)

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.early.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def _pipe(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Pipe, host, port)
    await server.serve_forever()


def _asgi_app(upstream: str) -> Any:
    client: UpstreamClient | None = None
    base = f"http://{upstream}"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal client
        if scope["type"] != "http":
            return
        client = client or UpstreamClient(base, connect_timeout=5)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"host", b"content-length")]
        response = await client.send(client.build_request(scope["method"], base + scope["path"], headers=headers,
                                                          content=body))
        out = b"".join([chunk async for chunk in response.aiter_raw()])
        await response.aclose()
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": [(b"content-type", response.headers.get("content-type", "").encode()),
                                (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("pipe", "asgi"))
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the MCP server")
    parser.add_argument("--uvloop", action="store_true", help="pipe only: on uvloop's loop")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    if args.kind == "pipe":
        _Pipe.upstream_host, _, up_port = args.upstream.rpartition(":")
        _Pipe.upstream_port = int(up_port)
        if args.uvloop:
            import uvloop

            uvloop.run(_pipe(host, int(port)))
        else:
            asyncio.run(_pipe(host, int(port)))
        return
    import uvicorn

    uvicorn.run(_asgi_app(args.upstream), host=host, port=int(port), http="httptools", loop="asyncio",
                log_level="warning", access_log=False, lifespan="off")


if __name__ == "__main__":
    main()
