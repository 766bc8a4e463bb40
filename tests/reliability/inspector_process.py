"""The real eks-inspector as a process, and one raw JSON-RPC session on it over Streamable HTTP.

Raw JSON-RPC (httpx, one session) because the reliability tests send what an SDK client
would refuse to, and many calls: a session per call would cost more than the calls.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reliability_support import free_port, stop, wait_for

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass
class Running:
    base: str
    proc: subprocess.Popen
    log: Path
    session: str
    client: httpx.Client
    allowed: str = ""
    other: str = ""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(101))  # unique across threads

    def rpc(self, method: str, params: dict | None = None) -> tuple[int, str, dict | None]:
        """POST one JSON-RPC request on the session; (status, raw text, the JSON-RPC answer)."""
        msg = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, **({"params": params} if params is not None else {})}
        r = self.client.post("/mcp", content=json.dumps(msg).encode(), headers={**ACCEPT, "mcp-session-id": self.session})
        answer = None
        for line in r.text.splitlines():
            if line.startswith("data:"):
                answer = json.loads(line[5:])
        if answer is None and r.headers.get("content-type", "").startswith("application/json"):
            answer = r.json()
        return r.status_code, r.text, answer

    def call(self, tool: str, args: dict) -> tuple[int, str, dict | None]:
        return self.rpc("tools/call", {"name": tool, "arguments": args})

    def result(self, tool: str, args: dict) -> dict[str, Any]:
        """The tool result of one call (asserting it is one), as the client received it."""
        status, text, answer = self.call(tool, args)
        assert status == 200 and answer is not None and "result" in answer, (status, text[:300])
        return answer["result"]


@contextlib.contextmanager
def running_inspector(kubeconfig: Path, log_dir: Path, **settings: str) -> Iterator[Running]:
    """`eks-inspector` on a free loopback port with `settings` (INSPECTOR_*), one session open; SIGTERM after."""
    port = free_port()
    log = log_dir / f"inspector-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSPECTOR_", "AWS_", "KUBECONFIG"))}
    env.update({"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "AWS_EC2_METADATA_DISABLED": "true", "INSPECTOR_EKS_TOOLS": "off",
                "INSPECTOR_KUBECONFIG": str(kubeconfig), "INSPECTOR_HOST": "127.0.0.1", "INSPECTOR_PORT": str(port),
                **settings})
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "eks_inspector"], stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, timeout=60)
    try:
        wait_for(lambda: client.get("/healthz").status_code == 200, "eks-inspector /healthz", timeout=60, proc=proc)
        r = client.post("/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "rel", "version": "1"}}},
            headers=ACCEPT)
        sid = r.headers["mcp-session-id"]
        client.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers={**ACCEPT, "mcp-session-id": sid})
        yield Running(base, proc, log, sid, client)
    finally:
        client.close()
        stop(proc)
