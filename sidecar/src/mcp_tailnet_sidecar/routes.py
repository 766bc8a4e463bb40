"""Which transport a request speaks, as a typed route: from SIDECAR_PATHS and the endpoints the upstream announced.

Why: the legacy SSE transport has two halves, a stream (GET) and a message endpoint
(POST ?<key>=<session>). Which path and which query key the message endpoint uses is the
server's choice (the Python SDK: `/messages/?session_id=`, the TypeScript SDK's
server-everything: `/message?sessionId=`, a hub: `/servers/<name>/messages/?session_id=`),
and the server tells the client in the stream's first event, `endpoint`. So the gateway
learns the endpoint from that event instead of guessing it from a path literal: a guess
that misses a custom path relays its POSTs as Streamable HTTP, past session binding,
denial injection, list filtering and the call's audit outcome.

An announced endpoint is accepted only if it stays on this gateway (no other origin),
names a path the gateway serves, and carries exactly one query parameter (the session
key the gateway then binds); anything else closes the stream (fail closed): a client
following it would post where the gateway cannot bind the session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

WHOAMI_PATH = "/.well-known/mcp-tailnet/whoami"  # answered by the gateway itself, never forwarded
MAX_ENDPOINTS = 1024  # distinct message endpoints one gateway learns (a hub has one per server)
_BASE = "http://gateway.invalid"  # resolves an endpoint against the stream URL; another origin stays visible


class RouteKind(Enum):
    SSE_STREAM = "sse_stream"  # GET without a session: a legacy SSE stream if its first event is `endpoint`
    SSE_POST = "sse_post"  # a learned message endpoint: the query key names a legacy SSE session
    STREAMABLE_HTTP = "streamable_http"  # everything else on a served path
    WHOAMI = "whoami"  # WHOAMI_PATH: the caller's identity and tools decision inputs, as the gateway sees them


class Transport(str, Enum):
    """The `transport` of audit lines."""

    SSE = "sse"
    STREAMABLE_HTTP = "streamable-http"


@dataclass(frozen=True)
class SseEndpoint:
    """A legacy SSE message endpoint: the (decoded) path clients POST to and the session's query key."""

    path: str
    key: str


@dataclass(frozen=True)
class Route:
    kind: RouteKind
    served: str  # the SIDECAR_PATHS entry that matched (the metrics label: bounded)
    endpoint: SseEndpoint | None = None  # set for SSE_POST

    @property
    def transport(self) -> Transport:
        return Transport.STREAMABLE_HTTP if self.kind is RouteKind.STREAMABLE_HTTP else Transport.SSE


class EndpointRefused(ValueError):
    """An `endpoint` event the gateway will not pass on; the message says why (logged)."""


@dataclass
class Routes:
    paths: tuple[str, ...]
    max_endpoints: int = MAX_ENDPOINTS
    _endpoints: dict[str, SseEndpoint] = field(default_factory=dict)

    def served(self, path: str) -> str | None:
        """The SIDECAR_PATHS entry covering `path` (decoded), or None: not relayed."""
        if any(seg in (".", "..") for seg in path.split("/")):
            return None  # dot segments: the upstream (or httpx) may resolve them outside the allowed paths
        for p in self.paths:
            base = p.rstrip("/")
            if path == p or path == base or path.startswith(base + "/"):
                return p
        return None

    def resolve(self, method: str, path: str, *, has_session_header: bool) -> Route | None:
        if path == WHOAMI_PATH:
            return Route(RouteKind.WHOAMI, RouteKind.WHOAMI.value)
        served = self.served(path)
        if served is None:
            return None
        endpoint = self._endpoints.get(path)
        if endpoint is not None and method != "GET":
            return Route(RouteKind.SSE_POST, served, endpoint)
        if method == "GET" and not has_session_header:
            return Route(RouteKind.SSE_STREAM, served)
        return Route(RouteKind.STREAMABLE_HTTP, served)

    def learn(self, stream_raw_path: str, data: str) -> tuple[SseEndpoint, str]:
        """The endpoint (and session id) an `endpoint` event announces on the stream at
        `stream_raw_path`, remembered for routing; EndpointRefused if the gateway cannot bind it."""
        parts = urlsplit(urljoin(_BASE + stream_raw_path, data.strip()))
        if f"{parts.scheme}://{parts.netloc}" != _BASE:
            raise EndpointRefused(f"endpoint {data[:120]!r} points at another origin, past the gateway")
        path = unquote(parts.path)
        if self.served(path) is None:
            raise EndpointRefused(f"endpoint path {path[:120]!r} is not one this gateway serves "
                                  f"(SIDECAR_PATHS={','.join(self.paths)})")
        query = parse_qsl(parts.query, keep_blank_values=True)
        if len(query) != 1 or not query[0][1]:
            raise EndpointRefused(f"endpoint {data[:120]!r} must carry exactly one query parameter, the session "
                                  f"id, for the gateway to bind the session (it has {len(query)})")
        key, session_id = query[0]
        endpoint = SseEndpoint(path, key)
        known = self._endpoints.get(path)
        if known is None:
            if len(self._endpoints) >= self.max_endpoints:
                raise EndpointRefused(f"the gateway already knows {self.max_endpoints} message endpoints")
            self._endpoints[path] = endpoint
        elif known != endpoint:
            raise EndpointRefused(f"endpoint {path[:120]!r} was announced with session key {known.key!r} "
                                  f"before, now {key[:40]!r}")
        return endpoint, session_id
