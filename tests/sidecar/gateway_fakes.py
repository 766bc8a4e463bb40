"""Fakes for driving the gateway in-process as the ASGI app it is: fast, beside the end-to-end tests.

- `Upstream`: a recording stand-in for a Streamable HTTP MCP server (JSON answers);
- `LegacySseUpstream`: a legacy SSE server whose stream path, message endpoint and session
  query key are chosen by the test (server-everything's `/message?sessionId=`, a hub's
  `/servers/<name>/messages/`), answering every request on the stream as the SDKs do;
- `FakeWhoIs`: tailscaled's WhoIs for tagged nodes (no Tailscale-User-* headers);
- `StreamingASGITransport`: httpx's ASGITransport returns a response only once the app
  finished it, which an event stream never does; this one hands back each chunk as sent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
import pytest
from anyio.streams.memory import MemoryObjectSendStream

from mcp_tailnet_sidecar.gateway import Gateway, GatewayConfig
from mcp_tailnet_sidecar.identity import IdentityResolver
from mcp_tailnet_sidecar.names import NodeNames

HOST = "mcp.tailnet.test"
ALICE = {"Tailscale-User-Login": "alice@example.com", "X-Forwarded-For": "100.64.0.10"}
MALLORY = {"Tailscale-User-Login": "mallory@example.com", "X-Forwarded-For": "100.64.0.66"}
JSON = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def answer(m: dict) -> dict:
    """What the fake servers answer: two tools, `done` for any call, {} otherwise."""
    if m["method"] == "tools/list":
        result: dict = {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in ("echo", "add")]}
    elif m["method"] == "tools/call":
        result = {"content": [{"type": "text", "text": "done"}]}
    else:
        result = {}
    return {"jsonrpc": "2.0", "id": m["id"], "result": result}


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


class Upstream:
    """A stand-in MCP server that records what reaches it and answers like one.

    `hold` makes requests for those methods wait until `release` is set, so a test can
    keep requests in flight.
    """

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.hold: set[str] = set()
        self.release = anyio.Event()
        self.sessions = 0
        self.missing: set[str] = set()  # paths answered 404, as a server answers a path it does not serve

    def bodies(self) -> list[bytes]:
        return [body for _, _, body in self.received]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.received.append((scope["method"], headers, body))
        if scope["path"] in self.missing:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"Not Found"})
            return
        try:
            data = json.loads(body) if body else None
        except ValueError:  # what a lenient server does with bytes it cannot read: an error, not a crash
            data = None
        items = data if isinstance(data, list) else [data]
        if any(isinstance(m, dict) and m.get("method") in self.hold for m in items):
            await self.release.wait()
        answers = [answer(m) for m in items if isinstance(m, dict) and "id" in m and "method" in m]
        extra = []
        if any(isinstance(m, dict) and m.get("method") == "initialize" for m in items):
            self.sessions += 1
            extra.append((b"mcp-session-id", f"session-{self.sessions}".encode()))
        if not answers:
            await send({"type": "http.response.start", "status": 202, "headers": extra})
            await send({"type": "http.response.body", "body": b""})
            return
        out = json.dumps(answers if isinstance(data, list) else answers[0]).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), *extra]})
        await send({"type": "http.response.body", "body": out})


class LegacySseUpstream:
    """A legacy SSE MCP server: GET `stream_path` opens a session and announces
    `endpoint(session_id)` as its first event; POSTs to `post_path?<key>=<id>` get 202 and
    their answers go out on that session's stream."""

    def __init__(self, stream_path: str = "/sse", post_path: str = "/message", key: str = "sessionId",
                 endpoint: Any = None, first_events: tuple[bytes, ...] = ()) -> None:
        self.stream_path, self.post_path, self.key = stream_path, post_path, key
        self.endpoint = endpoint or (lambda sid: f"{post_path}?{key}={sid}")
        self.first_events = first_events  # sent before the endpoint event (a server breaking the rule)
        self.streams: dict[str, MemoryObjectSendStream[bytes]] = {}
        self.posted: list[tuple[str, dict]] = []  # (session id, message) that reached the server
        self._ids = itertools.count(1)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] == self.stream_path:
            await self._stream(receive, send)
        elif scope["method"] == "POST" and scope["path"] == self.post_path:
            await self._post(scope, receive, send)
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"no such route"})

    async def _stream(self, receive: Any, send: Any) -> None:
        sid = f"s{next(self._ids):04d}"
        tx, rx = anyio.create_memory_object_stream[bytes](math.inf)
        self.streams[sid] = tx
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        for event in self.first_events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": f"event: endpoint\r\ndata: {self.endpoint(sid)}\r\n\r\n"
                    .encode(), "more_body": True})
        async with anyio.create_task_group() as tg:
            async def gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()
            tg.start_soon(gone)
            async for event in rx:
                await send({"type": "http.response.body", "body": event, "more_body": True})
        self.streams.pop(sid, None)

    async def _post(self, scope: dict, receive: Any, send: Any) -> None:
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        body = await read_body(receive)
        stream = self.streams.get(query.get(self.key, ""))
        if stream is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"Could not find session"})
            return
        data = json.loads(body)
        for m in data if isinstance(data, list) else [data]:
            self.posted.append((query[self.key], m))
            if "id" in m and "method" in m:
                await stream.send(f"event: message\r\ndata: {json.dumps(answer(m))}\r\n\r\n".encode())
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"Accepted"})


class FakeWhoIs:
    """tailscaled's LocalAPI WhoIs for tagged nodes: address -> node name (tags: tag:ci)."""

    def __init__(self, nodes: dict[str, str]) -> None:
        self.nodes = nodes

    async def __call__(self, ip: str) -> dict | None:
        name = self.nodes.get(ip)
        if name is None:
            return None
        return {"Node": {"Name": f"{name}.tailnet.test.", "Tags": ["tag:ci"]},
                "UserProfile": {"LoginName": "tagged-devices"}}


class _Body(httpx.AsyncByteStream):
    def __init__(self, chunks: Any, closed: anyio.Event) -> None:
        self.chunks, self.closed = chunks, closed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        self.closed.set()  # the client went away: the app's receive() now says http.disconnect
        self.chunks.close()


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """Runs the app in a task per request and streams its body back as it is sent."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.tasks: set[asyncio.Task] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
                 "headers": [(k.lower(), v) for k, v in request.headers.raw], "scheme": request.url.scheme,
                 "path": request.url.path, "raw_path": request.url.raw_path.split(b"?")[0],
                 "query_string": request.url.query, "server": (request.url.host, request.url.port),
                 "client": ("127.0.0.1", 50000), "root_path": ""}
        tx, rx = anyio.create_memory_object_stream[bytes](math.inf)
        started, closed = anyio.Event(), anyio.Event()
        head: dict[str, Any] = {}
        sent_body = False

        async def receive() -> dict:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await closed.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                head.update(message)
                started.set()
            elif message["type"] == "http.response.body":
                with _ignoring_gone():  # like a server: writes after the client left go nowhere
                    tx.send_nowait(message.get("body", b""))
                if not message.get("more_body"):
                    tx.close()

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                tx.close()
                started.set()

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        await started.wait()
        return httpx.Response(head.get("status", 500), headers=head.get("headers", []), stream=_Body(rx, closed))

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()


class _ignoring_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return kind is not None and issubclass(kind, (anyio.BrokenResourceError, anyio.ClosedResourceError))


class AuditLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append({k: v for k, v in record.__dict__.items() if k in (
            "event", "tool", "outcome", "who", "call_id", "source_ip", "transport", "node")})


@pytest.fixture
def audit_lines() -> Iterator[list[dict]]:
    handler = AuditLines()
    logger = logging.getLogger("mcp_tailnet_sidecar.audit")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def make_gateway(upstream: Any, *, resolver: IdentityResolver | None = None, streaming: bool = False,
                 **config: Any) -> Gateway:
    gw = Gateway(GatewayConfig(upstream_url="http://upstream", **config), names=NodeNames(extra=(HOST,)),
                 resolver=resolver or IdentityResolver())
    transport = StreamingASGITransport(upstream) if streaming else httpx.ASGITransport(app=upstream)
    gw._client = httpx.AsyncClient(transport=transport, base_url="http://upstream")
    return gw


def client(gw: Gateway, *, streaming: bool = False) -> httpx.AsyncClient:
    transport = StreamingASGITransport(gw) if streaming else httpx.ASGITransport(app=gw)
    return httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}", timeout=10)


def post(gw: Gateway, body: bytes, headers: dict | None = None, path: str = "/mcp") -> httpx.Response:
    async def go() -> httpx.Response:
        async with client(gw) as c:
            return await c.post(path, content=body, headers={**JSON, **ALICE, **(headers or {})})
    return anyio.run(go)
