"""manifests-variants/restricted-reads: ConfigMaps and container logs readable only where granted.

Rendered by the lab-built kustomize, then applied for real to the lab's kube-apiserver
(RBAC on) and used with the inspector ServiceAccount's bound token: by kubectl, and by
the inspector's own code (settings, client, tools, renderer) for the answer a caller
reads. The example grant is for `default`; any other namespace must refuse.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from eks_inspector import config, kube
from eks_inspector.context import Inspector
from eks_inspector.discovery import Discovery
from eks_inspector.errors import InspectorError
from eks_inspector.render import Renderer
from eks_inspector.tools import describe, get, logs
from manifests_support import (
    DEFAULT_NAMESPACE,
    MANIFESTS,
    dump,
    find,
    key,
    kustomize,
    load_docs,
    namespaces_created,
    one,
    variant_path,
)

VARIANT = "restricted-reads"
GRANTED = "default"
TAKEN = {"configmaps", "pods/log"}
READ_ROLE = "mcp-tailnet-eks-inspector-read"
GRANT = "mcp-tailnet-eks-inspector-config-and-logs"


def rendered() -> list[dict[str, Any]]:
    return load_docs(kustomize(variant_path(VARIANT)))


def test_the_variant_takes_configmaps_and_logs_out_of_the_cluster_role_and_nothing_else():
    base, variant = load_docs(kustomize(MANIFESTS)), rendered()
    base_role, role = one(base, "ClusterRole", READ_ROLE), one(variant, "ClusterRole", READ_ROLE)
    core, base_core = role["rules"][0], base_role["rules"][0]
    assert core["apiGroups"] == [""] and core["verbs"] == base_core["verbs"]
    assert set(core["resources"]) == set(base_core["resources"]) - TAKEN and TAKEN <= set(base_core["resources"])
    assert role["rules"][1:] == base_role["rules"][1:]
    added = {key(d) for d in variant} - {key(d) for d in base}
    assert added == {("Role", GRANTED, GRANT), ("RoleBinding", GRANTED, GRANT)}
    for doc in base:
        if doc["kind"] != "ClusterRole":
            assert doc in variant, f"{key(doc)} changed"


def test_the_grant_is_read_only_and_for_the_inspector_only():
    docs = rendered()
    grant = one(find(docs, "Role"), "Role", GRANT)
    assert grant["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
                              {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]
    binding = one(find(docs, "RoleBinding"), "RoleBinding", GRANT)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": GRANT}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "eks-inspector", "namespace": DEFAULT_NAMESPACE}]


@pytest.fixture(scope="module")
def applied(cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """The variant applied for real; an inspector (its own code) with the ServiceAccount's token."""
    docs = rendered()
    other = f"restricted-{secrets.token_hex(3)}"
    with namespaces_created(cluster, docs):
        try:
            cluster.kubectl("apply", "-k", str(variant_path(VARIANT)))
            cluster.kubectl("create", "namespace", other)
            for ns in (GRANTED, other):
                cluster.kubectl("apply", "-n", ns, "-f", "-", input=dump([
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cfg-{other}"},
                     "data": {"LOG_LEVEL": "debug"}},
                    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"app-{other}"},
                     "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}]))
            token = cluster.mint_token(DEFAULT_NAMESPACE, "eks-inspector")
            kubeconfig = cluster.kubeconfig_for_token(token, tmp_path_factory.mktemp("restricted") / "sa.kubeconfig")
            settings = config.load({"INSPECTOR_KUBECONFIG": str(kubeconfig), "INSPECTOR_AUTH": "kubeconfig"})
            client = kube.connect(settings)
            ins = Inspector(settings, client, Discovery(client, settings.discovery_ttl), Renderer(settings.output_cap))
            yield {"ins": ins, "kubeconfig": kubeconfig, "other": other}
        finally:
            for ns in (GRANTED, other):
                cluster.kubectl("delete", "configmap,pod", f"cfg-{other}", f"app-{other}", "-n", ns,
                                "--ignore-not-found", "--wait=false", check=False)
            cluster.kubectl("delete", "role,rolebinding", GRANT, "-n", GRANTED, "--ignore-not-found", check=False)
            cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def can_i(cluster, kubeconfig, verb: str, resource: str, namespace: str | None) -> bool:
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    resource, _, sub = resource.partition("/")  # `can-i get pods/log` would ask about a pod named "log"
    sub_arg = [f"--subresource={sub}"] if sub else []
    out = cluster.kubectl("auth", "can-i", verb, resource, *sub_arg, *where, kubeconfig=kubeconfig,
                          check=False).stdout.strip()
    assert out in ("yes", "no"), out
    return out == "yes"


def test_rbac_grants_configmaps_and_logs_only_in_the_named_namespace(cluster, applied):
    kc, other = applied["kubeconfig"], applied["other"]
    for verb in ("get", "list", "watch"):
        assert can_i(cluster, kc, verb, "configmaps", GRANTED)
        assert not can_i(cluster, kc, verb, "configmaps", other)
        assert not can_i(cluster, kc, verb, "configmaps", None)
    assert can_i(cluster, kc, "get", "pods/log", GRANTED)
    assert not can_i(cluster, kc, "get", "pods/log", other)
    assert can_i(cluster, kc, "list", "pods", None) and can_i(cluster, kc, "list", "deployments.apps", None)
    assert not can_i(cluster, kc, "get", "secrets", GRANTED)


def answer(ins: Inspector, fn: Any, *args: Any, **kwargs: Any) -> tuple[bool, str]:
    """(refused?, the text a caller reads) for one tool call, rendered as the server renders it."""
    try:
        result = ins.renderer.finish(fn(ins, *args, **kwargs))
    except InspectorError as exc:
        result = ins.renderer.error(str(exc))
    return bool(result.is_error), result.content[0].text


def test_the_inspector_reads_config_where_granted_and_names_the_missing_grant_elsewhere(applied):
    ins, other = applied["ins"], applied["other"]
    refused, text = answer(ins, get.get, "configmaps", namespace=GRANTED, output="name")
    assert not refused and f"configmap/cfg-{other}" in text.splitlines()
    refused, text = answer(ins, describe.describe, "configmap", f"cfg-{other}", namespace=GRANTED)
    assert not refused and "LOG_LEVEL: '[hidden: 5 bytes]'" in text
    for fn, args in ((get.get, ("configmaps",)), (describe.describe, ("configmap", f"cfg-{other}"))):
        refused, text = answer(ins, fn, *args, namespace=other)
        assert refused and text.startswith("forbidden: RBAC denies verb") and '"configmaps"' in text, text
        assert f"in namespace {other}" in text or f'namespace "{other}"' in text, text
    refused, text = answer(ins, logs.logs, f"app-{other}", namespace=other)
    assert refused and text.startswith("forbidden: RBAC denies verb \"get\" on resource \"pods/log\""), text
    # where logs are granted, the refusal (if any) is not RBAC's: this pod has no node to read from
    refused, text = answer(ins, logs.logs, f"app-{other}", namespace=GRANTED)
    assert "forbidden" not in text, text
    refused, text = answer(ins, get.get, "pods", namespace=other, output="json")
    assert not refused and json.dumps(f"app-{other}") in text
