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
- it applies the optional tool policy (tools/call checked, tools/list filtered, also
  inside streamed answers) and writes one audit line per tool call.

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
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.datastructures import Headers

from mcp_tailnet_sidecar import audit
from mcp_tailnet_sidecar.identity import Identity, IdentityResolver
from mcp_tailnet_sidecar.jsonrpc import (
    Pending,
    Tracker,
    decode_messages,
    denial,
    request_key,
    settle,
    tool_name,
)
from mcp_tailnet_sidecar.metrics import Metrics
from mcp_tailnet_sidecar.names import NodeNames
from mcp_tailnet_sidecar.policy import Policy
from mcp_tailnet_sidecar.sse import KEEPALIVE, EventSplitter, EventTooLarge, json_event, parse_event

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
DROP_REQUEST = HOP_BY_HOP | {"host", "origin", "content-length"}
DROP_RESPONSE = HOP_BY_HOP | {"content-length"}
MAX_JSON_RESPONSE = 64 * 1024 * 1024


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


@dataclass
class SseSession:
    """State of one legacy-SSE session: its pending requests and a way to add events."""

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
                if status_box[0]:  # the response had already started; all we can do is stop
                    logger.warning("aborting response after it started: %s", rej.message)
                else:
                    await _plain(counting_send, rej.status, rej.message)
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
        method = scope["method"]
        body = await self._read_body(headers, receive) if method in ("POST", "PUT", "PATCH") else b""
        transport = "sse" if route in ("/sse", "/messages/") else "streamable-http"
        query = scope.get("query_string", b"").decode("latin-1")

        tracker = Tracker()  # answers expected on this request's own response
        sse_session: SseSession | None = None
        if route == "/messages/":
            sid = (parse_qs(query).get("session_id") or [""])[0]
            sse_session = self._sse_sessions.get(sid)
        added_to_session: list[str] = []

        messages = decode_messages(body) if method == "POST" and body else None
        if messages:
            target = sse_session.tracker if sse_session is not None else tracker
            denied = await self._admit(messages, headers, target, added_to_session, transport)
            if denied:
                await self._answer_denied(send, messages, denied, sse_session)
                return

        # Raw bytes, not decoded str: a header value with obs-text (bytes >= 0x80, which serve
        # passes on) must be relayed as sent, not fail to re-encode.
        upstream_headers = [(k, v) for k, v in scope["headers"] if k.decode("latin-1").lower() not in DROP_REQUEST]
        url = self.upstream + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if query:
            url += "?" + query
        request = self.client.build_request(method, url, headers=upstream_headers, content=body)
        started = time.monotonic()
        try:
            with anyio.fail_after(self.config.request_timeout):
                response = await self.client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            self._fail_pending(tracker, sse_session, added_to_session, "upstream_unavailable", transport)
            raise _Reject(502, f"the MCP server at {self.upstream} is not answering ({type(exc).__name__})") from None
        except TimeoutError:
            self._fail_pending(tracker, sse_session, added_to_session, "timeout", transport)
            raise _Reject(504, f"the MCP server at {self.upstream} sent no response within "
                               f"{self.config.request_timeout:g} s") from None
        self.metrics.upstream_latency.labels(route).observe(time.monotonic() - started)

        try:
            if sse_session is not None and response.status_code >= 300:
                self._fail_pending(tracker, sse_session, added_to_session, "upstream_error", transport)
            content_type = response.headers.get("content-type", "")
            if content_type.startswith("text/event-stream"):
                stream_tracker = tracker
                if method == "GET" and route != "/sse":
                    sid = headers.get("mcp-session-id")
                    stream_tracker = self._mcp_orphans.get(sid, tracker) if sid else tracker
                await self._relay_events(response, send, receive, stream_tracker, route, transport)
            elif tracker and content_type.startswith("application/json"):
                await self._relay_json(response, send, tracker, transport)
            else:
                await self._relay_bytes(response, send)
        finally:
            await response.aclose()
            self._leftovers(tracker, headers, response, transport)

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

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes:
        limit = self.config.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Reject(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Reject(400, "client went away while sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Reject(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _admit(self, messages: list[dict[str, Any]], headers: Headers, target: Tracker,
                     added: list[str], transport: str) -> list[dict[str, Any]]:
        """Register tool calls/lists as pending; return denial answers for refused calls."""
        policy = self.config.policy
        identity: Identity | None = None
        denied: list[dict[str, Any]] = []
        for message in messages:
            method = message.get("method")
            key = request_key(message)
            if method not in ("tools/call", "tools/list") or (method == "tools/list" and policy is None):
                continue
            if identity is None:
                identity = await self._identity(headers)
            if method == "tools/call":
                tool = tool_name(message) or "?"
                if policy is not None and not policy.allows(identity, tool):
                    denied.append(denial(message, identity.who, tool))
                    self._call_done(Pending("call", identity, tool), "denied", None, transport)
                    continue
                entry = Pending("call", identity, tool)
                if key is None:  # a call sent as a notification gets no answer; audit it as sent
                    self._call_done(entry, "sent", None, transport)
                    continue
            else:
                entry = Pending("list", identity)
            if key is not None:
                target.add(key, entry)
                added.append(key)
        return denied

    async def _identity(self, headers: Headers) -> Identity:
        try:
            return await self.resolver.resolve(headers)
        except Exception as exc:  # WhoIs failing must not take the request down with it
            logger.warning("caller identity lookup failed: %s", exc)
            return Identity(source_ip=headers.get("x-forwarded-for"))

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

    def _leftovers(self, tracker: Tracker, headers: Headers, response: httpx.Response, transport: str) -> None:
        """Requests whose answer never came on their own response."""
        if not tracker:
            return
        sid = response.headers.get("mcp-session-id") or headers.get("mcp-session-id")
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
                if len(body) > MAX_JSON_RESPONSE:
                    raise _Reject(502, "the MCP server's JSON answer is larger than the gateway relays")
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
                            route: str, transport: str) -> None:
        extra = [(b"x-accel-buffering", b"no")]
        if "cache-control" not in response.headers:
            extra.append((b"cache-control", b"no-cache"))
        await self._start(send, response, extra)

        tx, rx = anyio.create_memory_object_stream[tuple[str, bytes]](64)
        session: SseSession | None = SseSession(inject=tx.clone()) if route == "/sse" else None
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
                        if self.draining and not tracker and not splitter.partial:
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


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json(send: Send, status: int, data: object) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})
