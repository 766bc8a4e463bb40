"""One Starlette app: the aggregate on /mcp (+ legacy /sse, /messages/), every upstream
alone on /servers/<name>/mcp (+ /servers/<name>/sse, /servers/<name>/messages/), and
/healthz.

DNS-rebinding protection allows the loopback names and the bind address only: the
sidecar's gateway talks to the hub with the hub's own Host (docs/design.md fact 2).
Every endpoint's session manager runs in the app lifespan, beside the hub's task group
that holds every Link; leaving the lifespan stops them all.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
from mcp.server.runner import serve_loop
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from mcp_hub import __version__, server
from mcp_hub.hub import Hub
from mcp_hub.link import State
from mcp_hub.settings import Settings

LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def transport_security(settings: Settings) -> TransportSecuritySettings:
    bind = f"[{settings.host}]" if ":" in settings.host else settings.host
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=[*LOCAL_HOSTS, bind, f"{bind}:*"],
                                     allowed_origins=[*LOCAL_ORIGINS, f"http://{bind}:*"])


def _endpoint(base: str, mcp_server: server.HubServer, security: TransportSecuritySettings,
              settings: Settings) -> tuple[list[BaseRoute], StreamableHTTPSessionManager]:
    """Streamable HTTP at {base}/mcp and SSE at {base}/sse + {base}/messages/ for one Server."""
    manager = StreamableHTTPSessionManager(app=mcp_server, security_settings=security,
                                           session_idle_timeout=settings.session_idle_timeout,
                                           max_sessions=settings.max_sessions)
    sse = SseServerTransport(f"{base}/messages/", security_settings=security)

    async def handle_sse(scope: Scope, receive: Receive, send: Send) -> None:
        async with sse.connect_sse(scope, receive, send) as (read, write):
            # Handshake-only (not Server.run's dual-era loop): a discover probe must not lock
            # the stream into the sessionless era; refused, the client falls back to initialize.
            await serve_loop(mcp_server, read, write, lifespan_state={},
                             init_options=mcp_server.create_initialization_options())

    class _Sse:  # an ASGI endpoint class, so Starlette hands it the raw scope
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await handle_sse(scope, receive, send)

    routes: list[BaseRoute] = [
        Route(f"{base}/mcp", endpoint=StreamableHTTPASGIApp(manager)),
        Route(f"{base}/sse", endpoint=_Sse(), methods=["GET"]),
        Mount(f"{base}/messages/", app=sse.handle_post_message),
    ]
    return routes, manager


def build_app(settings: Settings, hub: Hub) -> Starlette:
    security = transport_security(settings)
    every = frozenset(hub.config.servers)
    routes: list[BaseRoute] = []
    managers: list[StreamableHTTPSessionManager] = []
    views = [("", every, "all")] + [(f"/servers/{name}", frozenset({name}), name) for name in sorted(every)]
    for base, servers, label in views:
        endpoint_routes, manager = _endpoint(base, server.build(hub, servers, label), security, settings)
        routes += endpoint_routes
        managers.append(manager)

    async def healthz(_: Request) -> Response:
        """Alive, plus each shared upstream's state (per-session ones have no single state)."""
        shared = {name: {"state": link.state.value, **({"reason": link.reason} if link.state is State.DOWN else {})}
                  for name, link in hub.shared.items()}
        return JSONResponse({"status": "ok", "version": __version__, "children": hub.children.count,
                             "sessions": len(hub.sessions), "shared": shared})

    routes.insert(0, Route("/healthz", healthz, methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg, contextlib.AsyncExitStack() as stack:
            await hub.run(tg)
            for manager in managers:
                await stack.enter_async_context(manager.run())
            try:
                yield
            finally:
                await stack.aclose()  # sessions end first: their links stop with them
                tg.cancel_scope.cancel()

    return Starlette(routes=routes, lifespan=lifespan)
