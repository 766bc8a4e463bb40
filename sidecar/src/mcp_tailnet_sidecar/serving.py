"""Running ASGI apps with uvicorn on sockets we create ourselves.

We bind the sockets (instead of letting uvicorn do it) to choose their permissions: a
unix socket created by uvicorn is chmod 0666, while ours is 0660 in a 0750 directory, so
only the container's own user reaches the gateway. Signals are handled by the
entrypoint, not by each uvicorn server, so that drain order stays ours.

Speed (docs/benchmarks.md, "Gateway speed steps"): uvicorn parses HTTP with httptools and the
process runs on uvloop when those are installed (`run`), and falls back to h11 and asyncio's
own loop when they are not. httptools keeps no bound on a request's head, which h11 did
(`h11_max_incomplete_event_size`); BoundedHttpTools puts the same bound back.

An app may ask for several writes to go out as one (`WRITE_TOGETHER`, JoinedWrites): the
gateway sends an event-stream answer's head with its first event that way (relay_events.HEAD_HOLD).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")
# The most a request line and its headers may take, as h11 was told before httptools: a
# client (or anything in the pod's network namespace) cannot grow one request's head in memory
# without end. (In front of it, tailscale serve is a Go http.Server: 1 MiB unless it sets less.)
MAX_HEAD_BYTES = 64 * 1024
# tailscale serve's reverse proxy closes a backend connection after 90 s idle (v1.102.3
# ipn/ipnlocal/serve.go, getTransport: IdleConnTimeout). The gateway holds an idle connection
# longer, so serve is always the side that closes it: were the gateway to close first, a POST
# serve has just written on that connection fails with 502, since Go's transport retries only
# replayable requests (net/http Transport.shouldRetryRequest).
SERVE_IDLE_CONN_TIMEOUT = 90.0
KEEP_ALIVE_TIMEOUT = SERVE_IDLE_CONN_TIMEOUT + 30
# Connections the kernel queues for a listener until the gateway accepts them. serve keeps only
# 2 idle backend connections (Go's default MaxIdleConnsPerHost), so under concurrent calls it
# opens new ones in bursts; while the event loop is busy they wait here, and past the backlog
# the kernel drops their SYNs (a retransmit 1 s later, then 3 s...). uvicorn's own default.
LISTEN_BACKLOG = 2048
# An ASGI scope extension: a context manager inside which the connection's writes are joined
# into one (one send(2), so a reader never sees the first without the rest). Absent under h11.
WRITE_TOGETHER = "mcp_tailnet.write_together"


class JoinedWrites:
    """A transport whose writes inside `together()` go out as one write.

    uvicorn writes a response's head and each body message with a write of their own, and
    asyncio sends each at once: two segments, which a reader can take apart. Everything
    else is the wrapped transport's.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is None:
            self._transport.write(data)
        else:
            self._held.append(bytes(data))

    def close(self) -> None:
        self._release()
        self._transport.close()

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        self._release()
        self._held = []
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        held, self._held = self._held, None
        if held:
            self._transport.write(b"".join(held))


def writes_together(scope: dict[str, Any]) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """The connection's `together()` when the server offers it, else a context that does nothing."""
    return scope.get("extensions", {}).get(WRITE_TOGETHER) or contextlib.nullcontext


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (less CPU per relayed call), else asyncio's default."""
    if not _installed("uvloop"):
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the loop of `loop_factory` (3.11's asyncio.run takes no factory)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def http_protocol() -> type[asyncio.Protocol] | str:
    """httptools' parser with the head bound when httptools is installed, else uvicorn's h11."""
    if not _installed("httptools"):
        return "h11"
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpTools(HttpToolsProtocol):
        """uvicorn's httptools protocol refusing a request head larger than MAX_HEAD_BYTES, as h11 did.

        Two counts, because a head can arrive whole in one read or without end in many: the
        request line and headers as the parser hands them over (raising in a parser callback
        makes uvicorn answer 400 and close, its answer to any malformed request), and the bytes
        received while a head is still incomplete (a header that never ends is held inside
        the parser, where no callback sees it).
        """

        _head = 0  # URL + header names and values of the current request
        _received = 0  # bytes received since the current head began
        _in_head = True

        def _count(self, n: int) -> None:
            self._head += n
            if self._head > MAX_HEAD_BYTES:
                raise ValueError(f"request head larger than {MAX_HEAD_BYTES} bytes")

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._received += len(data)
            super().data_received(data)
            if self._in_head and self._received > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.send_400_response("Invalid HTTP request received.")

        def on_message_begin(self) -> None:
            self._head = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head, self._received = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._received = True, 0

    class GatewayHttpTools(BoundedHttpTools):
        """BoundedHttpTools offering its apps joined writes (WRITE_TOGETHER)."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._joined = JoinedWrites(transport)
            super().connection_made(self._joined)  # type: ignore[arg-type]

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope["extensions"] = {WRITE_TOGETHER: self._joined.together}  # type: ignore[typeddict-unknown-key]

    return GatewayHttpTools


class Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def unix_socket(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    with contextlib.suppress(FileNotFoundError):
        if path.is_socket():
            path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def tcp_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose accepted connections send small writes at once.

    asyncio turns on TCP_NODELAY for an accepted connection only when the socket's
    protocol is IPPROTO_TCP (`asyncio.base_events._set_nodelay`); a socket made with
    the default protocol 0 keeps Nagle's algorithm, and every keep-alive answer then
    waits for the client's delayed ACK: ~40 ms a call (docs/design.md fact 13). Both the
    explicit protocol and TCP_NODELAY on the listener (Linux copies it to accepted
    sockets) keep that from coming back.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


def make_server(app: Any, *, drain_timeout: float) -> Server:
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=drain_timeout,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,  # above serve's idle timeout: serve closes first
        http=http_protocol(),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
    )
    return Server(config)
