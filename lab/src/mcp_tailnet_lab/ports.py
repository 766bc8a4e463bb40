"""Free ports picked by the kernel, so concurrent test runs never collide on a fixed port."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port free on `host` right now (tcp or udp); the caller binds it soon after."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
