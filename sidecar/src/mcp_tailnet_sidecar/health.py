"""Liveness, readiness and metrics, served apart from the MCP traffic.

Where it listens (a choice that matters, docs/design.md fact 1): by default only on a unix
socket. A loopback TCP port would not do: in userspace mode tailscaled forwards any
tailnet port without a serve handler to 127.0.0.1, which would put the health listener
on the tailnet. Probes therefore run `mcp-tailnet-sidecar probe ready|alive` (exec
probes on Kubernetes, the container health check command on ECS and in compose). For
HTTP probes and Prometheus scraping, `SIDECAR_HEALTH_LISTEN=<pod IP>:PORT` adds a TCP
listener on that one address (never loopback or wildcard in userspace mode).

/healthz: the process is alive. /readyz: the tailnet is up (BackendState Running), the
serve config is applied in tailscaled, and the upstream MCP server answers HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mcp_tailnet_sidecar.metrics import Metrics

Check = Callable[[], Awaitable[tuple[bool, str]]]


class HealthApp:
    def __init__(self, metrics: Metrics, checks: dict[str, Check]) -> None:
        self.metrics = metrics
        self.checks = checks

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        report: dict[str, Any] = {}
        ok_all = True
        for name, check in self.checks.items():
            try:
                ok, detail = await check()
            except Exception as exc:  # a failing check is a "not ready", never a crash
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            report[name] = {"ok": ok, "detail": detail}
            ok_all &= ok
        return ok_all, report

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz":
            status, body, ctype = 200, b'{"status": "alive"}\n', b"application/json"
        elif path == "/readyz":
            ok, report = await self.readiness()
            status = 200 if ok else 503
            body = (json.dumps({"ready": ok, "checks": report}) + "\n").encode()
            ctype = b"application/json"
        elif path == "/metrics":
            status, body, ctype = 200, self.metrics.render(), b"text/plain; version=0.0.4"
        else:
            status, body, ctype = 404, b"not found: use /healthz, /readyz or /metrics\n", b"text/plain"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
