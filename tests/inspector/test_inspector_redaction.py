"""Secrets never leave, with objects created exactly as `kubectl apply` creates them.

kubectl apply stores the whole applied manifest in the last-applied-configuration
annotation, so a Secret applied with stringData carries its value twice (data and the
annotation). Every answer is searched for the value, its base64 form and the annotation.
"""

from __future__ import annotations

import base64
import json

import pytest

from inspector_support import TRANSPORTS, apply, err, ok, wire

VALUE = "hunter2-very-secret-9f3a"
B64 = base64.b64encode(VALUE.encode()).decode()
LAST_APPLIED = "last-applied-configuration"

MANIFEST = f"""
apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
  labels: {{app: api}}
type: Opaque
stringData:
  password: {VALUE}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: api-config
data:
  mode: production
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 1
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers:
        - name: api
          image: registry.example/api:1.0
          env:
            - name: DB_PASSWORD
              valueFrom:
                secretKeyRef: {{name: db-credentials, key: password}}
            - name: LOG_LEVEL
              value: info
          envFrom:
            - secretRef: {{name: db-credentials}}
"""


@pytest.fixture
def applied(cluster, k8s_namespace: str) -> str:
    apply(cluster, MANIFEST, k8s_namespace)
    raw = json.loads(cluster.kubectl("get", "secret", "db-credentials", "-n", k8s_namespace, "-o", "json").stdout)
    # the premise: kubectl really put the value into the annotation and into data
    assert VALUE in raw["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert raw["data"]["password"] == B64
    dep = json.loads(cluster.kubectl("get", "deployment", "api", "-n", k8s_namespace, "-o", "json").stdout)
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    return k8s_namespace


def _clean(result) -> None:
    body = wire(result)
    assert VALUE not in body and B64 not in body, "secret value leaked"
    assert LAST_APPLIED not in body, "last-applied-configuration leaked"
    assert "managedFields" not in body


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_secrets_hidden_without_opt_in(inspector, applied: str, transport: str) -> None:
    for args in ({"resource": "secrets", "namespace": applied},
                 {"resource": "secret", "name": "db-credentials", "namespace": applied, "output": "yaml"}):
        result = inspector.call("get", args, transport)
        assert "include_secret_metadata" in err(result)
        _clean(result)
    result = inspector.call("describe", {"resource": "secret", "name": "db-credentials", "namespace": applied},
                            transport)
    assert result.is_error
    _clean(result)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_secret_metadata_opt_in_never_data(inspector, applied: str, transport: str) -> None:
    for output in ("yaml", "json", "table", "wide", "name"):
        for args in ({"resource": "secrets", "namespace": applied},
                     {"resource": "secrets", "all_namespaces": True},
                     {"resource": "secret", "name": "db-credentials", "namespace": applied}):
            result = inspector.call("get", {**args, "output": output, "include_secret_metadata": True}, transport)
            assert "db-credentials" in ok(result)
            _clean(result)
    one = inspector.call("get", {"resource": "secret", "name": "db-credentials", "namespace": applied,
                                 "output": "json", "include_secret_metadata": True}, transport)
    assert one.structured_content["metadata"]["labels"] == {"app": "api"}
    assert one.structured_content["type"] == "Opaque" and one.structured_content["dataKeys"] == 1
    described = inspector.call("describe", {"resource": "secret", "name": "db-credentials", "namespace": applied,
                                            "include_secret_metadata": True}, transport)
    ok(described)
    _clean(described)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_applied_objects_lose_last_applied_and_secret_values(inspector, applied: str, transport: str) -> None:
    calls = [
        ("get", {"resource": "deployment", "name": "api", "namespace": applied, "output": "yaml"}),
        ("get", {"resource": "deployments", "namespace": applied, "output": "json"}),
        ("get", {"resource": "deployments", "all_namespaces": True, "output": "yaml"}),
        ("get", {"resource": "configmap", "name": "api-config", "namespace": applied, "output": "json"}),
        ("get", {"resource": "configmaps", "namespace": applied, "output": "table"}),
        ("describe", {"resource": "deployment", "name": "api", "namespace": applied}),
        ("describe", {"resource": "configmap", "name": "api-config", "namespace": applied}),
        ("cluster_overview", {}),
        ("events", {"namespace": applied}),
    ]
    for tool, args in calls:
        result = inspector.call(tool, args, transport)
        ok(result)
        _clean(result)
    dep = inspector.call("get", {"resource": "deployment", "name": "api", "namespace": applied, "output": "json"},
                         transport).structured_content
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0] == {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-credentials",
                                                                            "key": "password"}}}
    assert env[1] == {"name": "LOG_LEVEL", "value": "info"}
    described = inspector.call("describe", {"resource": "deploy", "name": "api", "namespace": applied}, transport)
    lines = described.structured_content["template"]["containers"][0]["env"]
    assert lines[0] == "DB_PASSWORD: <set to the key 'password' in secret 'db-credentials'>"
