"""One Starlette app: SSE (/sse + /messages/), Streamable HTTP (/mcp) and /healthz.

Both transports share one MCPServer. The host lifespan runs the Streamable HTTP session
manager (a mounted sub-app's own lifespan never runs). Nothing here knows about the
network in front of it: Host/Origin checks use the SDK's settings and an allow-list.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from eks_inspector import __version__
from eks_inspector.config import Settings

LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """DNS-rebinding protection: loopback names, the bind address, plus INSPECTOR_ALLOWED_HOSTS ('*' turns it off)."""
    if "*" in settings.allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = list(LOCAL_HOSTS)
    if settings.host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        bind = f"[{settings.host}]" if ":" in settings.host else settings.host
        hosts += [bind, f"{bind}:*"]
    hosts += list(settings.allowed_hosts)
    origins = list(LOCAL_ORIGINS) + list(settings.allowed_origins)
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


def build_app(settings: Settings, mcp: MCPServer) -> Starlette:
    security = transport_security(settings)
    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    streamable = "streamable-http" in settings.transports
    if "sse" in settings.transports:
        routes += mcp.sse_app(transport_security=security, host=settings.host).routes
    if streamable:
        routes += mcp.streamable_http_app(transport_security=security, host=settings.host).routes

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if streamable:
            async with mcp.session_manager.run():
                yield
        else:
            yield

    return Starlette(routes=routes, lifespan=lifespan)
