"""manifests-variants/impersonation: the inspector's ServiceAccount may impersonate the listed
tailnet names and do nothing else (issue 13 §3).

Rendered by the lab-built kustomize, applied for real to the lab's kube-apiserver, and judged
with the ServiceAccount's bound token by the API server itself (`kubectl auth can-i`, i.e.
SelfSubjectAccessReview, and real requests with --as / --as-group).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from manifests_support import (
    DEFAULT_NAMESPACE,
    MANIFESTS,
    container,
    env_value,
    find,
    key,
    kustomize,
    load_docs,
    namespaces_created,
    one,
    variant_path,
)

VARIANT = "impersonation"
READ = "mcp-tailnet-eks-inspector-read"
IMPERSONATE = "mcp-tailnet-eks-inspector-impersonate"
LISTED_USERS = ["alice@example.com", "bob@example.com", "tailnet:node:ci-runner.example-tailnet.ts.net"]
LISTED_GROUPS = ["tailnet:tag:ci"]


def rendered() -> list[dict[str, Any]]:
    return load_docs(kustomize(variant_path(VARIANT)))


def test_the_variant_swaps_the_read_role_for_impersonation_and_sets_the_mode():
    base, variant = load_docs(kustomize(MANIFESTS)), rendered()
    assert not find(variant, "ClusterRole", READ) and not find(variant, "ClusterRoleBinding", READ)
    added = {key(d) for d in variant} - {key(d) for d in base}
    assert added == {("ClusterRole", "", IMPERSONATE), ("ClusterRoleBinding", "", IMPERSONATE)}
    role = one(variant, "ClusterRole", IMPERSONATE)
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": LISTED_USERS},
        {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"], "resourceNames": LISTED_GROUPS},
    ]
    binding = one(variant, "ClusterRoleBinding", IMPERSONATE)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "eks-inspector", "namespace": DEFAULT_NAMESPACE}]
    spec = one(variant, "Deployment", "eks-inspector")["spec"]["template"]["spec"]
    assert env_value(container(spec, "eks-inspector"), "INSPECTOR_IMPERSONATE") == "caller"
    base_spec = one(base, "Deployment", "eks-inspector")["spec"]["template"]["spec"]
    assert env_value(container(base_spec, "eks-inspector"), "INSPECTOR_IMPERSONATE") is None
    for doc in base:
        if doc["kind"] != "Deployment" and key(doc) not in {("ClusterRole", "", READ), ("ClusterRoleBinding", "", READ)}:
            assert doc in variant, f"{key(doc)} changed"


@pytest.fixture(scope="module")
def service_account(cluster, tmp_path_factory) -> Iterator[Any]:
    """The variant applied for real; a kubeconfig with the inspector ServiceAccount's bound token."""
    docs = rendered()
    with namespaces_created(cluster, docs):
        # apply does not prune: a read binding left by another variant's test would grant reads
        cluster.kubectl("delete", "clusterrolebinding", READ, "--ignore-not-found")
        cluster.kubectl("apply", "-k", str(variant_path(VARIANT)))
        token = cluster.mint_token(DEFAULT_NAMESPACE, "eks-inspector")
        yield cluster.kubeconfig_for_token(token, tmp_path_factory.mktemp("impersonation") / "sa.kubeconfig")


def can_i(cluster, kubeconfig, *args: str) -> bool:
    out = cluster.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False).stdout.strip()
    assert out in ("yes", "no"), out
    return out == "yes"


def test_the_service_account_may_impersonate_exactly_the_listed_names(cluster, service_account):
    kc = service_account
    for name in LISTED_USERS:
        assert can_i(cluster, kc, "impersonate", f"users/{name}")
    for name in LISTED_GROUPS:
        assert can_i(cluster, kc, "impersonate", f"groups/{name}")
    for forbidden in ("users/mallory@example.com", "users/system:admin", "users/system:anonymous",
                      "users/system:serviceaccount:kube-system:default", "groups/system:masters",
                      "groups/system:authenticated", "groups/tailnet:tag:prod", "users", "groups",
                      "serviceaccounts", "uids"):
        assert not can_i(cluster, kc, "impersonate", forbidden), forbidden


def test_the_service_account_reads_nothing_itself(cluster, service_account):
    kc = service_account
    for args in (("list", "pods", "--all-namespaces"), ("get", "pods", "-n", "default"),
                 ("list", "namespaces"), ("list", "nodes"), ("get", "secrets", "-n", DEFAULT_NAMESPACE),
                 ("get", "pods", "--subresource=log", "-n", "default"), ("list", "deployments.apps", "-A"),
                 ("create", "pods", "-n", "default"), ("escalate", "clusterroles"), ("bind", "clusterroles")):
        assert not can_i(cluster, kc, *args), args
    # what it keeps: discovery, through Kubernetes' own system:discovery role
    assert cluster.kubectl("api-resources", "--cached=false", kubeconfig=kc).returncode == 0


def test_impersonation_is_refused_for_unlisted_names_and_privileged_groups(cluster, service_account):
    kc = service_account
    listed = cluster.kubectl("--as=alice@example.com", "auth", "can-i", "list", "pods", "-n", "default",
                             kubeconfig=kc, check=False)
    assert listed.stdout.strip() in ("yes", "no") and "cannot impersonate" not in listed.stderr
    for extra in (["--as=mallory@example.com"], ["--as=alice@example.com", "--as-group=system:masters"],
                  ["--as=system:admin"]):
        refused = cluster.kubectl(*extra, "get", "pods", "-n", "default", kubeconfig=kc, check=False)
        assert refused.returncode != 0 and "cannot impersonate" in refused.stderr, (extra, refused.stderr)
