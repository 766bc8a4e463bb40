"""The pod `helm template` renders (default values), run in Docker, joined to the lab tailnet.

The same proof tests/manifests/test_manifests_docker_pod.py gives for manifests/, with its
kubelet translation (Kubelet: env, volumes, ServiceAccount token files, securityContext,
limits, exec probes) and its MCP call, imported, not copied: a real API server holding the
chart's objects, containerboot keeping its state through the sidecar's one-Secret Role, the
pod Ready, and a tailnet client reaching the inspector by name and reading the cluster with
its own identity.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from chart_support import template
from manifests_support import DEFAULT_NAMESPACE, dump, env_value, one, wait_alive
from mcp_tailnet_lab.waiting import wait_for
from test_manifests_docker_pod import (  # noqa: F401  (module_pods, pod_network, pod_cluster: fixtures)
    READY_TIMEOUT_S,
    Kubelet,
    _mcp_call,
    logs,
    module_pods,
    pod_cluster,
    pod_network,
    wait_ready,
)


@pytest.fixture(scope="module")
def chart_pod(module_pods, pod_network, pod_cluster, headscale, repo_images, tmp_path_factory) -> Iterator[dict]:
    docs = template()
    pod_cluster.kubectl("apply", "-f", "-", input=dump(d for d in docs if d["kind"] == "Namespace"))
    pod_cluster.kubectl("apply", "-f", "-", input=dump(docs))
    deployment = one(docs, "Deployment", "eks-inspector")
    files = tmp_path_factory.mktemp("kubelet")
    files.chmod(0o755)
    kubelet = Kubelet(docs, deployment, pod_cluster, files, headscale.preauth_key("lab"), repo_images)
    hostname = f"chart-inspector-{secrets.token_hex(3)}"
    # Lab-only additions (tests/manifests/test_manifests_docker_pod.py's header explains each).
    lab_only = {"tailscale": {"TS_HOSTNAME": hostname, "SIDECAR_LOGIN_SERVER": headscale.url,
                              "TS_DEBUG_USE_DERP_HTTP": "true", "TS_KUBERNETES_READ_API_SERVER_ADDRESS_FROM_ENV": "true"}}
    spec = deployment["spec"]["template"]["spec"]
    containers = module_pods.run([kubelet.run_kwargs(c, lab_only.get(c["name"], {})) for c in spec["containers"]],
                                 network=pod_network)
    by_name = dict(zip([c["name"] for c in spec["containers"]], containers, strict=True))
    wait_alive(by_name, spec, READY_TIMEOUT_S, logs)
    yield {"containers": by_name, "spec": spec, "hostname": hostname, "cluster": pod_cluster}


def test_chart_pod_keeps_its_state_through_the_narrow_role_and_becomes_ready(chart_pod: dict) -> None:
    containers, spec = chart_pod["containers"], chart_pod["spec"]
    for c in spec["containers"]:
        attrs = containers[c["name"]].attrs["HostConfig"]
        assert attrs["ReadonlyRootfs"] is True and attrs["CapDrop"] == ["ALL"]
    state = env_value(next(c for c in spec["containers"] if c["name"] == "tailscale"), "TS_KUBE_SECRET")

    def written() -> bool:
        secret = json.loads(chart_pod["cluster"].kubectl("get", "secret", state, "-n", DEFAULT_NAMESPACE,
                                                         "-o", "json").stdout)
        return {"device_id", "_machinekey"} <= set(secret.get("data", {}))

    wait_for(written, f"containerboot to write the node's state into {state}", 120, interval=2.0)
    wait_ready(chart_pod)


def test_chart_pod_reachable_by_name_with_the_inspector_identity(chart_pod: dict, tailnet: Any, headscale: Any) -> None:
    wait_ready(chart_pod)
    client_node = tailnet.node(f"hc-{secrets.token_hex(3)}")
    url = f"http://{chart_pod['hostname']}.{headscale.base_domain}/mcp"
    try:
        with httpx.Client(proxy=client_node.proxy_url, timeout=30) as client:
            init, session = _mcp_call(client, url, "initialize", {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "chart-proof", "version": "0"}}, None, 1)
            assert init["result"]["serverInfo"]["name"] and session
            client.post(url, headers={"Mcp-Session-Id": session, "Content-Type": "application/json",
                                      "Accept": "application/json, text/event-stream",
                                      "MCP-Protocol-Version": "2025-06-18"},
                        json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            called, _ = _mcp_call(client, url, "tools/call", {"name": "get", "arguments": {"resource": "namespaces"}},
                                  session, 2)
            text = json.dumps(called["result"])
            assert DEFAULT_NAMESPACE in text and not called["result"].get("isError"), text[:500]
    finally:
        tailnet.remove(client_node)
