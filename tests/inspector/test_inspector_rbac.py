"""The shipped ClusterRole, bound to a ServiceAccount: reads work, Secrets are a one-line 403."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import yaml

from inspector_support import TRANSPORTS, apply, base_env, err, ok, running_inspector

ROLE_FILE = Path(__file__).resolve().parents[2] / "tools" / "eks-inspector" / "rbac" / "clusterrole.yaml"


def test_role_is_read_only_and_never_secrets() -> None:
    role = yaml.safe_load(ROLE_FILE.read_text())
    assert role["kind"] == "ClusterRole"
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
        assert "*" not in rule["resources"] and "*" not in rule.get("apiGroups", [])
        assert "secrets" not in rule["resources"]


@pytest.fixture(scope="module")
def readonly_inspector(cluster, tmp_path_factory):
    """The inspector running with a bound ServiceAccount token that has only the shipped ClusterRole."""
    ns = f"inspect-rbac-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", ns)
    apply(cluster, ROLE_FILE.read_text())
    role = yaml.safe_load(ROLE_FILE.read_text())["metadata"]["name"]
    binding = f"inspector-test-{secrets.token_hex(3)}"
    cluster.kubectl("create", "clusterrolebinding", binding, f"--clusterrole={role}",
                    f"--serviceaccount={ns}:eks-inspector")
    token = cluster.mint_token(ns, "eks-inspector")
    kubeconfig = cluster.kubeconfig_for_token(token)
    cluster.kubectl("create", "secret", "generic", "db", "-n", ns, "--from-literal=password=topsecret")
    cluster.kubectl("run", "web", "-n", ns, "--image=registry.example/web:1")
    try:
        with running_inspector(base_env(kubeconfig), tmp_path_factory.mktemp("rbac")) as server:
            yield server, ns
    finally:
        cluster.kubectl("delete", "clusterrolebinding", binding, check=False)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reads_allowed_secrets_denied_in_one_line(readonly_inspector, transport: str) -> None:
    server, ns = readonly_inspector
    pods = server.call("get", {"resource": "pods", "namespace": ns}, transport)
    assert "web" in ok(pods)
    denied = err(server.call("get", {"resource": "secrets", "name": "db", "namespace": ns,
                                     "include_secret_metadata": True}, transport))
    assert 'verb "get"' in denied and 'resource "secrets"' in denied and f'namespace "{ns}"' in denied
    assert "\n" not in denied and "topsecret" not in denied
    listed = err(server.call("get", {"resource": "secrets", "all_namespaces": True,
                                     "include_secret_metadata": True}, transport))
    assert 'verb "list"' in listed and 'resource "secrets"' in listed and "cluster-wide" in listed
    assert f"system:serviceaccount:{ns}:eks-inspector" in listed


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_other_tools_work_with_least_privilege(readonly_inspector, transport: str) -> None:
    server, ns = readonly_inspector
    ok(server.call("api_resources", {}, transport))
    ok(server.call("describe", {"resource": "pod", "name": "web", "namespace": ns}, transport))
    ok(server.call("events", {"namespace": ns}, transport))
    overview = server.call("cluster_overview", {}, transport)
    ok(overview)
    assert ns in overview.structured_content["namespaces"]["names"]
    denied = err(server.call("get", {"resource": "clusterroles"}, transport))
    assert 'verb "list"' in denied and 'resource "clusterroles.rbac.authorization.k8s.io"' in denied
