"""`mcp-tailnet-sidecar gateway --apply-serve` beside a lab tailnet node, in its namespace.

The sidecar as it runs next to an existing tailscaled: the gateway reads the node's DNS
name from the LocalAPI, renders and applies the serve config (tailnet :80 -> the gateway's
unix socket) and proxies to an unchanged MCP server on 127.0.0.1 in the same namespace.
Ready when `probe ready` says so (tailnet Running, serve applied, upstream answering).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mcp_tailnet_lab.gateway_process import SIDECAR, stop
from mcp_tailnet_lab.sidecar_run import STOCK_PORT
from mcp_tailnet_lab.tailnet import TailnetNode
from mcp_tailnet_lab.waiting import wait_for


@dataclass
class NodeGateway:
    node: TailnetNode
    proc: subprocess.Popen
    log: Path
    health_socket: Path

    def audit(self) -> list[dict]:
        """The gateway's audit lines (one per tool call)."""
        return [r for r in map(json.loads, self.log.read_text().splitlines()) if r.get("event") == "tool_call"]

    def probe_ready(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SIDECAR, "probe", "ready", "--socket", str(self.health_socket)],
                              capture_output=True, text=True, timeout=30)

    def stop(self) -> int:
        """Stop the gateway and take the serve config it applied off the node."""
        try:
            return stop(self.proc)
        finally:
            self.node.cli("serve", "reset", check=False)


def start_node_gateway(node: TailnetNode, workdir: Path, *, upstream_port: int = STOCK_PORT,
                       timeout: float = 60, **env: str) -> NodeGateway:
    """The gateway for `node` in front of 127.0.0.1:`upstream_port`; `env` adds SIDECAR_* settings."""
    d = Path(tempfile.mkdtemp(prefix="g", dir=workdir))  # short: unix socket paths are at most 107 bytes
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "TS_"))},
                "TS_SOCKET": str(node.socket),
                "SIDECAR_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}",
                "SIDECAR_GATEWAY_SOCKET": str(d / "gw.sock"),
                "SIDECAR_HEALTH_SOCKET": str(d / "health.sock"),
                **env}
    log = d / "gateway.log"
    with log.open("wb") as fh:
        proc = node.popen([SIDECAR, "gateway", "--apply-serve"], env=full_env, stdout=fh, stderr=fh)
    gw = NodeGateway(node, proc, log, d / "health.sock")
    try:
        wait_for(lambda: gw.probe_ready().returncode == 0, f"the gateway of {node.name} to be ready "
                 "(tailnet, serve, upstream)", timeout=timeout, proc=proc)
    except AssertionError as exc:
        probe = gw.probe_ready().stdout.strip()[-400:] if proc.poll() is None else "(gateway exited)"
        gw.stop()
        raise AssertionError(f"{exc}; last probe: {probe}; "
                             f"gateway log: {log.read_text(errors='replace')[-800:]}") from None
    return gw


def start_node_stock_server(node: TailnetNode, *args: str, port: int = STOCK_PORT,
                            timeout: float = 30) -> subprocess.Popen:
    """The stock MCP server (SDK defaults, `args` e.g. `--caller-headers`) on 127.0.0.1:`port`
    inside `node`'s namespace, once it accepts connections; stop it with gateway_process.stop."""
    proc = node.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(port), *args],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"
    wait_for(lambda: node.exec([sys.executable, "-c", probe], check=False).returncode == 0,
             f"the stock server inside {node.name}", timeout=timeout, proc=proc)
    return proc
