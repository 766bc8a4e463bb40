"""A pooled HTTP/1.1 client for the one plain-http upstream, without httpcore and anyio.

Why: httpx's generic machinery (httpcore's pool, anyio task groups and cancel scopes, h11)
was over half of the gateway's CPU per relayed call (docs/benchmarks.md, "Gateway speed
steps"). The gateway talks to exactly one upstream, on loopback, over plain HTTP/1.1, so a
pool of kept-alive asyncio connections with httptools' C response parser does the same work
for less. The interface is the part of httpx.AsyncClient the gateway uses
(`build_request`, `send(stream=True)`, `aclose`); a request is an UpstreamRequest (httpx parses
its URL, once per distinct URL), and answers are real `httpx.Response`
objects (headers, status, `aiter_raw`/`aiter_bytes` with httpx's content decoding,
`aclose`); failures raise httpx's own exceptions (ConnectError, ConnectTimeout,
RemoteProtocolError, ReadError), so the gateway's error handling stays as it is. https://
upstreams keep httpx (`supports`).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools
import httpx

READ_HIGH_WATER = 256 * 1024  # buffered answer bytes at which reading from the upstream pauses
# The most an answer's status line and headers may take, as httpcore bounds them (its
# MAX_INCOMPLETE_EVENT_SIZE): an upstream sending headers without end is cut off, not buffered.
MAX_ANSWER_HEAD_BYTES = 100 * 1024
# A kept-alive connection idle this long is closed rather than reused. uvicorn (the stock server,
# FastMCP) and Node's http server close theirs after 5 s idle; when the gateway's loop is busy,
# that close can still be unread when the pool hands the connection to the next call, which is
# then written into a closed connection and answered 502, and a POST cannot be retried safely
# (the upstream may have run it). httpx expired its connections at 5 s, the same as uvicorn.
IDLE_EXPIRY = 4.0


# Methods whose empty body is still sent with `Content-Length: 0`, as httpx.Request does.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """A request as UpstreamClient sends it: its head's parts, ready to write.

    Not an httpx.Request: building one (URL parsing, its header model) was a tenth of the
    gateway's CPU per relayed call. The URL is still parsed and percent-encoded by httpx
    (`_target`), so what reaches the upstream is what httpx would have sent; only once per URL.
    """

    method: str
    target: bytes  # the request target, percent-encoded by httpx.URL
    host: bytes  # the Host header httpx.Request would have set (the URL's netloc)
    headers: list[tuple[bytes, bytes]]
    content: bytes

    def head(self) -> bytes:
        """The request line and headers, byte for byte as from an httpx.Request: Host (unless given) and,
        for an empty POST/PUT/PATCH without a length or chunking, `Content-Length: 0` before the
        headers; a body's Content-Length (unless given) after them."""
        names = {k.lower() for k, _ in self.headers}
        lines = [self.method.encode("ascii") + b" " + self.target + b" HTTP/1.1"]
        if b"host" not in names:
            lines.append(b"Host: " + self.host)
        if not self.content and self.method in BODY_METHODS and not names & {b"content-length", b"transfer-encoding"}:
            lines.append(b"Content-Length: 0")
        lines += [k + b": " + v for k, v in self.headers]
        if self.content and b"content-length" not in names:
            lines.append(b"Content-Length: " + str(len(self.content)).encode("ascii"))
        return b"\r\n".join(lines) + b"\r\n\r\n"


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> tuple[bytes, bytes]:
    """httpx's reading of `url`: the percent-encoded request target and the netloc (InvalidURL if
    it has none). Remembered: a gateway asks for the same few URLs on every call."""
    parsed = httpx.URL(url)
    return parsed.raw_path, parsed.netloc


def supports(url: str) -> bool:
    """Whether UpstreamClient can reach `url` (plain http; https stays with httpx)."""
    return urlsplit(url).scheme == "http"


class _Connection(asyncio.Protocol):
    """One kept-alive connection and the answer being read on it (one at a time, no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.error: Exception | None = None
        self._head: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._head_only = False
        self._keep_alive = False
        self._head_bytes = 0  # received while the answer's head is incomplete (MAX_ANSWER_HEAD_BYTES)
        self._until_close = False  # the answer's body ends when the upstream closes (no length, not chunked)
        self.idle_since = 0.0  # loop time it went back to the pool

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # asyncio does too; never rely on it

    def data_received(self, data: bytes) -> None:
        if self._head is not None and not self._head.done():
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"the upstream sent invalid HTTP: {exc}"))
            self.close()
            return
        if self._head is not None and not self._head.done() and self._head_bytes > MAX_ANSWER_HEAD_BYTES:
            self._fail(httpx.RemoteProtocolError(f"the upstream's answer head is larger than "
                                                 f"{MAX_ANSWER_HEAD_BYTES} bytes"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._until_close and exc is None:
            self._complete = True
        if not self._complete:
            self._fail(httpx.ReadError(str(exc)) if exc else
                       httpx.RemoteProtocolError("the upstream closed the connection before its answer ended"))
        self._wake()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers = []
            return
        names = {k.lower(): v for k, v in self._headers}
        self._until_close = (b"content-length" not in names and b"chunked" not in names.get(b"transfer-encoding", b"")
                             and status not in (204, 304))
        if self._head is not None and not self._head.done():
            self._head.set_result((status, self._headers))
        if self._head_only:  # an answer to HEAD has no body, whatever its Content-Length says
            self._complete = True
            self.closed = True  # the parser would wait for that body: never reuse this connection
            self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered >= READ_HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            return
        self._keep_alive = self.parser.should_keep_alive()  # read now: the parser resets after this
        self._complete = True
        self._wake()

    # -- used by the client ---------------------------------------------------------------------

    def start(self, head: bytes, body: bytes, *, head_only: bool) -> asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]]:
        assert self.transport is not None
        self._head = asyncio.get_running_loop().create_future()
        self._headers, self._complete, self._head_only, self._until_close = [], False, head_only, False
        self._keep_alive, self._head_bytes = False, 0
        self._chunks.clear()
        self._buffered = 0
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        return self._head

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < READ_HIGH_WATER // 2 and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                yield chunk
            if self._complete:
                return
            if self.error is not None:
                raise self.error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    @property
    def reusable(self) -> bool:
        return self._complete and self._keep_alive and not self.closed and self.error is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        self.error = self.error or exc
        if self._head is not None and not self._head.done():
            self._head.set_exception(self.error)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; closing it returns a finished connection to the pool."""

    def __init__(self, client: UpstreamClient, conn: _Connection) -> None:
        self._client, self._conn = client, conn

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._conn.chunks():
            yield chunk

    async def aclose(self) -> None:
        self._client._release(self._conn)


class UpstreamClient:
    """Kept-alive HTTP/1.1 connections to one plain-http upstream (host:port of `base_url`)."""

    def __init__(self, base_url: str, *, connect_timeout: float, max_idle: int = 256) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"UpstreamClient speaks plain http to one host, not {base_url!r}")
        self._host, self._port = parts.hostname, parts.port or 80
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._idle: collections.deque[_Connection] = collections.deque()
        self._busy: set[_Connection] = set()

    def build_request(self, method: str, url: str, *, headers: list[tuple[bytes, bytes]],
                      content: bytes = b"") -> UpstreamRequest:
        target, host = _target(url)
        return UpstreamRequest(method, target, host, headers, content)

    async def send(self, request: UpstreamRequest, *, stream: bool = True) -> httpx.Response:
        """The upstream's answer, its body not read yet (read it, then `aclose()` the response)."""
        if not stream:
            raise ValueError("UpstreamClient only streams answers (send(..., stream=True))")
        conn = await self._connection()
        self._busy.add(conn)
        try:
            head = await conn.start(request.head(), request.content, head_only=request.method == "HEAD")
        except BaseException:  # cancelled or failed mid-request: the connection's state is unknown
            self._busy.discard(conn)
            conn.close()
            raise
        status, headers = head
        return httpx.Response(status, headers=headers, stream=_Body(self, conn))

    async def aclose(self) -> None:
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        self._busy.clear()

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        expired = loop.time() - IDLE_EXPIRY
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the ones below it are older still
            if not conn.closed and conn.idle_since > expired:
                return conn
            conn.close()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(_Connection, self._host, self._port)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {self._host}:{self._port} within "
                                       f"{self._connect_timeout:g} s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"{self._host}:{self._port}: {exc.strerror or exc}") from None
        return conn

    def _release(self, conn: _Connection) -> None:
        self._busy.discard(conn)
        if conn.reusable and len(self._idle) < self._max_idle:
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.append(conn)
        else:
            conn.close()
