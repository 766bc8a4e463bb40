"""A CRD created at run time is discovered (without waiting for the cache TTL) and fetched."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from inspector_support import TRANSPORTS, apply, ok


@pytest.fixture
def crd(cluster, k8s_namespace: str) -> Iterator[dict[str, str]]:
    group = f"lab{secrets.token_hex(3)}.example.com"
    apply(cluster, f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {{type: integer}}
                color: {{type: string}}
      additionalPrinterColumns:
        - {{name: Color, type: string, jsonPath: .spec.color}}
        - {{name: Size, type: integer, jsonPath: .spec.size}}
""")
    cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")
    apply(cluster, f"""
apiVersion: {group}/v1
kind: Widget
metadata: {{name: blue-one}}
spec: {{color: blue, size: 3}}
""", k8s_namespace)
    try:
        yield {"group": group, "ns": k8s_namespace}
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_crd_discovered_and_fetched(inspector, crd, transport: str) -> None:
    group, ns = crd["group"], crd["ns"]
    # warm the discovery cache first, as a long-running server would have it
    ok(inspector.call("api_resources", {}, transport))
    table = inspector.call("get", {"resource": "wdg", "namespace": ns}, transport)
    out = ok(table)
    assert table.structured_content["columns"][:3] == ["NAME", "COLOR", "SIZE"]
    assert table.structured_content["rows"][0][:3] == ["blue-one", "blue", 3]
    assert "blue-one" in out
    resources = inspector.call("api_resources", {"api_group": group}, transport)
    assert [r[:5] for r in resources.structured_content["rows"]] == [
        ["widgets", "wdg", f"{group}/v1", "true", "Widget"]]
    one = inspector.call("get", {"resource": f"widgets.{group}", "name": "blue-one", "namespace": ns,
                                 "output": "yaml"}, transport)
    assert "color: blue" in ok(one) and one.structured_content["kind"] == "Widget"
    by_kind = inspector.call("describe", {"resource": "Widget", "name": "blue-one", "namespace": ns}, transport)
    assert ok(by_kind) and by_kind.structured_content["spec"] == {"color": "blue", "size": 3}
