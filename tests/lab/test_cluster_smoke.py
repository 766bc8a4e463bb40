"""Smoke tests of the lab cluster: a real etcd + kube-apiserver, nothing faked on the
control-plane side. Each would fail if the component were missing or a stand-in."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import kubernetes.client
import kubernetes.config
import pytest
from kubernetes.client.rest import ApiException

from mcp_tailnet_lab.cluster import LocalCluster, expected_version
from mcp_tailnet_lab.fake_kubelet import FakeKubelet, running_kubelet
from mcp_tailnet_lab.paths import MissingComponent, binary


def test_kubectl_lists_the_bootstrap_namespaces(cluster: LocalCluster) -> None:
    names = cluster.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert "namespace/default" in names
    assert "namespace/kube-system" in names


def test_server_and_kubectl_report_the_pinned_version(cluster: LocalCluster) -> None:
    assert expected_version() == "v1.35.4"
    assert cluster.version == expected_version()
    reported = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert reported["serverVersion"]["gitVersion"] == expected_version()
    # Ours, not the machine's older /usr/bin/kubectl.
    assert reported["clientVersion"]["gitVersion"] == expected_version()


def test_read_only_service_account_gets_403_on_create(cluster: LocalCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    cluster.kubectl("create", "role", "reader", "--verb=get,list,watch", "--resource=configmaps,pods", "-n", ns)
    cluster.kubectl("create", "rolebinding", "reader", "--role=reader", f"--serviceaccount={ns}:viewer", "-n", ns)
    kubeconfig = cluster.kubeconfig_for_token(cluster.mint_token(ns, "viewer"))

    whoami = json.loads(cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig).stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:viewer"
    listed = cluster.kubectl("get", "configmaps", "-n", ns, kubeconfig=kubeconfig)
    assert listed.returncode == 0

    configmap = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nope"}, "data": {"a": "b"}})
    denied = cluster.kubectl("create", "-n", ns, "-f", "-", input=configmap, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "Error from server (Forbidden)" in denied.stderr
    assert f'User "system:serviceaccount:{ns}:viewer" cannot create resource "configmaps"' in denied.stderr

    # The raw answer is an HTTP 403 Status with reason Forbidden.
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    with client, pytest.raises(ApiException) as excinfo:
        kubernetes.client.CoreV1Api(client).create_namespaced_config_map(ns, json.loads(configmap))
    assert excinfo.value.status == 403
    assert json.loads(excinfo.value.body)["reason"] == "Forbidden"
    # The admin can, so the 403 is RBAC's answer and not a broken cluster.
    cluster.kubectl("create", "-n", ns, "-f", "-", input=configmap)


LOG_BODY = "".join(f"line {i} {secrets.token_hex(4)}\n" for i in range(3))


@pytest.fixture
def fake_kubelet() -> Iterator[FakeKubelet]:
    """The lab's kubelet log endpoint (TLS, a CA the API server has never seen), every log LOG_BODY."""
    with running_kubelet(lambda ns, pod, container, query: LOG_BODY) as kubelet:
        yield kubelet


def test_pod_logs_are_proxied_by_the_api_server_to_the_nodes_kubelet(
    cluster: LocalCluster, k8s_namespace: str, fake_kubelet: FakeKubelet
) -> None:
    ns, node, pod = k8s_namespace, f"lab-node-{secrets.token_hex(4)}", "app"
    c = kubernetes.client
    with cluster.api_client() as api:
        core = c.CoreV1Api(api)
        core.create_node(c.V1Node(
            metadata=c.V1ObjectMeta(name=node),
            status=c.V1NodeStatus(
                addresses=[c.V1NodeAddress(type="InternalIP", address="127.0.0.1")],
                daemon_endpoints=c.V1NodeDaemonEndpoints(kubelet_endpoint=c.V1DaemonEndpoint(port=fake_kubelet.port)),
            ),
        ))
        try:
            core.create_namespaced_pod(ns, c.V1Pod(
                metadata=c.V1ObjectMeta(name=pod),
                spec=c.V1PodSpec(node_name=node, containers=[c.V1Container(name="main", image="registry.invalid/app:1")]),
            ))
            logs = core.read_namespaced_pod_log(pod, ns, container="main", tail_lines=3)
            assert logs == LOG_BODY
            path, query = fake_kubelet.requests[-1]
            assert path == f"/containerLogs/{ns}/{pod}/main"
            assert query["tailLines"] == ["3"]

            # The same path through kubectl, as an operator would use it.
            assert cluster.kubectl("logs", "-n", ns, pod).stdout == LOG_BODY
            assert len(fake_kubelet.requests) == 2
        finally:
            core.delete_node(node)


def test_missing_binaries_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MCP_TAILNET_CACHE", str(tmp_path))
    with pytest.raises(MissingComponent) as excinfo:
        LocalCluster.start()
    assert "kube-apiserver" in str(excinfo.value)
    assert "etcd" in str(excinfo.value)


def test_missing_kube_apiserver_alone_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A cache holding everything but kube-apiserver.
    for name in ("etcd", "kubectl"):
        real = binary(name)
        (tmp_path / "bin" / real.parent.name).mkdir(parents=True, exist_ok=True)
        (tmp_path / "bin" / real.parent.name / name).symlink_to(real)
    monkeypatch.setenv("MCP_TAILNET_CACHE", str(tmp_path))
    with pytest.raises(MissingComponent, match="kube-apiserver") as excinfo:
        LocalCluster.start()
    assert "etcd" not in str(excinfo.value)


@pytest.mark.slow
def test_stop_ends_both_processes_and_removes_the_temp_dir() -> None:
    local = LocalCluster.start()
    pids = [local._etcd.pid, local._apiserver.pid]  # type: ignore[union-attr]
    assert local.kubectl("get", "--raw", "/readyz").stdout == "ok"
    local.stop()
    assert not local.workdir.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
