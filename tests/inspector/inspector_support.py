"""Run the real `eks-inspector` and talk to it with the MCP SDK client over either transport."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from mcp_tailnet_lab.ports import free_port

TRANSPORTS = ("sse", "streamable-http")


@dataclass
class Inspector:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def call(self, tool: str, args: dict[str, Any] | None = None, transport: str = "streamable-http",
             timeout: float = 120) -> CallToolResult:
        return call(self.base, tool, args or {}, transport, timeout)

    def tools(self, transport: str = "streamable-http") -> list[Any]:
        async def run() -> list[Any]:
            async with session(self.base, transport) as s:
                return (await s.list_tools()).tools

        return anyio.run(run)


def base_env(kubeconfig: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSPECTOR_", "AWS_", "KUBECONFIG"))}
    env.update({"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "AWS_EC2_METADATA_DISABLED": "true", "INSPECTOR_EKS_TOOLS": "off"})
    if kubeconfig:
        env["INSPECTOR_KUBECONFIG"] = str(kubeconfig)
    return env


def placeholder_kubeconfig(path: Path) -> Path:
    """A syntactically valid kubeconfig for a cluster nobody listens for (a free loopback port):
    for tests where the inspector must start but only talks to AWS."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "unused"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


@contextlib.contextmanager
def running_inspector(env: dict[str, str], log_dir: Path, ready_timeout: float = 60) -> Iterator[Inspector]:
    """Start `eks-inspector` for real (uvicorn) on a free loopback port; SIGTERM it afterwards."""
    port = free_port()
    env = {**env, "INSPECTOR_HOST": "127.0.0.1", "INSPECTOR_PORT": str(port)}
    log = log_dir / f"inspector-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "eks_inspector"], stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    server = Inspector(base, proc, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"eks-inspector exited with {proc.returncode}: {server.logs()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"eks-inspector did not answer /healthz within {ready_timeout}s: "
                                     f"{server.logs()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def session(base: str, transport: str) -> AsyncIterator[ClientSession]:
    if transport == "sse":
        async with sse_client(f"{base}/sse", timeout=30, sse_read_timeout=120) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                yield s
    elif transport == "streamable-http":
        async with streamable_http_client(f"{base}/mcp") as streams:
            async with ClientSession(streams[0], streams[1]) as s:
                await s.initialize()
                yield s
    else:
        raise ValueError(transport)


def call(base: str, tool: str, args: dict[str, Any], transport: str, timeout: float = 120) -> CallToolResult:
    async def run() -> CallToolResult:
        with anyio.fail_after(timeout):
            async with session(base, transport) as s:
                return await s.call_tool(tool, args)

    return anyio.run(run)


def text(result: CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def wire(result: CallToolResult) -> str:
    """Everything the client received, as one string (to search for leaks)."""
    return json.dumps(result.model_dump(mode="json", by_alias=True))


def ok(result: CallToolResult) -> str:
    assert not result.is_error, f"tool error: {text(result)}"
    return text(result)


def err(result: CallToolResult) -> str:
    assert result.is_error, f"expected a tool error, got: {text(result)[:500]}"
    return text(result)


def apply(cluster: Any, manifest: str, namespace: str | None = None) -> str:
    """`kubectl apply` exactly as a user runs it (so last-applied-configuration is set)."""
    args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
    return cluster.kubectl(*args, input=manifest).stdout
