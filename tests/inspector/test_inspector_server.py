"""The process around the tools: Host checks, SIGTERM, and a broken aggregated API."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import time

import anyio
import httpx

from inspector_support import apply, base_env, ok, running_inspector, session

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "probe", "version": "0"}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_foreign_host_refused_allowed_host_accepted(cluster, tmp_path) -> None:
    env = {**base_env(cluster.kubeconfig), "INSPECTOR_ALLOWED_HOSTS": "inspector.internal"}
    with running_inspector(env, tmp_path) as server:
        url = f"{server.base}/mcp"
        refused = httpx.post(url, json=INIT, headers={**HEADERS, "Host": "evil.example"}, timeout=10)
        assert refused.status_code == 421
        allowed = httpx.post(url, json=INIT, headers={**HEADERS, "Host": "inspector.internal"}, timeout=10)
        assert allowed.status_code == 200
        assert httpx.get(f"{server.base}/healthz", timeout=10).json()["status"] == "ok"


def test_sigterm_with_an_open_sse_stream_exits_0_within_the_grace(cluster, tmp_path) -> None:
    env = {**base_env(cluster.kubeconfig), "INSPECTOR_SHUTDOWN_GRACE": "3"}
    with running_inspector(env, tmp_path) as server:
        seen: dict[str, bool] = {}

        async def hold_stream_and_stop() -> None:
            async with session(server.base, "sse") as s:
                await s.call_tool("api_resources", {})
                server.proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(30):  # the grace is 3 s: 30 s means it was not honoured
                    while server.proc.poll() is None:
                        await anyio.sleep(0.1)
                seen["exited_with_the_stream_open"] = True

        try:
            anyio.run(hold_stream_and_stop)
        except Exception:
            # Leaving the session after the server went away may raise (the stream was cut under
            # the client); only what happened before that is the test's business.
            if not seen:
                raise
        assert seen == {"exited_with_the_stream_open": True}
        assert server.proc.wait(timeout=30) == 0, server.logs()[-2000:]
        lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
        assert lines and all("msg" in entry and "level" in entry for entry in lines)  # one JSON object per line
        assert lines[-1]["msg"] == "stopped"  # the drained path, not a crash or a kill


def test_broken_aggregated_api_does_not_hang_discovery(cluster, inspector) -> None:
    group = f"broken{secrets.token_hex(3)}.example.com"
    apply(cluster, f"""
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1.{group}}}
spec:
  group: {group}
  version: v1
  groupPriorityMinimum: 1000
  versionPriority: 15
  insecureSkipTLSVerify: true
  service: {{namespace: default, name: nothing-here, port: 443}}
""")
    try:
        started = time.monotonic()
        result = inspector.call("api_resources", {"refresh": True}, timeout=60)
        ok(result)
        assert any(r[0] == "pods" for r in result.structured_content["rows"])
        assert time.monotonic() - started < 30
        ok(inspector.call("get", {"resource": "namespaces"}, timeout=60))
        # once the API server has tried the APIService, the group is reported as unavailable
        for _ in range(20):
            result = inspector.call("api_resources", {"refresh": True}, timeout=60)
            if f"{group}/v1" in result.structured_content["staleGroups"]:
                break
            time.sleep(1)
        assert f"{group}/v1" in result.structured_content["staleGroups"]
        assert f"{group}/v1" in ok(result)
    finally:
        cluster.kubectl("delete", "apiservice", f"v1.{group}", check=False)


def test_check_config_reports_the_connection(cluster) -> None:
    import sys

    proc = subprocess.run([sys.executable, "-m", "eks_inspector", "--check-config"],
                          env=base_env(cluster.kubeconfig), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "kubeconfig" in proc.stdout


def test_namespace_allow_list(cluster, tmp_path) -> None:
    allowed, other = (f"inspect-allow-{secrets.token_hex(3)}" for _ in range(2))
    for ns in (allowed, other):
        cluster.kubectl("create", "namespace", ns)
        cluster.kubectl("create", "configmap", "settings", "-n", ns, "--from-literal=mode=x")
    env = {**base_env(cluster.kubeconfig), "INSPECTOR_NAMESPACES": allowed}
    with running_inspector(env, tmp_path) as server:
        default = server.call("get", {"resource": "configmaps", "output": "name"})
        assert ok(default).strip() == "configmap/settings"  # the only allowed namespace is the default
        denied = server.call("get", {"resource": "configmaps", "namespace": other})
        assert denied.is_error and "allow-list" in denied.content[0].text
        everywhere = server.call("get", {"resource": "configmaps", "all_namespaces": True})
        assert {r[0] for r in everywhere.structured_content["rows"]} == {allowed}
        namespaces = server.call("get", {"resource": "namespaces"})
        assert [r[0] for r in namespaces.structured_content["rows"]] == [allowed]
        assert server.call("logs", {"name": "x", "namespace": other}).is_error
