"""`mcp-tailnet-sidecar probe alive|ready`: the health check command.

Standard library only and no package imports beyond it, so an exec probe every few
seconds costs a bare interpreter start. Exit 0 when healthy, 1 otherwise (one line
saying why).
"""

from __future__ import annotations

import http.client
import os
import socket
import sys

DEFAULT_HEALTH_SOCKET = "/run/mcp-tailnet/health.sock"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def probe(kind: str, socket_path: str | None = None, timeout: float = 5.0) -> int:
    path = socket_path or os.environ.get("SIDECAR_HEALTH_SOCKET") or DEFAULT_HEALTH_SOCKET
    endpoint = "/readyz" if kind == "ready" else "/healthz"
    conn = _UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", endpoint)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", errors="replace").strip()
    except OSError as exc:
        print(f"{kind}: health socket {path} not answering: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    ok = resp.status == 200
    print(f"{kind}: {'ok' if ok else 'NOT ok'} {body}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1
