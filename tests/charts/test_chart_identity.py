"""charts/mcp-tailnet identity values (issue 13): impersonation and tool grants.

- `identity.impersonation` with the names of manifests-variants/impersonation renders exactly
  that variant's objects (whose least privilege tests/manifests/test_manifests_impersonation.py
  checks with `kubectl auth can-i` against the real API server), and the chart's own rendering
  is checked the same way here.
- Values that would widen the ServiceAccount (an empty list = every name, system: names,
  wildcards, groups that are not tailnet:tag:*) are refused by name.
- `identity.toolGrants` sets the sidecar's SIDECAR_TAILNET_GRANTS=true, nothing else.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from chart_support import CHART, helm, template
from manifests_support import VARIANTS_DIR, container, dump, env_value, find, kustomize, load_docs, namespaces_created, one, variant_path
from test_chart import assert_same_objects

VARIANT_ROLE = VARIANTS_DIR / "components" / "impersonation" / "impersonate.yaml"


def listed_names() -> dict[str, list[str]]:
    """The users and groups the kustomize variant lists (one source for both forms)."""
    role = next(d for d in yaml.safe_load_all(VARIANT_ROLE.read_text()) if d["kind"] == "ClusterRole")
    return {rule["resources"][0]: rule["resourceNames"] for rule in role["rules"]}


def impersonation(**values: Any) -> list[str]:
    return ["--set-json", "identity.impersonation=" + json.dumps({"enabled": True, **values})]


def test_impersonation_renders_the_kustomize_variant() -> None:
    names = listed_names()
    chart = template(*impersonation(users=names["users"], groups=names["groups"]))
    assert_same_objects(chart, load_docs(kustomize(variant_path("impersonation"))))


def test_off_by_default_and_tool_grants_only_set_the_sidecar_switch() -> None:
    default = template()
    spec = one(default, "Deployment", "eks-inspector")["spec"]["template"]["spec"]
    assert env_value(container(spec, "eks-inspector"), "INSPECTOR_IMPERSONATE") is None
    assert env_value(container(spec, "tailscale"), "SIDECAR_TAILNET_GRANTS") is None
    assert not find(default, "ClusterRole", "mcp-tailnet-eks-inspector-impersonate")
    grants = template("--set", "identity.toolGrants=true")
    spec = one(grants, "Deployment", "eks-inspector")["spec"]["template"]["spec"]
    assert env_value(container(spec, "tailscale"), "SIDECAR_TAILNET_GRANTS") == "true"
    assert env_value(container(spec, "eks-inspector"), "SIDECAR_TAILNET_GRANTS") is None
    changed = [d for d in grants if d not in default]
    assert [d["kind"] for d in changed] == ["Deployment"]


def test_only_the_listed_kind_gets_a_rule() -> None:
    """A list left empty gets no rule at all: an empty resourceNames means every name."""
    docs = template(*impersonation(groups=["tailnet:tag:ci"]))
    role = one(docs, "ClusterRole", "mcp-tailnet-eks-inspector-impersonate")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"],
                              "resourceNames": ["tailnet:tag:ci"]}]
    assert not find(docs, "ClusterRole", "mcp-tailnet-eks-inspector-read")


@pytest.mark.parametrize("values, message", [
    ({}, "identity.impersonation: list the users and/or groups the inspector may act as"),
    ({"users": [], "groups": []}, "identity.impersonation: list the users and/or groups"),
    ({"groups": ["system:masters"]}, 'identity.impersonation: "system:masters" is never impersonated'),
    ({"users": ["System:Admin"]}, 'identity.impersonation: "System:Admin" is never impersonated'),
    ({"users": ["*"]}, 'identity.impersonation: "*" is never impersonated'),
    ({"groups": ["developers"]}, 'identity.impersonation.groups: "developers" is not tailnet:tag:NAME'),
    ({"users": ["tailnet:tag:ci"]}, 'identity.impersonation.users: "tailnet:tag:ci" is a tag\'s group'),
], ids=["no-names", "empty-lists", "system-group", "system-user", "wildcard", "other-group", "tag-as-user"])
def test_values_that_would_widen_the_service_account_are_refused(values: dict[str, Any], message: str) -> None:
    proc = helm("template", "x", str(CHART), *impersonation(**values), check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_impersonation_with_the_hub_or_another_server_is_refused() -> None:
    args = impersonation(groups=["tailnet:tag:ci"])
    proc = helm("template", "x", str(CHART), *args, "--set", "hub.enabled=true", "--set", "hub.config=x", check=False)
    assert proc.returncode != 0 and "mcp-hub does not hand the caller's" in proc.stderr, proc.stderr
    proc = helm("template", "x", str(CHART), *args, "--set", "server.inspector=false", "--set", "server.image=x",
                check=False)
    assert proc.returncode != 0 and "impersonation is the inspector's mode" in proc.stderr, proc.stderr


def test_the_charts_service_account_can_impersonate_only_the_listed_names(cluster: Any, tmp_path) -> None:
    """The chart's rendering applied for real; the API server judges its ServiceAccount."""
    docs = template(*impersonation(users=["alice@example.com"], groups=["tailnet:tag:ci"]))
    with namespaces_created(cluster, docs):
        cluster.kubectl("delete", "clusterrolebinding", "mcp-tailnet-eks-inspector-read", "--ignore-not-found")
        cluster.kubectl("apply", "-f", "-", input=dump(docs))
        kc = cluster.kubeconfig_for_token(cluster.mint_token("mcp-tailnet", "eks-inspector"), tmp_path / "sa.kubeconfig")

        def can_i(*args: str) -> bool:
            out = cluster.kubectl("auth", "can-i", *args, kubeconfig=kc, check=False).stdout.strip()
            assert out in ("yes", "no"), out
            return out == "yes"

        assert can_i("impersonate", "users/alice@example.com") and can_i("impersonate", "groups/tailnet:tag:ci")
        assert not can_i("impersonate", "users/bob@example.com") and not can_i("impersonate", "groups/system:masters")
        assert not can_i("list", "pods", "--all-namespaces") and not can_i("get", "secrets", "-n", "mcp-tailnet")
