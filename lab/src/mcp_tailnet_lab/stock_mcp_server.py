"""A stock MCP server: the `mcp` SDK with its default settings and a few trivial tools.

It stands for "an unchanged MCP server" in tests, benchmarks and the compose example:
nothing here loosens the SDK's defaults (bound to 127.0.0.1, the SDK turns on its
DNS-rebinding protection with a localhost-only Host/Origin allow-list). Both transports
are served from one port, the way the SDK's own apps define them: SSE on `/sse` +
`/messages/`, Streamable HTTP on `/mcp`.

Run: `python -m mcp_tailnet_lab.stock_mcp_server --port 8080`
(`--caller-headers` adds the tool `caller_headers`, off by default so the stock tool list stays
echo/add/sleep: tests of the gateway's `Mcp-Tailnet-*` headers read what reached the server.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from starlette.applications import Starlette

MAX_SLEEP_SECONDS = 120.0


CALLER_HEADER_PREFIXES = ("mcp-tailnet-", "tailscale-")


def build_server(caller_headers: bool = False) -> MCPServer:
    """The MCP server with its tools; kept free of transport settings on purpose."""
    mcp = MCPServer("stock-mcp-server")

    if caller_headers:
        @mcp.tool()
        def caller_headers(ctx: Context) -> str:
            """The Mcp-Tailnet-* and Tailscale-* request headers (also spelt with `_`) that reached this server, as JSON."""
            seen: dict[str, list[str]] = {}
            request = ctx.request_context.request
            raw = request.headers.raw if request is not None else []
            for k, v in raw:
                name = k.decode("latin-1").lower()
                if name.replace("_", "-").startswith(CALLER_HEADER_PREFIXES):  # underscore look-alikes too
                    seen.setdefault(name, []).append(v.decode("latin-1"))
            return json.dumps(seen, sort_keys=True)

    @mcp.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool()
    async def sleep(seconds: float) -> str:
        """Wait, then answer (for drain and idle-stream tests); at most 120 s."""
        await anyio.sleep(max(0.0, min(float(seconds), MAX_SLEEP_SECONDS)))
        return f"slept {seconds}"

    return mcp


def build_app(transport: str = "both", host: str = "127.0.0.1", caller_headers: bool = False) -> Starlette:
    """A Starlette app serving the chosen transports with the SDK's default settings.

    `host` is passed exactly as `MCPServer.run_*_async` would pass it, so the SDK picks its
    own default transport security for that bind address.
    """
    mcp = build_server(caller_headers)
    routes = []
    if transport in ("both", "sse"):
        routes += mcp.sse_app(host=host).routes
    if transport in ("both", "streamable-http"):
        routes += mcp.streamable_http_app(host=host).routes

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        if transport == "sse":
            yield
            return
        async with mcp.session_manager.run():
            yield

    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--transport", choices=["both", "sse", "streamable-http"], default="both")
    parser.add_argument("--caller-headers", action="store_true", help="add the caller_headers tool")
    args = parser.parse_args(argv)
    uvicorn.run(build_app(args.transport, args.host, args.caller_headers), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
