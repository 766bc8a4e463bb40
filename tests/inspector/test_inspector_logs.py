"""Logs through the real API server proxy path: apiserver -> node's kubelet endpoint -> our TLS server.

The test registers a Node whose InternalIP is 127.0.0.1 and whose kubelet port is a TLS
server it runs; the API server proxies pods/log there (/containerLogs/<ns>/<pod>/<c>), as
it does to a real kubelet.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest

from inspector_support import TRANSPORTS, base_env, err, ok, running_inspector
from mcp_tailnet_lab.fake_kubelet import FakeKubelet, node_with_kubelet, running_kubelet

TOTAL_LINES = 1000


def container_log(ns: str, pod: str, container: str, query: dict[str, list[str]]) -> str:
    if container == "slow":
        time.sleep(8)
    prefix = "previous " if query.get("previous") == ["true"] else ""
    lines = [f"{prefix}{pod}/{container} line {i}" for i in range(TOTAL_LINES)]
    lines[500] = f"{pod}/{container} line 500 connecting with password=hunter2 ERROR"
    return "".join(f"{ln}\n" for ln in lines)


@pytest.fixture(scope="module")
def kubelet() -> Iterator[FakeKubelet]:
    with running_kubelet(container_log) as server:
        yield server


@pytest.fixture(scope="module")
def node_with_pods(cluster, kubelet: FakeKubelet) -> Iterator[dict[str, str]]:
    ns = f"inspect-logs-{secrets.token_hex(3)}"
    with node_with_kubelet(cluster, kubelet) as node:
        cluster.kubectl("create", "namespace", ns)

        def pod(name: str, containers: list[str], labels: dict[str, str] | None = None) -> dict:
            return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
                    "spec": {"nodeName": node, "containers": [{"name": c, "image": "registry.example/x:1"}
                                                              for c in containers]}}

        docs = [pod("single", ["app"]), pod("multi", ["app", "sidecar"]), pod("slowpod", ["slow"]),
                pod("api-1", ["api"], {"app": "api"}), pod("api-2", ["api"], {"app": "api"})]
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
                     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                              "template": {"metadata": {"labels": {"app": "api"}},
                                           "spec": {"containers": [{"name": "api",
                                                                    "image": "registry.example/x:1"}]}}}})
        cluster.kubectl("create", "-n", ns, "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
        try:
            yield {"ns": ns, "node": node}
        finally:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def fast_timeout_inspector(cluster, tmp_path_factory):
    env = {**base_env(cluster.kubeconfig), "INSPECTOR_CALL_TIMEOUT": "3"}
    with running_inspector(env, tmp_path_factory.mktemp("logs")) as server:
        yield server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pod_logs_through_the_proxy(inspector, node_with_pods, kubelet: FakeKubelet, transport: str) -> None:
    ns = node_with_pods["ns"]
    before = len(kubelet.requests)
    result = inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": 20}, transport)
    out = ok(result)
    assert out.splitlines()[-1] == f"single/app line {TOTAL_LINES - 1}" and len(out.splitlines()) == 20
    path, query = kubelet.requests[before]
    assert path == f"/containerLogs/{ns}/single/app"
    assert query["tailLines"] == ["20"] and "limitBytes" in query
    assert result.structured_content["sources"] == [{"pod": "single", "container": "app", "lines": 20}]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_filters_previous_and_scrubbing(inspector, node_with_pods, kubelet: FakeKubelet, transport: str) -> None:
    ns = node_with_pods["ns"]
    grep = ok(inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": None, "grep": "line 99"},
                             transport))
    assert grep.splitlines() == ["single/app line 99"] + [f"single/app line {i}" for i in range(990, 1000)]
    regex = ok(inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": None,
                                       "grep": r"ERROR$", "regex": True}, transport))
    assert "line 500" in regex and "hunter2" not in regex and "[REDACTED]" in regex
    assert "valid regular expression" in err(inspector.call(
        "logs", {"name": "single", "namespace": ns, "grep": "(", "regex": True}, transport))
    before = len(kubelet.requests)
    prev = ok(inspector.call("logs", {"name": "pod/single", "namespace": ns, "previous": True, "tail_lines": 1},
                             transport))
    assert prev.startswith("previous ") and kubelet.requests[before][1]["previous"] == ["true"]
    limited = inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": None, "limit_bytes": 100},
                             transport)
    assert len(ok(limited).encode()) <= 100
    assert kubelet.requests[-1][1]["limitBytes"] == ["100"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_grep_sees_only_scrubbed_lines(inspector, node_with_pods, transport: str) -> None:
    """A filter run over the raw log would be an oracle: 'password=h' matching says the password starts
    with h, one call per character. The filter sees what the caller would see, nothing more."""
    ns = node_with_pods["ns"]
    for grep, regex in (("password=h", False), ("hunter2", False), (r"password=hu\w+", True), ("=h.*2 ERROR", True)):
        result = inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": None, "grep": grep,
                                         "regex": regex}, transport)
        assert "no log lines matched the filter" in ok(result), (grep, regex)
        assert result.structured_content["sources"][0]["lines"] == 0
    shown = ok(inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": None,
                                       "grep": "password=[REDACTED]"}, transport))
    assert shown == "single/app line 500 connecting with password=[REDACTED] ERROR"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_workload_logs_and_container_choice(inspector, node_with_pods, transport: str) -> None:
    ns = node_with_pods["ns"]
    out = ok(inspector.call("logs", {"name": "deployment/api", "namespace": ns, "tail_lines": 2}, transport))
    assert out.splitlines() == ["[api-1/api] api-1/api line 998", "[api-1/api] api-1/api line 999",
                                "[api-2/api] api-2/api line 998", "[api-2/api] api-2/api line 999"]
    message = err(inspector.call("logs", {"name": "multi", "namespace": ns}, transport))
    assert "app, sidecar" in message
    assert "multi/sidecar line 999" in ok(inspector.call(
        "logs", {"name": "multi", "namespace": ns, "container": "sidecar", "tail_lines": 1}, transport))


def test_slow_kubelet_times_out_and_server_keeps_serving(fast_timeout_inspector, node_with_pods) -> None:
    ns = node_with_pods["ns"]
    for transport in TRANSPORTS:
        message = err(fast_timeout_inspector.call("logs", {"name": "slowpod", "namespace": ns}, transport))
        assert "INSPECTOR_CALL_TIMEOUT is 3s" in message and "\n" not in message
        assert ok(fast_timeout_inspector.call("logs", {"name": "single", "namespace": ns, "tail_lines": 1},
                                              transport))
