"""Refuse requests that came in through Tailscale Funnel (from the public internet).

The server is meant for the tailnet only. serve marks every request it relays from
Funnel with `Tailscale-Funnel-Request: ?1` and deletes a client-sent copy first
(tailscale v1.102.3 ipn/ipnlocal/serve.go), so the header cannot be forged from the
tailnet and its presence means the public internet. We never render `AllowFunnel`;
this guard holds even if someone turns Funnel on by hand (`tailscale funnel`), and the
readiness check reports it (serveconfig.funnel).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

FUNNEL_HEADER = b"tailscale-funnel-request"
logger = logging.getLogger("mcp_tailnet_sidecar")
ASGIApp = Callable[[dict[str, Any], Callable, Callable], Awaitable[None]]


class RefuseFunnel:
    """ASGI middleware: 403 for a Funnel request, before the gateway sees it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and any(name.lower() == FUNNEL_HEADER for name, _ in scope.get("headers") or ()):
            logger.warning("refused a request through Tailscale Funnel", extra={"event": "funnel_refused",
                                                                               "path": scope.get("path")})
            body = (json.dumps({"error": "this MCP server is reachable only over the tailnet; "
                                         "requests through Tailscale Funnel are refused"}) + "\n").encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
