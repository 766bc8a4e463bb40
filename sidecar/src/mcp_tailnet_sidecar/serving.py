"""Running ASGI apps with uvicorn on sockets we create ourselves.

We bind the sockets (instead of letting uvicorn do it) to choose their permissions: a
unix socket created by uvicorn is chmod 0666, while ours is 0660 in a 0750 directory, so
only the container's own user reaches the gateway. Signals are handled by the
entrypoint, not by each uvicorn server, so that drain order stays ours.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn


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
    sock.listen(2048)
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
    sock.listen(128)
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
        timeout_keep_alive=75,  # above common proxy idle timeouts, so the proxy closes first
        h11_max_incomplete_event_size=64 * 1024,
    )
    return Server(config)
