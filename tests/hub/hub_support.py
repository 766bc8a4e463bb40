"""The real `mcp-hub` as a process, its children as the kernel sees them, and SDK clients.

The hub runs as its console script on a loopback alias (127.0.0.3) with a config file
written per test; its JSON log tells which children it started (pid per line), and
/proc tells which of them, or anything in their process groups, is still alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from mcp_tailnet_lab.gateway_process import stop
from mcp_tailnet_lab.node_clients import node_clients
from mcp_tailnet_lab.ports import free_port
from mcp_tailnet_lab.waiting import wait_for

HUB = str(Path(sys.executable).parent / "mcp-hub")
TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")
HUB_HOST = "127.0.0.3"
TRANSPORTS = ("streamable-http", "sse")


def time_server(**extra: Any) -> dict[str, Any]:
    """[servers.time]: mcp-server-time from PyPI (the lock), over stdio."""
    return {"transport": "stdio", "command": TIME_SERVER, "args": ["--local-timezone", "UTC"], **extra}


def everything_server(**extra: Any) -> dict[str, Any]:
    """[servers.everything]: @modelcontextprotocol/server-everything from npm (lab/node-clients), over stdio."""
    node, script, transport = node_clients().server_everything("stdio")
    return {"transport": "stdio", "command": node, "args": [script, transport], **extra}


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def render_toml(hub: dict[str, Any], servers: dict[str, dict[str, Any]]) -> str:
    lines = ["[hub]", *(f"{k} = {_toml_value(v)}" for k, v in hub.items())]
    for name, spec in servers.items():
        lines += ["", f"[servers.{name}]", *(f"{k} = {_toml_value(v)}" for k, v in spec.items())]
    return "\n".join(lines) + "\n"


@dataclass
class Hub:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    host: str = HUB_HOST

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def started_children(self, server: str | None = None) -> list[int]:
        return [r["pid"] for r in self.records() if r.get("msg") == "child started"
                and (server is None or r.get("server") == server)]

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.base}/healthz", timeout=5).json()

    def stop(self) -> int:
        return stop(self.proc)


def start_hub(workdir: Path, servers: dict[str, dict[str, Any]], hub: dict[str, Any] | None = None,
              env: dict[str, str] | None = None) -> Hub:
    """`mcp-hub` with a config of `servers`, listening on 127.0.0.3 when this returns."""
    port = free_port()
    config = workdir / f"hub-{port}.toml"
    config.write_text(render_toml(hub or {}, servers))
    log = workdir / f"hub-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    full_env.update({"HUB_CONFIG": str(config), "HUB_HOST": HUB_HOST, "HUB_PORT": str(port),
                     "HUB_SHUTDOWN_GRACE": "5", **(env or {})})
    with log.open("wb") as out:
        proc = subprocess.Popen([HUB], stdout=out, stderr=subprocess.STDOUT, env=full_env)
    started = Hub(proc, port, log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"mcp-hub exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{started.base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, "mcp-hub to answer /healthz", timeout=30, interval=0.1)
    return started


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def in_groups(pgids: set[int]) -> list[int]:
    """Live processes whose process group is one of `pgids` (a child and whatever it forked)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in pgids:
            found.append(int(entry.name))
    return found


def leftovers(hub: Hub) -> list[int]:
    """Children the hub started that are still alive, or anything in their process groups."""
    pids = set(hub.started_children())
    return sorted({p for p in pids if alive(p)} | set(in_groups(pids)))


def client(base: str, transport: str, path: str = "", proxy: str | None = None, **kwargs: Any) -> Client:
    """An SDK client (mode auto: it probes server/discover first) on `transport`."""
    if transport == "sse":
        def factory(headers=None, timeout=None, auth=None):
            return httpx2.AsyncClient(proxy=proxy, headers=headers, timeout=timeout, auth=auth)
        return Client(sse_client(f"{base}{path}/sse", httpx_client_factory=factory, sse_read_timeout=120), **kwargs)
    http = httpx2.AsyncClient(proxy=proxy, timeout=httpx2.Timeout(30, read=120))
    return Client(streamable_http_client(f"{base}{path}/mcp", http_client=http), **kwargs)


def text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


@contextlib.asynccontextmanager
async def connected(base: str, transport: str, path: str = "", **kwargs: Any) -> AsyncIterator[Client]:
    async with client(base, transport, path, **kwargs) as c:
        yield c


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    os.kill(pid, sig)


@contextlib.contextmanager
def hub_running(workdir: Path, servers: dict[str, dict[str, Any]], **kwargs: Any) -> Iterator[Hub]:
    hub = start_hub(workdir, servers, **kwargs)
    try:
        yield hub
    finally:
        code = hub.stop()
        time.sleep(0.2)
        assert code == 0, f"mcp-hub exited {code} on SIGTERM: {hub.log.read_text()[-2000:]}"
        assert leftovers(hub) == [], f"children outlived the hub: {leftovers(hub)}"
