"""The MCP servers bench/inspector_bench.py compares, each run as its users run it, and one warm client session.

eks-inspector and containers/kubernetes-mcp-server answer Streamable HTTP; awslabs eks-mcp-server
speaks stdio only (FastMCP's default `run()`), so it runs as the client's child process. Every
server gets the same kubeconfig (cluster admin on the lab API server). The peers are provisioned
pinned by lab/provision.d/76-peer-mcp-servers.sh.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from mcp_tailnet_lab.gateway_process import stop
from mcp_tailnet_lab.paths import binary, versions
from mcp_tailnet_lab.ports import free_port

# The kubeconfig context eks-mcp-server resolves its required `cluster_name` argument to.
EKS_CLUSTER_NAME = "lab"


class Peer(str, Enum):
    INSPECTOR = "eks-inspector"
    KUBERNETES_MCP = "kubernetes-mcp-server"
    EKS_MCP = "awslabs eks-mcp-server"


def label(peer: Peer) -> str:
    v = versions()
    return {Peer.INSPECTOR: "eks-inspector",
            Peer.KUBERNETES_MCP: f"kubernetes-mcp-server {v['KUBERNETES_MCP_SERVER_VERSION']}",
            Peer.EKS_MCP: f"eks-mcp-server {v['AWSLABS_EKS_MCP_SERVER_VERSION']}"}[peer]


@dataclass
class Call:
    """One tool call as the client saw it."""

    tool: str
    seconds: float
    wire: str  # the CallToolResult as JSON (text content + structuredContent), as the client received it
    text: str  # the text content an agent reads

    @property
    def wire_bytes(self) -> int:
        return len(self.wire.encode())


@dataclass
class Session:
    """A warm MCP client session; every call is recorded until `take()`."""

    peer: Peer
    session: ClientSession
    pid: int | None = None
    calls: list[Call] = field(default_factory=list)
    peak_rss_kib: int = 0

    async def call(self, tool: str, args: dict[str, Any]) -> CallToolResult:
        if self.peer is Peer.EKS_MCP:
            args = {"cluster_name": EKS_CLUSTER_NAME, **args}
        t = time.perf_counter()
        result = await self.session.call_tool(tool, args)
        seconds = time.perf_counter() - t
        text = "\n".join(getattr(c, "text", "") for c in result.content)
        if result.is_error:
            raise RuntimeError(f"{self.peer.value} {tool} {args}: {text[:300]}")
        self.calls.append(Call(tool, seconds, result.model_dump_json(by_alias=True, exclude_none=True), text))
        self._sample_rss()
        return result

    def take(self) -> list[Call]:
        calls, self.calls = self.calls, []
        return calls

    def _sample_rss(self) -> None:
        """Peak resident set of the server (VmHWM)."""
        with contextlib.suppress(OSError, TypeError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def _http_server(argv: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[tuple[str, int]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield f"http://127.0.0.1:{port}/mcp", proc.pid
    finally:
        stop(proc, timeout=30)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("INSPECTOR_", "AWS_", "KUBECONFIG", "EKS_", "FASTMCP_"))}


@contextlib.asynccontextmanager
async def session(peer: Peer, kubeconfig: Path, workdir: Path) -> AsyncIterator[Session]:
    """A warm, initialized client session with `peer` against the cluster `kubeconfig` names."""
    log = workdir / f"{peer.name.lower()}.log"
    if peer is Peer.EKS_MCP:
        # kubeconfig auth mode: see docs/benchmarks.md for why IAM mode cannot reach the lab API server
        env = {**_clean_env(), "KUBECONFIG": str(_named_context(kubeconfig, workdir)), "FASTMCP_LOG_LEVEL": "ERROR"}
        params = StdioServerParameters(command=str(binary("awslabs.eks-mcp-server")),
                                       args=["--auth-mode", "kubeconfig", "--allow-sensitive-data-access"], env=env)
        with log.open("w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                yield Session(peer, s, _child_pid("awslabs.eks-mcp-server"))
        return
    port = free_port()
    if peer is Peer.INSPECTOR:
        env = {**_clean_env(), "INSPECTOR_PORT": str(port), "INSPECTOR_KUBECONFIG": str(kubeconfig),
               "INSPECTOR_EKS_TOOLS": "off", "INSPECTOR_TRANSPORTS": "streamable-http", "INSPECTOR_LOG_LEVEL": "WARNING"}
        argv = [sys.executable, "-m", "eks_inspector"]
    else:
        env = _clean_env()
        argv = [str(binary("kubernetes-mcp-server")), "--port", str(port), "--kubeconfig", str(kubeconfig),
                "--read-only", "--toolsets", "core", "--cluster-provider", "kubeconfig"]
    with _http_server(argv, env, port, log) as (url, pid):
        async with streamable_http_client(url, max_sse_event_size=None) as streams, \
                ClientSession(streams[0], streams[1]) as s:
            await s.initialize()
            yield Session(peer, s, pid)


def _named_context(kubeconfig: Path, workdir: Path) -> Path:
    """The lab kubeconfig with its context renamed EKS_CLUSTER_NAME (eks-mcp-server resolves names to contexts)."""
    doc = json.loads(json.dumps(_load_yaml(kubeconfig)))
    for ctx in doc.get("contexts", []):
        if ctx["name"] == doc.get("current-context"):
            ctx["name"] = EKS_CLUSTER_NAME
    doc["current-context"] = EKS_CLUSTER_NAME
    out = workdir / "eks-mcp.kubeconfig"
    out.write_text(json.dumps(doc))
    out.chmod(0o600)
    return out


def _load_yaml(path: Path) -> Any:
    import yaml  # the lab kubeconfig is YAML; PyYAML comes with the kubernetes client

    return yaml.safe_load(path.read_text())


def _child_pid(name: str) -> int | None:
    """The pid of our stdio child `name` (for its RSS); the newest child of this process with that name."""
    me = str(os.getpid())
    found = None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (proc / "stat").read_text()
            ppid = stat.rsplit(")", 1)[1].split()[1]
            if ppid == me and name in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found = int(proc.name)
    return found
