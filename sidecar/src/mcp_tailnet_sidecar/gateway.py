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
- it applies the optional tool policy (tools/call checked, tools/list filtered, also
  inside streamed answers) and audits every tool call when admitted and when it ends;
- it binds every session id to the caller that opened it (sessions.py) and bounds what
  one tailnet source may hold open (limits.py), pending requests, body reads and answers.

Written as a plain ASGI app (no router) because each request needs full control over
when bytes are sent and over client disconnects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.datastructures import Headers

from mcp_tailnet_sidecar import audit
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
    MAX_PENDING,
    DuplicatePending,
    Pending,
    PendingFull,
    Tracker,
    decode_messages,
    denial,
    request_key,
    settle,
)
from mcp_tailnet_sidecar.limits import SourceLimiter
from mcp_tailnet_sidecar.metrics import Metrics
from mcp_tailnet_sidecar.names import NodeNames
from mcp_tailnet_sidecar.policy import Policy
from mcp_tailnet_sidecar.sessions import McpSession, SessionTable
from mcp_tailnet_sidecar.sse import KEEPALIVE, EventSplitter, EventTooLarge, json_event, parse_event

if TYPE_CHECKING:
    from mcp_tailnet_sidecar.settings import Settings

logger = logging.getLogger("mcp_tailnet_sidecar.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
# Request headers never forwarded upstream: the upstream gets its own Host (httpx sets it
# from the URL), no Origin (a tailnet Origin is foreign to a loopback server), and a
# Content-Length computed from the body we actually send.
# A judged body is forwarded re-serialised as UTF-8 JSON, so its Content-Type is ours too
# (a client's "charset=utf-16" must not make the upstream decode the new bytes another way).
DROP_REQUEST = HOP_BY_HOP | {"host", "origin", "content-length"}
DROP_RESPONSE = HOP_BY_HOP | {"content-length"}
RELAYED_METHODS = frozenset({"GET", "POST", "DELETE", "HEAD", "OPTIONS"})  # bodies only on POST, always judged
MAX_JSON_RESPONSE = 64 * 1024 * 1024


class Refused(str, Enum):
    """Why the gateway refused a request itself (the `reason` label of mcp_gateway_refused_total)."""

    UNJUDGEABLE = "unjudgeable"
    HEADER_MISMATCH = "header_mismatch"
    CONTENT_ENCODING = "content_encoding"
    QUERY = "query"
    METHOD = "method"
    SESSION = "session"
    SOURCE_LIMIT = "source_limit"
    PENDING_FULL = "pending_full"
    DUPLICATE_ID = "duplicate_id"
    BODY_TIMEOUT = "body_timeout"
    BODY_TOO_LARGE = "body_too_large"


class _Reject(Exception):
    def __init__(self, status: int, message: str, reason: Refused | None = None, *,
                 answer: dict[str, Any] | None = None, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status = status
        self.message = message
        self.reason = reason
        self.answer = answer  # a JSON-RPC error to send instead of plain text
        self.headers = headers

    @classmethod
    def unjudgeable(cls, exc: Unjudgeable) -> _Reject:
        reason = Refused.HEADER_MISMATCH if "Header mismatch" in exc.message else Refused.UNJUDGEABLE
        return cls(exc.status, exc.message, reason, answer=exc.answer())


@dataclass
class SseSession:
    """State of one legacy-SSE session: who opened it, its pending requests, a way to add events."""

    owner: str
    tracker: Tracker = field(default_factory=Tracker)
    inject: MemoryObjectSendStream[tuple[str, bytes]] | None = None


@dataclass
class GatewayConfig:
    upstream_url: str
    paths: tuple[str, ...] = ("/sse", "/messages/", "/mcp")
    policy: Policy | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    max_event_bytes: int = 16 * 1024 * 1024
    connect_timeout: float = 5.0
    request_timeout: float = 300.0
    keepalive_interval: float = 15.0
    body_read_timeout: float = 30.0
    max_concurrent_per_source: int = 64
    max_json_response_bytes: int = MAX_JSON_RESPONSE
    max_pending: int = MAX_PENDING

    @classmethod
    def from_settings(cls, s: Settings) -> GatewayConfig:
        """The gateway's part of the validated settings (one place, so a new setting needs no other wiring)."""
        return cls(upstream_url=s.upstream_url, paths=s.paths, policy=s.policy, max_body_bytes=s.max_body_bytes,
                   max_event_bytes=s.max_event_bytes, connect_timeout=s.connect_timeout,
                   request_timeout=s.request_timeout, keepalive_interval=s.keepalive_interval,
                   body_read_timeout=s.body_read_timeout, max_concurrent_per_source=s.max_concurrent_per_source,
                   max_json_response_bytes=s.max_json_response_bytes, max_pending=s.max_pending)


class Gateway:
    def __init__(self, config: GatewayConfig, *, names: NodeNames | None = None,
                 resolver: IdentityResolver | None = None, metrics: Metrics | None = None) -> None:
        self.config = config
        self.upstream = config.upstream_url.rstrip("/")
        self.names = names or NodeNames()
        self.resolver = resolver or IdentityResolver()
        self.metrics = metrics or Metrics()
        self.draining = False
        self._sse_sessions: dict[str, SseSession] = {}
        self._mcp_sessions = SessionTable(max_pending=config.max_pending)
        self.limiter = SourceLimiter(config.max_concurrent_per_source)
        self._mcp_orphans: dict[str, Tracker] = {}  # Mcp-Session-Id -> answers owed on a resumed stream
        self._streams: set[MemoryObjectSendStream[tuple[str, bytes]]] = set()
        self._client: httpx.AsyncClient | None = None

    # -- lifecycle ---------------------------------------------------------------

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            c = self.config
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
        for tx in list(self._streams):
            try:
                tx.send_nowait(("drain", b""))
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass

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
        route = self._route(scope["path"])
        status_box = [0]

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        try:
            try:
                if route is None:
                    raise _Reject(404, f"not an MCP endpoint; this gateway serves {', '.join(self.config.paths)}")
                await self._handle(route, scope, receive, counting_send)
            except _Reject as rej:
                if rej.reason is not None:
                    self.metrics.refused.labels(rej.reason.value).inc()
                if status_box[0]:  # the response had already started; all we can do is stop
                    logger.warning("aborting response after it started: %s", rej.message)
                elif rej.answer is not None:
                    await _json(counting_send, rej.status, rej.answer, rej.headers)
                else:
                    await _plain(counting_send, rej.status, rej.message, rej.headers)
        except Exception as exc:  # noqa: BLE001 - one log line, never a stack trace (logs are read widely)
            logger.error("request to %s failed: %s", route or "other", f"{type(exc).__name__}: {exc}"[:300])
            if not status_box[0]:
                with contextlib.suppress(Exception):  # the connection may already be unusable
                    await _plain(counting_send, 500, "the gateway failed on this request; see its log")
        finally:
            self.metrics.requests.labels(route or "other", scope["method"], str(status_box[0])).inc()

    def _route(self, path: str) -> str | None:
        if any(seg in (".", "..") for seg in path.split("/")):
            return None  # dot segments: the upstream (or httpx) may resolve them outside the allowed paths
        for p in self.config.paths:
            base = p.rstrip("/")
            if path == p or path == base or path.startswith(base + "/"):
                return p
        return None

    # -- one request ---------------------------------------------------------------

    async def _handle(self, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        self._check_names(headers)
        source = source_ip(headers)
        if not self.limiter.acquire(source):
            raise _Reject(429, f"{source} already holds {self.limiter.limit} requests/streams open through this "
                               f"gateway (SIDECAR_MAX_CONCURRENT_PER_SOURCE); retry when one ends",
                          Refused.SOURCE_LIMIT, headers=((b"retry-after", b"1"),))
        try:
            await self._relay(route, scope, receive, send, headers)
        finally:
            self.limiter.release(source)

    async def _relay(self, route: str, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        method = scope["method"]
        if method not in RELAYED_METHODS:
            raise _Reject(405, f"method {method} is not relayed", Refused.METHOD,
                          headers=((b"allow", b"GET, POST, DELETE"),))
        transport = "sse" if route in ("/sse", "/messages/") else "streamable-http"
        if method == "POST":
            self._check_declared_length(headers)
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            params = query_pairs(query)
            modern = is_modern(routing_headers(scope["headers"]))
        except Unjudgeable as exc:
            raise _Reject.unjudgeable(exc) from None
        session_ids = [v for k, v in scope["headers"] if k.lower() == b"mcp-session-id"]
        if len(session_ids) > 1:
            raise _Reject(400, "Mcp-Session-Id appears more than once", Refused.UNJUDGEABLE)
        identity = await self._identity(headers)
        # Raw bytes, not decoded str: a header value with obs-text (bytes >= 0x80, which serve
        # passes on) must be relayed as sent, not fail to re-encode.
        upstream_headers = [(k, v) for k, v in scope["headers"] if k.decode("latin-1").lower() not in DROP_REQUEST]

        sse_session: SseSession | None = None
        if route == "/messages/":
            sid = params.get("session_id")
            if not sid:
                raise _Reject(400, "the session_id query parameter is required", Refused.SESSION)
            sse_session = self._sse_sessions.get(sid)
            if sse_session is None or sse_session.owner != identity.owner:
                raise _Reject(404, "no such session (sessions belong to the caller that opened them)",
                              Refused.SESSION)
        mcp_sid = session_ids[0].decode("latin-1") if session_ids else None
        mcp_session: McpSession | None = None
        if transport == "streamable-http" and mcp_sid is not None:
            if modern:
                # 2026-07-28 has no sessions: the id means nothing, and no upstream may act on it.
                upstream_headers = [(k, v) for k, v in upstream_headers if k.lower() != b"mcp-session-id"]
                mcp_sid = None
            else:
                mcp_session = self._mcp_sessions.lookup(mcp_sid, identity.owner)
                if mcp_session is None:
                    raise _Reject(404, "Session not found", Refused.SESSION, answer={
                        "jsonrpc": "2.0", "id": None,
                        "error": {"code": INVALID_REQUEST, "message": "Session not found"}})

        body = b""
        messages: list[dict[str, Any]] | None = None
        if method == "POST":
            if why := content_encoding_refusal(scope["headers"]):
                raise _Reject(415, why, Refused.CONTENT_ENCODING)
            try:
                judged = judge(await self._read_body(headers, receive), scope["headers"])
            except Unjudgeable as exc:
                raise _Reject.unjudgeable(exc) from None
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

    async def _forward(self, route: str, scope: Scope, receive: Receive, send: Send, headers: Headers,
                       upstream_headers: list[tuple[bytes, bytes]], body: bytes, transport: str, tracker: Tracker,
                       sse_session: SseSession | None, added: list[str], identity: Identity,
                       mcp_sid: str | None, modern: bool) -> None:
        method = scope["method"]
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.upstream + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if query:
            url += "?" + query
        request = self.client.build_request(method, url, headers=upstream_headers, content=body)
        started = time.monotonic()
        try:
            with anyio.fail_after(self.config.request_timeout):
                response = await self.client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            self._fail_pending(tracker, sse_session, added, "upstream_unavailable", transport)
            raise _Reject(502, f"the MCP server at {self.upstream} is not answering ({type(exc).__name__})") from None
        except TimeoutError:
            self._fail_pending(tracker, sse_session, added, "timeout", transport)
            raise _Reject(504, f"the MCP server at {self.upstream} sent no response within "
                               f"{self.config.request_timeout:g} s") from None
        self.metrics.upstream_latency.labels(route).observe(time.monotonic() - started)
        if transport == "streamable-http" and not modern:
            self._note_session(method, mcp_sid, response, identity)

        try:
            if sse_session is not None and response.status_code >= 300:
                self._fail_pending(tracker, sse_session, added, "upstream_error", transport)
            content_type = response.headers.get("content-type", "")
            if content_type.startswith("text/event-stream"):
                stream_tracker = tracker
                if method == "GET" and route != "/sse" and mcp_sid:
                    stream_tracker = self._mcp_orphans.get(mcp_sid, tracker)
                await self._relay_events(response, send, receive, stream_tracker, route, transport, identity)
            elif tracker and content_type.startswith("application/json"):
                await self._relay_json(response, send, tracker, transport)
            else:
                await self._relay_bytes(response, send)
        finally:
            await response.aclose()
            self._leftovers(tracker, mcp_sid, response, transport)

    def _note_session(self, method: str, sid: str | None, response: httpx.Response, identity: Identity) -> None:
        """Bind a session id the upstream issued to its caller; forget one the upstream ended."""
        issued = response.headers.get("mcp-session-id")
        if issued and response.status_code < 300:
            self._mcp_sessions.bind(issued, identity.owner)
        if sid and ((method == "DELETE" and response.status_code < 300) or response.status_code == 404):
            self._mcp_sessions.forget(sid)
            self._mcp_orphans.pop(sid, None)

    def _check_names(self, headers: Headers) -> None:
        names = self.names
        if not names.known:
            raise _Reject(503, "this node's tailnet name is not known yet (tailscale is still starting); retry")
        # Serve sends the client's Host in X-Forwarded-Host (set by serve, never taken from
        # the client); to a unix socket its Host is "localhost", over TCP the client's.
        host = headers.get("x-forwarded-host") or headers.get("host") or ""
        if not names.host_allowed(host):
            raise _Reject(421, f"Host {host!r} is not a tailnet name of this node; use one of: {names.describe()}")
        origin = headers.get("origin")
        if origin is not None and not names.origin_allowed(origin):
            raise _Reject(403, f"Origin {origin!r} is not a tailnet name of this node; use one of: {names.describe()}")

    def _check_declared_length(self, headers: Headers) -> None:
        limit = self.config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Reject(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes",
                          Refused.BODY_TOO_LARGE)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes:
        """The whole body, within SIDECAR_MAX_BODY_BYTES and SIDECAR_BODY_READ_TIMEOUT (a client
        dribbling a body must not hold a connection, a task and its quota for ever)."""
        limit = self.config.max_body_bytes
        self._check_declared_length(headers)
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(self.config.body_read_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Reject(400, "client went away while sending the body")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise _Reject(413, f"request body exceeds the limit of {limit} bytes", Refused.BODY_TOO_LARGE)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Reject(408, f"the request body did not arrive within {self.config.body_read_timeout:g} s "
                               f"(SIDECAR_BODY_READ_TIMEOUT)", Refused.BODY_TIMEOUT,
                          headers=((b"connection", b"close"),)) from None

    async def _admit(self, messages: list[dict[str, Any]], identity: Identity, target: Tracker,
                     session: McpSession | None, added: list[str], transport: str) -> list[dict[str, Any]]:
        """Decide on every request of a judged body; return denial answers, else register all.

        Every request with an id is registered (tool calls and lists for audit and
        filtering, the rest so that its id cannot be reused while it waits), or none is: a
        full tracker gives 429, an id already waiting 400. Allowed calls are audited now.
        """
        policy = self.config.policy
        denied: list[dict[str, Any]] = []
        entries: list[tuple[str, Pending]] = []
        notified: list[Pending] = []
        for message in messages:
            method = message.get("method")
            if method is None:
                continue  # the client's answer to a server request
            if method == "tools/call":
                tool = message["params"]["name"]  # judge.py checked it is a string
                if policy is not None and not policy.allows(identity, tool):
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
            raise _Reject(429, f"{target.limit} requests are already waiting for their answers "
                               f"(SIDECAR_MAX_PENDING); retry when some are answered", Refused.PENDING_FULL,
                          headers=((b"retry-after", b"1"),)) from None
        except DuplicatePending as exc:
            raise _Reject(400, f"request id {exc.args[0][:60]} is already waiting for its answer",
                          Refused.DUPLICATE_ID, answer={"jsonrpc": "2.0", "id": None, "error": {
                              "code": INVALID_REQUEST,
                              "message": f"request id {exc.args[0][:60]} is already waiting for its answer"}}) from None
        for key, entry in entries:
            target.add(key, entry)
            if session is not None:
                session.inflight.add(key, entry)
            added.append(key)
            if entry.kind == "call":
                audit.tool_call_admitted(entry, transport=transport)
        for entry in notified:
            self._call_done(entry, "sent", None, transport)
        return denied

    async def _identity(self, headers: Headers) -> Identity:
        try:
            return await self.resolver.resolve(headers)
        except Exception as exc:  # WhoIs failing must not take the request down with it
            logger.warning("caller identity lookup failed: %s", exc)
            return Identity(source_ip=source_ip(headers))

    async def _answer_denied(self, send: Send, messages: list[dict[str, Any]], denied: list[dict[str, Any]],
                             sse_session: SseSession | None) -> None:
        if len(denied) != len(messages):
            # A batch mixing allowed and denied calls is refused as a whole: answering half of
            # it ourselves and half upstream could not be merged back into one response.
            await _json(send, 403, denied)
            return
        if sse_session is not None and sse_session.inject is not None:
            try:
                for answer in denied:  # the SSE transport answers on the stream, the POST gets 202
                    await sse_session.inject.send(("inject", json_event(json.dumps(answer))))
                await _plain(send, 202, "Accepted")
                return
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # the stream just ended; answer on the POST instead
        await _json(send, 200 if sse_session is None else 403, denied[0] if len(denied) == 1 else denied)

    def _call_done(self, entry: Pending, outcome: str, code: int | None, transport: str) -> None:
        if entry.kind != "call":
            return
        self.metrics.tool_calls.labels(outcome).inc()
        audit.tool_call(entry, outcome, transport=transport, error_code=code)

    def _fail_pending(self, tracker: Tracker, sse_session: SseSession | None, added: list[str],
                      outcome: str, transport: str) -> None:
        entries = tracker.drain()
        if sse_session is not None:
            entries += [e for k in added if (e := sse_session.tracker.take(k)) is not None]
        for entry in entries:
            self._call_done(entry, outcome, None, transport)

    def _leftovers(self, tracker: Tracker, mcp_sid: str | None, response: httpx.Response, transport: str) -> None:
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

    # -- response bodies -------------------------------------------------------------

    async def _start(self, send: Send, response: httpx.Response, extra: list[tuple[bytes, bytes]] = ()) -> None:
        replaced = {k for k, _ in extra}  # ours win over the upstream's, never doubled
        raw = [(k.lower(), v) for k, v in response.headers.raw
               if k.lower().decode("latin-1") not in DROP_RESPONSE and k.lower() not in replaced]
        await send({"type": "http.response.start", "status": response.status_code, "headers": raw + list(extra)})

    async def _relay_bytes(self, response: httpx.Response, send: Send) -> None:
        extra = []
        if "content-length" in response.headers and "content-encoding" not in response.headers:
            extra = [(b"content-length", response.headers["content-length"].encode())]
        await self._start(send, response, extra)
        chunks = response.aiter_raw()
        while True:
            try:
                with anyio.fail_after(self.config.request_timeout):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                logger.warning("upstream body stalled for %s s; closing", self.config.request_timeout)
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay_json(self, response: httpx.Response, send: Send, tracker: Tracker, transport: str) -> None:
        body = bytearray()
        with anyio.fail_after(self.config.request_timeout):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.config.max_json_response_bytes:
                    raise _Reject(502, f"the MCP server's JSON answer is larger than the gateway relays "
                                       f"({self.config.max_json_response_bytes} bytes, "
                                       f"SIDECAR_MAX_JSON_RESPONSE_BYTES)")
        out = bytes(body)
        messages = decode_messages(out)
        if messages is not None:
            changed = False
            result = []
            for m in messages:
                new = settle(m, tracker, self._allows, lambda e, o, c: self._call_done(e, o, c, transport))
                changed |= new is not None
                result.append(new or m)
            if changed:
                is_batch = out.lstrip().startswith(b"[")
                out = json.dumps(result if is_batch else result[0]).encode()
        headers = [(b"content-length", str(len(out)).encode())]
        raw = [(k.lower(), v) for k, v in response.headers.raw
               if k.lower().decode("latin-1") not in DROP_RESPONSE | {"content-encoding"}]
        await send({"type": "http.response.start", "status": response.status_code, "headers": raw + headers})
        await send({"type": "http.response.body", "body": out, "more_body": False})

    @property
    def _allows(self) -> Callable[[Identity, str], bool] | None:
        return self.config.policy.allows if self.config.policy is not None else None

    async def _relay_events(self, response: httpx.Response, send: Send, receive: Receive, tracker: Tracker,
                            route: str, transport: str, identity: Identity) -> None:
        extra = [(b"x-accel-buffering", b"no")]
        if "cache-control" not in response.headers:
            extra.append((b"cache-control", b"no-cache"))
        await self._start(send, response, extra)

        tx, rx = anyio.create_memory_object_stream[tuple[str, bytes]](64)
        session: SseSession | None = None
        if route == "/sse":
            session = SseSession(identity.owner, Tracker(limit=self.config.max_pending), tx.clone())
        if session is not None:
            tracker = session.tracker
        session_id: str | None = None
        splitter = EventSplitter(self.config.max_event_bytes)
        keepalive = self.config.keepalive_interval or None
        done = lambda e, o, c: self._call_done(e, o, c, transport)  # noqa: E731
        self._streams.add(tx)
        self.metrics.sse_streams.inc()

        async def pump(task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            async with tx:
                task_status.started()
                try:
                    async for chunk in response.aiter_raw():
                        await tx.send(("data", chunk))
                except httpx.HTTPError as exc:
                    logger.info("upstream event stream ended: %r", exc)
                # an explicit end marker: the session's inject clone keeps the channel open
                await tx.send(("eof", b""))

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            tg.cancel_scope.cancel()

        def inspect(raw: bytes) -> bytes:
            nonlocal session_id
            if session is not None and session_id is None:
                event = parse_event(raw)
                if event.name == "endpoint" and event.data:
                    session_id = (parse_qs(urlsplit(event.data).query).get("session_id") or [None])[0]
                    if session_id:
                        self._sse_sessions[session_id] = session
                return raw
            if not tracker:
                return raw
            event = parse_event(raw)
            data = event.data
            messages = decode_messages(data.encode()) if data else None
            if not messages:
                return raw
            changed = False
            result = []
            for m in messages:
                new = settle(m, tracker, self._allows, done)
                changed |= new is not None
                result.append(new or m)
            if not changed:
                return raw
            is_batch = data.lstrip().startswith("[")
            return event.with_data(json.dumps(result if is_batch else result[0]))

        try:
            async with anyio.create_task_group() as tg:
                await tg.start(pump)
                tg.start_soon(watch_disconnect)
                held: list[bytes] = []  # injected events wait for an event boundary
                try:
                    while True:
                        if self.draining and not tracker.owes_answers() and not splitter.partial:
                            break
                        timeout = keepalive if not self.draining else min(keepalive or 0.5, 0.5)
                        item = None
                        with anyio.move_on_after(timeout):
                            item = await rx.receive()
                        out = b""
                        if item is None:
                            if keepalive and not splitter.partial and not self.draining:
                                out = KEEPALIVE
                        elif item[0] == "data":
                            try:
                                out = b"".join(inspect(e) for e in splitter.feed(item[1]))
                            except EventTooLarge as exc:
                                logger.warning("closing event stream: %s", exc)
                                break
                        elif item[0] == "inject":
                            held.append(item[1])
                        elif item[0] == "eof":
                            break
                        if held and not splitter.partial:
                            out += b"".join(held)
                            held.clear()
                        if out:
                            await send({"type": "http.response.body", "body": out, "more_body": True})
                finally:
                    tg.cancel_scope.cancel()
            rx.close()
            rest = splitter.flush()
            await send({"type": "http.response.body", "body": rest, "more_body": False})
        except OSError:  # client gone while we were writing
            pass
        finally:
            rx.close()
            self._streams.discard(tx)
            self.metrics.sse_streams.dec()
            if session is not None:
                if session_id is not None:
                    self._sse_sessions.pop(session_id, None)
                if session.inject is not None:
                    session.inject.close()
                for entry in tracker.drain():
                    done(entry, "aborted", None)


async def _plain(send: Send, status: int, text: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json(send: Send, status: int, data: object, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
