"""The gateway: a transparent MCP reverse proxy that only `tailscale serve` can reach.

Why it exists (docs/design.md facts 1, 2, 4):
- it listens on a unix socket (root) or a loopback alias such as 127.0.0.2 (non-root,
  settings.GatewayListen), never on 127.0.0.1 where userspace tailscaled forwards
  unserved tailnet ports; `tailscale serve` is its only caller from the tailnet;
- it checks the external Host/Origin against the node's tailnet names and talks to the
  upstream with the upstream's own Host and no foreign Origin, so an unchanged MCP SDK
  server with default DNS-rebinding protection works behind a tailnet name;
- it relays event streams event by event, unbuffered, with keepalive comments between
  events on idle streams and `X-Accel-Buffering: no`;
- it judges every request before relaying it (judge.py): a body it cannot read one way
  only is refused, and what it judged is what it forwards (docs/design.md fact 10);
- it applies the optional tool policy (access.py: the policy file and/or the tailnet
  policy's grants; tools/call checked, tools/list filtered, also inside streamed answers)
  and audits every tool call when admitted and when it ends;
- it owns every `Mcp-Tailnet-*` header: client copies are dropped, the caller's verified
  identity is set for callers that came through serve (caller.py); it answers
  `/.well-known/mcp-tailnet/whoami` itself (whoami.py);
- it binds every session id to the caller that opened it (sessions.py) and bounds what
  one tailnet source may hold open (limits.py), pending requests, body reads and answers.

Written as a plain ASGI app (no router) because each request needs full control over
when bytes are sent and over client disconnects. Which transport a request speaks is a
typed Route (routes.py: SIDECAR_PATHS plus the SSE message endpoints upstreams announced);
the transports' own parts live beside it: sse_transport.py (legacy SSE streams and their
sessions), relay_events.py (event streams), relay_json.py (JSON and plain answers),
responses.py (what the gateway answers itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

import anyio
import httpx
from starlette.datastructures import Headers

from mcp_tailnet_sidecar import audit, caller
from mcp_tailnet_sidecar.access import CAPABILITIES_HEADER, Access, parse_grant
from mcp_tailnet_sidecar.identity import Identity, IdentityResolver, source_ip
from mcp_tailnet_sidecar.judge import (
    INVALID_REQUEST,
    Unjudgeable,
    content_encoding_refusal,
    is_modern,
    judge,
    query_pairs,
    routing_headers,
)
from mcp_tailnet_sidecar.jsonrpc import (
    DuplicatePending,
    Pending,
    PendingFull,
    Tracker,
    denial,
    request_key,
    settle,
)
from mcp_tailnet_sidecar.limits import SourceLimiter
from mcp_tailnet_sidecar.metrics import Metrics
from mcp_tailnet_sidecar.names import NodeNames
from mcp_tailnet_sidecar.policy import Policy
from mcp_tailnet_sidecar.relay_events import INJECT, AnswerWatcher, EventRelay
from mcp_tailnet_sidecar.relay_json import Settle, relay_bytes, relay_json
from mcp_tailnet_sidecar.responses import HOP_BY_HOP, Refused, Reject, head, json_answer, plain
from mcp_tailnet_sidecar.routes import Route, RouteKind, Routes, Transport
from mcp_tailnet_sidecar.sessions import McpSession, SessionTable, SseSession, SseSessionTable
from mcp_tailnet_sidecar.serving import writes_together
from mcp_tailnet_sidecar.settings import Settings
from mcp_tailnet_sidecar.sse import json_event
from mcp_tailnet_sidecar.sse_transport import SseStreamWatcher
from mcp_tailnet_sidecar.upstream_client import UpstreamClient, supports
from mcp_tailnet_sidecar.whoami import whoami

logger = logging.getLogger("mcp_tailnet_sidecar.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Request headers never forwarded upstream: the upstream gets its own Host (httpx sets it
# from the URL), no Origin (a tailnet Origin is foreign to a loopback server), and a
# Content-Length computed from the body we actually send.
# A judged body is forwarded re-serialised as UTF-8 JSON, so its Content-Type is ours too
# (a client's "charset=utf-16" must not make the upstream decode the new bytes another way).
DROP_REQUEST = HOP_BY_HOP | {"host", "origin", "content-length"}
RELAYED_METHODS = frozenset({"GET", "POST", "DELETE", "HEAD", "OPTIONS"})  # bodies only on POST, always judged


@dataclass
class GatewayConfig:
    """The gateway's part of the settings; every default is Settings' (settings.py is the one source)."""

    upstream_url: str
    paths: tuple[str, ...] = Settings.paths
    policy: Policy | None = None
    tailnet_grants: bool = Settings.tailnet_grants
    server_name: str | None = Settings.server_name
    max_body_bytes: int = Settings.max_body_bytes
    max_event_bytes: int = Settings.max_event_bytes
    connect_timeout: float = Settings.connect_timeout
    request_timeout: float = Settings.request_timeout
    keepalive_interval: float = Settings.keepalive_interval
    body_read_timeout: float = Settings.body_read_timeout
    max_concurrent_per_source: int = Settings.max_concurrent_per_source
    max_json_response_bytes: int = Settings.max_json_response_bytes
    max_pending: int = Settings.max_pending

    @classmethod
    def from_settings(cls, s: Settings) -> GatewayConfig:
        """The gateway's fields of the validated settings, by name (a new setting needs no other wiring)."""
        return cls(**{f.name: getattr(s, f.name) for f in fields(cls)})


class Gateway:
    def __init__(self, config: GatewayConfig, *, names: NodeNames | None = None,
                 resolver: IdentityResolver | None = None, metrics: Metrics | None = None) -> None:
        self.config = config
        self.upstream = config.upstream_url.rstrip("/")
        self.names = names or NodeNames()
        self.resolver = resolver or IdentityResolver()
        self.metrics = metrics or Metrics()
        self.draining = False
        self.routes = Routes(config.paths)
        self.access = Access(config.policy, config.tailnet_grants)
        self._sse_sessions = SseSessionTable()
        self._mcp_sessions = SessionTable(max_pending=config.max_pending)
        self.limiter = SourceLimiter(config.max_concurrent_per_source)
        self._mcp_orphans: dict[str, Tracker] = {}  # Mcp-Session-Id -> answers owed on a resumed stream
        self._streams: set[EventRelay] = set()
        self._client: httpx.AsyncClient | UpstreamClient | None = None

    # -- lifecycle ---------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient | UpstreamClient:
        """The pooled raw HTTP/1.1 client for a plain-http upstream (the default: a loopback
        server; a third of httpx's CPU per call, docs/benchmarks.md), httpx for https."""
        if self._client is None:
            c = self.config
            if supports(self.upstream):
                self._client = UpstreamClient(self.upstream, connect_timeout=c.connect_timeout)
                return self._client
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(connect=c.connect_timeout, read=None, write=c.request_timeout,
                                      pool=c.connect_timeout),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def drain(self) -> None:
        """Stop idle event streams once they owe no answers; in-flight calls finish."""
        self.draining = True
        for relay in list(self._streams):
            relay.wake()

    # -- ASGI --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        has_session = any(k.lower() == b"mcp-session-id" for k, _ in scope["headers"])
        route = self.routes.resolve(scope["method"], scope["path"], has_session_header=has_session)
        label = route.served if route is not None else "other"
        status_box = [0]

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        try:
            try:
                if route is None:
                    raise Reject(404, f"not an MCP endpoint; this gateway serves {', '.join(self.config.paths)}")
                await self._handle(route, scope, receive, counting_send)
            except Reject as rej:
                if rej.reason is not None:
                    self.metrics.of(self.metrics.refused, rej.reason.value).inc()
                if status_box[0]:  # the response had already started; all we can do is stop
                    logger.warning("aborting response after it started: %s", rej.message)
                elif rej.answer is not None:
                    await json_answer(counting_send, rej.status, rej.answer, rej.headers)
                else:
                    await plain(counting_send, rej.status, rej.message, rej.headers)
        except Exception as exc:  # noqa: BLE001 - one log line, never a stack trace (logs are read widely)
            logger.error("request to %s failed: %s", label, f"{type(exc).__name__}: {exc}"[:300])
            if not status_box[0]:
                with contextlib.suppress(Exception):  # the connection may already be unusable
                    await plain(counting_send, 500, "the gateway failed on this request; see its log")
        finally:
            self.metrics.of(self.metrics.requests, label, scope["method"], str(status_box[0])).inc()

    # -- one request ---------------------------------------------------------------

    async def _handle(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        self._check_names(headers)
        source = source_ip(headers)
        if not self.limiter.acquire(source):
            raise Reject(429, f"{source} already holds {self.limiter.limit} requests/streams open through this "
                               f"gateway (SIDECAR_MAX_CONCURRENT_PER_SOURCE); retry when one ends",
                          Refused.SOURCE_LIMIT, headers=((b"retry-after", b"1"),))
        try:
            if route.kind is RouteKind.WHOAMI:
                await self._whoami(scope, send, headers)
            else:
                await self._relay(route, scope, receive, send, headers)
        finally:
            self.limiter.release(source)

    async def _relay(self, route: Route, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        method = scope["method"]
        if method not in RELAYED_METHODS:
            raise Reject(405, f"method {method} is not relayed", Refused.METHOD,
                          headers=((b"allow", b"GET, POST, DELETE"),))
        transport = route.transport
        if method == "POST":
            self._check_declared_length(headers)
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            params = query_pairs(query)
            modern = is_modern(routing_headers(scope["headers"]))
        except Unjudgeable as exc:
            raise Reject.unjudgeable(exc) from None
        session_ids = [v for k, v in scope["headers"] if k.lower() == b"mcp-session-id"]
        if len(session_ids) > 1:
            raise Reject(400, "Mcp-Session-Id appears more than once", Refused.UNJUDGEABLE)
        identity = await self._identity(headers)
        # Raw bytes, not decoded str: a header value with obs-text (bytes >= 0x80, which serve
        # passes on) must be relayed as sent, not fail to re-encode.
        upstream_headers = [(k, v) for k, v in caller.strip(scope["headers"])
                            if k.decode("latin-1").lower() not in DROP_REQUEST]
        upstream_headers += caller.caller_headers(identity)

        sse_session: SseSession | None = None
        if route.kind is RouteKind.SSE_POST:
            assert route.endpoint is not None
            key = route.endpoint.key
            sid = params.get(key)
            if not sid:
                raise Reject(400, f"the {key} query parameter is required", Refused.SESSION)
            sse_session = self._sse_sessions.lookup(route.endpoint, sid, identity.owner)
            if sse_session is None:
                raise Reject(404, "no such session (sessions belong to the caller that opened them)",
                             Refused.SESSION)
        mcp_sid = session_ids[0].decode("latin-1") if session_ids else None
        mcp_session: McpSession | None = None
        if route.kind is RouteKind.STREAMABLE_HTTP and mcp_sid is not None:
            if modern:
                # 2026-07-28 has no sessions: the id means nothing, and no upstream may act on it.
                upstream_headers = [(k, v) for k, v in upstream_headers if k.lower() != b"mcp-session-id"]
                mcp_sid = None
            else:
                mcp_session = self._mcp_sessions.lookup(mcp_sid, identity.owner)
                if mcp_session is None:
                    raise Reject(404, "Session not found", Refused.SESSION, answer={
                        "jsonrpc": "2.0", "id": None,
                        "error": {"code": INVALID_REQUEST, "message": "Session not found"}})

        body = b""
        messages: list[dict[str, Any]] | None = None
        if method == "POST":
            if why := content_encoding_refusal(scope["headers"]):
                raise Reject(415, why, Refused.CONTENT_ENCODING)
            try:
                judged = judge(await self._read_body(headers, receive), scope["headers"])
            except Unjudgeable as exc:
                raise Reject.unjudgeable(exc) from None
            body, messages = judged.body, judged.messages
            upstream_headers = [(k, v) for k, v in upstream_headers if k.lower() != b"content-type"]
            upstream_headers.append((b"content-type", b"application/json"))

        tracker = Tracker(limit=self.config.max_pending)  # answers expected on this request's own response
        added: list[str] = []
        try:
            if messages:
                target = sse_session.tracker if sse_session is not None else tracker
                denied = await self._admit(messages, identity, target, mcp_session, added, transport)
                if denied:
                    await self._answer_denied(send, messages, denied, sse_session)
                    return
            await self._forward(route, scope, receive, send, headers, upstream_headers, body, transport,
                                tracker, sse_session, added, identity, mcp_sid, modern)
        finally:
            if mcp_session is not None:
                for key in added:
                    mcp_session.inflight.take(key)

    async def _forward(self, route: Route, scope: Scope, receive: Receive, send: Send, headers: Headers,
                       upstream_headers: list[tuple[bytes, bytes]], body: bytes, transport: Transport,
                       tracker: Tracker,
                       sse_session: SseSession | None, added: list[str], identity: Identity,
                       mcp_sid: str | None, modern: bool) -> None:
        method = scope["method"]
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.upstream + _raw_path(scope)
        if query:
            url += "?" + query
        request = self.client.build_request(method, url, headers=upstream_headers, content=body)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.request_timeout):
                response = await self.client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            self._fail_pending(tracker, sse_session, added, "upstream_unavailable", transport)
            raise Reject(502, f"the MCP server at {self.upstream} is not answering ({type(exc).__name__})") from None
        except TimeoutError:
            self._fail_pending(tracker, sse_session, added, "timeout", transport)
            raise Reject(504, f"the MCP server at {self.upstream} sent no response within "
                               f"{self.config.request_timeout:g} s") from None
        self.metrics.of(self.metrics.upstream_latency, route.served).observe(time.monotonic() - started)
        if route.kind is RouteKind.STREAMABLE_HTTP and not modern:
            self._note_session(method, mcp_sid, response, identity, scope["path"])

        try:
            if sse_session is not None and response.status_code >= 300:
                self._fail_pending(tracker, sse_session, added, "upstream_error", transport)
            content_type = response.headers.get("content-type", "")
            if content_type.startswith("text/event-stream"):
                stream_tracker = tracker
                if method == "GET" and route.kind is RouteKind.STREAMABLE_HTTP and mcp_sid:
                    stream_tracker = self._mcp_orphans.get(mcp_sid, tracker)
                await self._relay_events(response, scope, send, receive, stream_tracker, route, identity)
            elif tracker and content_type.startswith("application/json"):
                await relay_json(response, send, self._settle(tracker, transport),
                                 max_bytes=self.config.max_json_response_bytes,
                                 request_timeout=self.config.request_timeout)
            else:
                await relay_bytes(response, send, self.config.request_timeout)
        finally:
            await response.aclose()
            self._leftovers(tracker, mcp_sid, response, transport)

    def _note_session(self, method: str, sid: str | None, response: httpx.Response, identity: Identity,
                      path: str) -> None:
        """Bind a session id the upstream issued to its caller; forget one its endpoint ended."""
        issued = response.headers.get("mcp-session-id")
        if issued and response.status_code < 300:
            self._mcp_sessions.bind(issued, identity.owner, path)
        if sid and ((method == "DELETE" and response.status_code < 300) or response.status_code == 404):
            if self._mcp_sessions.forget(sid, path):
                self._mcp_orphans.pop(sid, None)

    def _check_names(self, headers: Headers) -> None:
        names = self.names
        if not names.known:
            raise Reject(503, "this node's tailnet name is not known yet (tailscale is still starting); retry")
        # Serve sends the client's Host in X-Forwarded-Host (set by serve, never taken from
        # the client); to a unix socket its Host is "localhost", over TCP the client's.
        host = headers.get("x-forwarded-host") or headers.get("host") or ""
        if not names.host_allowed(host):
            raise Reject(421, f"Host {host!r} is not a tailnet name of this node; use one of: {names.describe()}")
        origin = headers.get("origin")
        if origin is not None and not names.origin_allowed(origin):
            raise Reject(403, f"Origin {origin!r} is not a tailnet name of this node; use one of: {names.describe()}")

    def _check_declared_length(self, headers: Headers) -> None:
        limit = self.config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Reject(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes",
                          Refused.BODY_TOO_LARGE)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes:
        """The whole body, within SIDECAR_MAX_BODY_BYTES and SIDECAR_BODY_READ_TIMEOUT (a client
        dribbling a body must not hold a connection, a task and its quota for ever)."""
        limit = self.config.max_body_bytes
        self._check_declared_length(headers)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.config.body_read_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise Reject(400, "client went away while sending the body")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise Reject(413, f"request body exceeds the limit of {limit} bytes", Refused.BODY_TOO_LARGE)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise Reject(408, f"the request body did not arrive within {self.config.body_read_timeout:g} s "
                               f"(SIDECAR_BODY_READ_TIMEOUT)", Refused.BODY_TIMEOUT,
                          headers=((b"connection", b"close"),)) from None

    async def _admit(self, messages: list[dict[str, Any]], identity: Identity, target: Tracker,
                     session: McpSession | None, added: list[str], transport: Transport) -> list[dict[str, Any]]:
        """Decide on every request of a judged body; return denial answers, else register all.

        Every request with an id is registered (tool calls and lists for audit and
        filtering, the rest so that its id cannot be reused while it waits), or none is: a
        full tracker gives 429, an id already waiting 400. Allowed calls are audited now.
        """
        access = self.access
        denied: list[dict[str, Any]] = []
        entries: list[tuple[str, Pending]] = []
        notified: list[Pending] = []
        for message in messages:
            method = message.get("method")
            if method is None:
                continue  # the client's answer to a server request
            if method == "tools/call":
                tool = message["params"]["name"]  # judge.py checked it is a string
                if access.active and not access.allows(identity, tool):
                    denied.append(denial(message, identity.who, tool))
                    self._call_done(Pending("call", identity, tool), "denied", None, transport)
                    continue
                entry = Pending("call", identity, tool)
            else:
                entry = Pending("list" if method == "tools/list" else "other", identity)
            key = request_key(message)
            if key is None:  # a notification gets no answer; a call sent as one is audited as sent
                if entry.kind == "call":
                    notified.append(entry)
                continue
            entries.append((key, entry))
        if denied:
            return denied
        keys = [key for key, _ in entries]
        try:
            target.check(keys)
            if session is not None:
                session.inflight.check(keys)
        except PendingFull:
            raise Reject(429, f"{target.limit} requests are already waiting for their answers "
                               f"(SIDECAR_MAX_PENDING); retry when some are answered", Refused.PENDING_FULL,
                          headers=((b"retry-after", b"1"),)) from None
        except DuplicatePending as exc:
            raise Reject(400, f"request id {exc.args[0][:60]} is already waiting for its answer",
                          Refused.DUPLICATE_ID, answer={"jsonrpc": "2.0", "id": None, "error": {
                              "code": INVALID_REQUEST,
                              "message": f"request id {exc.args[0][:60]} is already waiting for its answer"}}) from None
        for key, entry in entries:
            target.add(key, entry)
            if session is not None:
                session.inflight.add(key, entry)
            added.append(key)
            if entry.kind == "call":
                audit.tool_call_admitted(entry, transport=transport.value)
        for entry in notified:
            self._call_done(entry, "sent", None, transport)
        return denied

    @property
    def server_name(self) -> str | None:
        """The name a grant's `servers` globs match: SIDECAR_SERVER_NAME, else our tailnet name's first label."""
        if self.config.server_name:
            return self.config.server_name
        return self.names.dns_name.split(".", 1)[0] if self.names.dns_name else None

    async def _identity(self, headers: Headers) -> Identity:
        try:
            identity = await self.resolver.resolve(headers)
        except Exception as exc:  # WhoIs failing must not take the request down with it
            logger.warning("caller identity lookup failed: %s", exc)
            identity = Identity(source_ip=source_ip(headers))
        if not self.config.tailnet_grants:
            return identity
        # Only serve's copy counts: a caller without a tailnet source address did not come
        # through serve, so a capability header it carries is its own (nothing granted).
        raw = headers.getlist(CAPABILITIES_HEADER) if identity.source_ip is not None else []
        identity = dataclasses.replace(identity, grant=parse_grant(raw, self.server_name or ""))
        self.access.note(identity)
        return identity

    async def _whoami(self, scope: Scope, send: Send, headers: Headers) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            raise Reject(405, "whoami answers GET only", Refused.METHOD, headers=((b"allow", b"GET"),))
        identity = await self._identity(headers)
        await json_answer(send, 200, whoami(identity, self.access, self.server_name),
                          ((b"cache-control", b"no-store"),))

    async def _answer_denied(self, send: Send, messages: list[dict[str, Any]], denied: list[dict[str, Any]],
                             sse_session: SseSession | None) -> None:
        if len(denied) != len(messages):
            # A batch mixing allowed and denied calls is refused as a whole: answering half of
            # it ourselves and half upstream could not be merged back into one response.
            await json_answer(send, 403, denied)
            return
        if sse_session is not None and sse_session.inject is not None:
            try:
                for answer in denied:  # the SSE transport answers on the stream, the POST gets 202
                    await sse_session.inject.send((INJECT, json_event(json.dumps(answer))))
                await plain(send, 202, "Accepted")
                return
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the stream just ended; answer on the POST instead
        await json_answer(send, 200 if sse_session is None else 403, denied[0] if len(denied) == 1 else denied)

    def _call_done(self, entry: Pending, outcome: str, code: int | None, transport: Transport) -> None:
        if entry.kind != "call":
            return
        self.metrics.of(self.metrics.tool_calls, outcome).inc()
        audit.tool_call(entry, outcome, transport=transport.value, error_code=code)

    def _fail_pending(self, tracker: Tracker, sse_session: SseSession | None, added: list[str],
                      outcome: str, transport: Transport) -> None:
        entries = tracker.drain()
        if sse_session is not None:
            entries += [e for k in added if (e := sse_session.tracker.take(k)) is not None]
        for entry in entries:
            self._call_done(entry, outcome, None, transport)

    def _leftovers(self, tracker: Tracker, mcp_sid: str | None, response: httpx.Response, transport: Transport) -> None:
        """Requests whose answer never came on their own response."""
        if not tracker:
            return
        sid = response.headers.get("mcp-session-id") or mcp_sid
        if sid and response.status_code < 300 and response.headers.get("content-type", "").startswith(
                "text/event-stream"):
            # The stream broke; the client may resume it with GET + Last-Event-ID.
            self._mcp_orphans.setdefault(sid, Tracker()).pending.update(tracker.pending)
            tracker.pending.clear()
            if len(self._mcp_orphans) > 1024:
                self._mcp_orphans.pop(next(iter(self._mcp_orphans)))
            return
        outcome = "upstream_error" if response.status_code >= 300 else "aborted"
        for entry in tracker.drain():
            self._call_done(entry, outcome, None, transport)

    # -- event streams -----------------------------------------------------------------

    def _settle(self, tracker: Tracker, transport: Transport) -> Settle:
        """Settles answers to requests waiting in `tracker`: audits calls, filters tool lists."""
        allows = self.access.allows if self.access.active else None
        return lambda m: settle(m, tracker, allows, lambda e, o, c: self._call_done(e, o, c, transport))

    async def _relay_events(self, response: httpx.Response, scope: Scope, send: Send, receive: Receive,
                            tracker: Tracker, route: Route, identity: Identity) -> None:
        extra = [(b"x-accel-buffering", b"no")]
        if "cache-control" not in response.headers:
            extra.append((b"cache-control", b"no-cache"))
        c = self.config
        relay = EventRelay(keepalive_interval=c.keepalive_interval, max_event_bytes=c.max_event_bytes,
                           draining=lambda: self.draining)
        sse: SseStreamWatcher | None = None
        watcher: SseStreamWatcher | AnswerWatcher
        if route.kind is RouteKind.SSE_STREAM:
            # the first event decides: `endpoint` opens a legacy SSE session bound to this caller
            watcher = sse = SseStreamWatcher(
                self.routes, self._sse_sessions, stream_raw_path=_raw_path(scope), owner=identity.owner,
                inject=relay.injector(), max_pending=c.max_pending, settle_for=self._settle,
                on_refused=lambda why: self.metrics.of(self.metrics.refused, Refused.SSE_ENDPOINT.value).inc())
        else:
            watcher = AnswerWatcher(tracker, self._settle(tracker, route.transport))
        self._streams.add(relay)
        self.metrics.sse_streams.inc()
        try:
            await relay.run(response, head(response, extra), send, receive, watcher,
                            hold_head=scope["method"] != "GET", together=writes_together(scope))
        finally:
            self._streams.discard(relay)
            self.metrics.sse_streams.dec()
            if sse is not None:
                for entry in sse.close():
                    self._call_done(entry, "aborted", None, Transport.SSE)


def _raw_path(scope: Scope) -> str:
    """The path as the client sent it (and the upstream got it)."""
    return (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
