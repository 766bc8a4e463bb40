"""The stock MCP server and the sidecar's gateway as local processes, for tests.

tests/sidecar and tests/reliability both drive `mcp-tailnet-sidecar gateway` on a unix
socket in front of the stock SDK server; one definition keeps their setups identical.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mcp_tailnet_lab.ports import free_port
from mcp_tailnet_lab.waiting import wait_for

SIDECAR = str(Path(sys.executable).parent / "mcp-tailnet-sidecar")
TAILNET_HOST = "mcp.tailnet.test"  # the name the gateway is told it has, in tests without tailscaled
START_TIMEOUT = 30.0


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM, then kill after `timeout` s; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def _while_alive(check: Callable[[], Any], what: str, proc: subprocess.Popen) -> Callable[[], Any]:
    """`check` for wait_for that fails at once if `proc` died and treats refusals as 'not yet'."""
    def probe() -> Any:
        if proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        try:
            return check()
        except (OSError, httpx.HTTPError):
            return False
    return probe


@dataclass
class StockServer:
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_stock_server(port: int | None = None, log: Path | None = None) -> StockServer:
    """The stock SDK server (default settings) on 127.0.0.1, listening when this returns."""
    port = port or free_port()
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(port)],
                            stdout=out, stderr=subprocess.STDOUT)
    what = "the stock MCP server to listen"
    wait_for(_while_alive(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
                          what, proc), what, timeout=START_TIMEOUT, interval=0.05)
    return StockServer(port, proc)


@dataclass
class GatewayProc:
    """`mcp-tailnet-sidecar gateway` on a unix socket (or a TCP alias), told its tailnet name by env."""

    dir: Path
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.dir / "gw.sock"

    @property
    def health_socket(self) -> Path:
        return self.dir / "health.sock"

    @property
    def tcp(self) -> tuple[str, int] | None:
        """The gateway's TCP address when it was started with SIDECAR_GATEWAY_LISTEN=tcp:HOST:PORT."""
        kind, _, rest = self.env.get("SIDECAR_GATEWAY_LISTEN", "").partition(":")
        if kind != "tcp":
            return None
        host, _, port = rest.rpartition(":")
        return host, int(port)

    def client(self, **kw: Any) -> httpx.Client:
        """A client for the gateway, by its tailnet name, on whichever listener it has."""
        if self.tcp is not None:
            host, port = self.tcp
            headers = {"Host": TAILNET_HOST, **kw.pop("headers", {})}
            return httpx.Client(base_url=f"http://{host}:{port}", headers=headers, **kw)
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url=f"http://{TAILNET_HOST}",
                            **kw)

    def listening(self) -> bool:
        """True once the gateway's listener (unix socket or TCP) accepts connections."""
        if self.tcp is None:
            return self.socket.exists()
        socket.create_connection(self.tcp, timeout=1).close()
        return True

    def health(self, path: str) -> httpx.Response:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.health_socket)), timeout=10) as c:
            return c.get(f"http://localhost{path}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict]:
        """Every log line parsed as JSON: a line that is not JSON fails loudly."""
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def audit_lines(self) -> list[dict]:
        return [r for r in self.log_lines() if r.get("event") == "tool_call"]

    def stop(self) -> int:
        return stop(self.proc)


def start_gateway(upstream: str, parent: Path, **env: str) -> GatewayProc:
    """A gateway in front of `upstream`, in a fresh directory under `parent`, answering when this returns."""
    d = Path(tempfile.mkdtemp(prefix="g", dir=parent))
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "TS_"))},
        "SIDECAR_UPSTREAM_URL": upstream,
        "SIDECAR_GATEWAY_SOCKET": str(d / "gw.sock"),
        "SIDECAR_HEALTH_SOCKET": str(d / "health.sock"),
        "SIDECAR_ALLOWED_HOSTS": TAILNET_HOST,
        "TS_SOCKET": str(d / "no-tailscaled.sock"),  # no tailscaled here: names come from the env
        "SIDECAR_DRAIN_TIMEOUT": "10",
        **env,
    }
    log_path = d / "gateway.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([SIDECAR, "gateway"], env=full_env, stdout=log, stderr=log)
    gw = GatewayProc(d, proc, log_path, full_env)
    for what, check in (("the gateway health socket", lambda: gw.health("/healthz").status_code == 200),
                        ("the gateway listener", gw.listening)):
        try:
            wait_for(_while_alive(check, what, proc), what, timeout=START_TIMEOUT, interval=0.05)
        except AssertionError:
            stop(proc)
            raise
    return gw
