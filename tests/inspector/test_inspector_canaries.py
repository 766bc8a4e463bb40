"""No credential reaches a client from anywhere in the cluster, through any tool, over either transport.

Canaries are planted the way people create objects (`kubectl apply`, which also copies each
manifest into the last-applied-configuration annotation) in every place a credential hides:
ConfigMap values (text and binary), plain env values, container args, annotations, a CRD's
fields and printer columns, an Event's message, and container logs (read through the API
server's pods/log proxy from a kubelet endpoint the test runs). Then every tool the server
lists is called with arguments that reach those objects, over SSE and Streamable HTTP, and
the whole of each answer (text and structuredContent, as the client received it) is
searched for every canary. A tool added later without a call here fails the coverage check.

Ordinary values next to the canaries (image names, LOG_LEVEL=debug, key names, resource
names) must still be shown: scrubbing that hid everything would pass the first check.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from inspector_support import TRANSPORTS, apply, base_env, ok, running_inspector, wire
from mcp_tailnet_lab.fake_kubelet import node_with_kubelet, running_kubelet

CID = secrets.token_hex(6)  # every canary carries it; it appears nowhere else


def canary(place: str) -> str:
    return f"Cnry{CID}{place}"


PEM_LINES = ["-----BEGIN RSA PRIVATE KEY-----", f"MIIEowIBAAKCAQEA{CID}q9Zt", f"bG9uZ2VyYm9keQ{CID}==",
             "-----END RSA PRIVATE KEY-----"]
LOG = "\n".join([
    "LOG_LEVEL=debug ready",
    f"starting with DB_PASSWORD={canary('log1')}",
    f"connecting to postgres://app:{canary('log2')}@db:5432/app",
    f"request header Authorization: Bearer {canary('log3')}",
    f'aws config {{"SecretAccessKey": "{canary("log4")}", "Region": "eu-west-1"}}',
    f"export AWS_SECRET_ACCESS_KEY={canary('log5')}",
    "loaded TLS key:", *PEM_LINES,
    f"pushing with ghp_{CID}{'x' * 26}",
    "served 200 GET /healthz",
]) + "\n"


def manifests(node: str, group: str) -> str:
    return f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  DB_PASSWORD: {canary('cm1')}
  LOG_LEVEL: debug
  notes: "plain words {canary('cm2')}"
  app.properties: |
    db.url=postgres://app:{canary('cm3')}@db:5432/app
    log.level=debug
binaryData:
  blob: {base64.b64encode(canary('cm4').encode()).decode()}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  annotations:
    example.com/db-password: {canary('ann1')}
    example.com/settings: '{{"SecretAccessKey": "{canary('ann2')}"}}'
    example.com/owner: team-canary
spec:
  replicas: 1
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers:
        - name: api
          image: registry.example/canary-api:1.0
          args: ["--password", "{canary('arg1')}", "--api-key={canary('arg2')}", "--v=2"]
          env:
            - {{name: DB_PASSWORD, value: {canary('env1')}}}
            - {{name: AWS_SECRET_ACCESS_KEY, value: {canary('env2')}}}
            - {{name: DATABASE_URL, value: "postgres://app:{canary('env3')}@db:5432/app"}}
            - {{name: NOTIFY, value: "xoxb-1234-{canary('env4')}"}}
            - {{name: LOG_LEVEL, value: debug}}
---
apiVersion: v1
kind: Pod
metadata:
  name: api-0
  labels: {{app: api}}
  annotations:
    example.com/api-token: {canary('ann3')}
spec:
  nodeName: {node}
  containers:
    - name: api
      image: registry.example/canary-api:1.0
      env:
        - {{name: DB_PASSWORD, value: {canary('env5')}}}
        - {{name: LOG_LEVEL, value: debug}}
---
apiVersion: {group}/v1
kind: DbCluster
metadata:
  name: main
spec:
  engine: postgres
  credentials: {{username: app, password: {canary('crd1')}}}
  auth: {{apiKey: "opaque-{canary('crd2')}"}}
  connectionString: "Server=db;User Id=app;Password={canary('crd3')};"
  endpoint: "https://app:{canary('crd4')}@db.example:5432"
  tlsKey: |
{chr(10).join('    ' + line for line in PEM_LINES)}
"""


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: dbclusters.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: dbclusters, singular: dbcluster, kind: DbCluster}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
      additionalPrinterColumns:
        - {{name: Engine, type: string, jsonPath: .spec.engine}}
        - {{name: Password, type: string, jsonPath: .spec.credentials.password}}
        - {{name: Login, type: string, jsonPath: .spec.auth.apiKey}}
"""


def event(ns: str, uid: str) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "api.canary"},
        "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "namespace": ns, "uid": uid},
        "reason": "LoginFailed", "type": "Warning", "count": 1, "firstTimestamp": now, "lastTimestamp": now,
        "source": {"component": "canary"},
        "message": f"login failed with DB_PASSWORD={canary('ev1')} for postgres://app:{canary('ev2')}@db",
    })


@pytest.fixture(scope="module")
def planted(cluster, tmp_path_factory) -> Iterator[dict[str, str]]:
    ns = f"canary-{secrets.token_hex(3)}"
    group = f"canary{secrets.token_hex(3)}.example.com"
    with running_kubelet(lambda _ns, _pod, _c, _q: LOG) as kubelet, node_with_kubelet(cluster, kubelet) as node:
        cluster.kubectl("create", "namespace", ns)
        apply(cluster, CRD.format(group=group))
        try:
            cluster.kubectl("wait", "--for=condition=Established", f"crd/dbclusters.{group}", "--timeout=60s")
            apply(cluster, manifests(node, group), ns)
            uid = json.loads(cluster.kubectl("get", "deployment", "api", "-n", ns, "-o", "json").stdout)["metadata"]["uid"]
            apply(cluster, event(ns, uid), ns)
            # a crash-looping status, so diagnose reads the previous instance's log (the canary log)
            cluster.kubectl("patch", "pod", "api-0", "-n", ns, "--subresource=status", "--type=merge", "-p",
                            json.dumps({"status": {"phase": "Running", "containerStatuses": [{
                                "name": "api", "image": "registry.example/canary-api:1.0", "imageID": "",
                                "ready": False, "restartCount": 3, "started": False,
                                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                                "lastState": {"terminated": {"reason": "Error", "exitCode": 2}}}]}}))
            # the premise: kubectl stored the canaries, including in last-applied-configuration
            raw = cluster.kubectl("get", "configmaps,deployments,pods,events,dbclusters", "-n", ns, "-o", "json").stdout
            assert raw.count(CID) > 30 and "last-applied-configuration" in raw
            yield {"ns": ns, "group": group}
        finally:
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
            cluster.kubectl("delete", "crd", f"dbclusters.{group}", "--wait=false", check=False)


def plan(ns: str, group: str) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = [("api_resources", {}), ("api_resources", {"api_group": group})]
    for resource in ("configmaps", "deployments", "pods", "events", f"dbclusters.{group}"):
        for output in ("table", "wide", "yaml", "json", "name"):
            calls.append(("get", {"resource": resource, "namespace": ns, "output": output}))
    for resource, name in (("configmap", "app-config"), ("deployment", "api"), ("pod", "api-0"),
                           (f"dbclusters.{group}", "main"), ("event", "api.canary")):
        for output in ("table", "yaml", "json"):
            calls.append(("get", {"resource": resource, "name": name, "namespace": ns, "output": output}))
        calls.append(("describe", {"resource": resource, "name": name, "namespace": ns}))
    calls += [
        ("get", {"resource": "configmaps", "all_namespaces": True, "output": "yaml", "label_selector": "x!=y"}),
        ("get", {"resource": "pods", "namespace": ns, "output": "table", "sort_by": "spec.nodeName"}),
        ("logs", {"name": "api-0", "namespace": ns, "tail_lines": None}),
        ("logs", {"name": "api-0", "namespace": ns, "tail_lines": 8}),  # starts inside the PEM block
        ("logs", {"name": "api-0", "namespace": ns, "limit_bytes": 300}),  # ends inside the PEM block
        ("logs", {"name": "deployment/api", "namespace": ns}),
        ("logs", {"name": "api-0", "namespace": ns, "grep": "PASSWORD"}),
        ("logs", {"name": "api-0", "namespace": ns, "grep": "postgres|Bearer|[A-Za-z0-9]{20,}", "regex": True}),
        ("events", {"namespace": ns}),
        ("events", {"namespace": ns, "resource": "deployment", "name": "api", "warnings_only": True}),
        ("top", {"what": "pods", "namespace": ns}),
        ("cluster_overview", {}),
        ("clusters", {}),
        ("diagnose", {"namespace": ns, "max_findings": 100, "log_lines": 200}),
        ("diagnose", {"resource": "deployment", "name": "api", "namespace": ns}),
        ("diagnose", {"resource": "pod", "name": "api-0", "namespace": ns, "log_lines": 8}),  # inside the PEM block
        ("rollout", {"resource": "deployment", "name": "api", "namespace": ns}),
        ("explain", {"path": f"dbclusters.{group}"}),
        ("explain", {"path": "configmap.data"}),
    ]
    return calls


def leaked(body: str) -> bool:
    return CID in body.lower() or any(base64.b64encode(canary(p).encode()).decode() in body for p in ("cm4",))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_no_canary_in_any_answer_of_any_tool(inspector, planted, transport: str) -> None:
    calls = plan(planted["ns"], planted["group"])
    listed = {t.name for t in inspector.tools(transport)}
    assert listed <= {tool for tool, _ in calls}, f"tools without a canary call: {listed - {t for t, _ in calls}}"
    leaks = []
    answered = 0
    for tool, args in calls:
        result = inspector.call(tool, args, transport)
        body = wire(result)
        if leaked(body) or "last-applied-configuration" in body:
            leaks.append((tool, args, body[:300]))
        answered += not result.is_error
    assert leaks == []
    assert answered >= len(calls) - 2  # only top (no metrics API) and the event describe may be refused


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ordinary_values_stay_visible(inspector, planted, transport: str) -> None:
    ns, group = planted["ns"], planted["group"]
    dep = inspector.call("get", {"resource": "deployment", "name": "api", "namespace": ns, "output": "json"},
                         transport).structured_content
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/canary-api:1.0"
    assert container["args"] == ["--password", "[REDACTED]", "--api-key=[REDACTED]", "--v=2"]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "DB_PASSWORD": "[REDACTED]", "AWS_SECRET_ACCESS_KEY": "[REDACTED]",
        "DATABASE_URL": "postgres://app:[REDACTED]@db:5432/app", "NOTIFY": "[REDACTED:slack-token]",
        "LOG_LEVEL": "debug"}
    assert dep["metadata"]["annotations"] == {"example.com/db-password": "[REDACTED]",
                                              "example.com/settings": '{"SecretAccessKey": "[REDACTED]"}',
                                              "example.com/owner": "team-canary"}
    described = inspector.call("describe", {"resource": "deployment", "name": "api", "namespace": ns}, transport)
    assert described.structured_content["template"]["containers"][0]["env"] == [
        "DB_PASSWORD: [REDACTED]", "AWS_SECRET_ACCESS_KEY: [REDACTED]",
        "DATABASE_URL: postgres://app:[REDACTED]@db:5432/app", "NOTIFY: [REDACTED:slack-token]", "LOG_LEVEL: debug"]
    assert "LoginFailed  login failed with DB_PASSWORD=[REDACTED] for postgres://app:[REDACTED]@db" in ok(described)
    cm = inspector.call("get", {"resource": "configmap", "name": "app-config", "namespace": ns, "output": "json"},
                        transport).structured_content
    assert cm["data"]["LOG_LEVEL"] == "[hidden: 5 bytes]"
    assert cm["binaryData"] == {"blob": f"[hidden: {len(canary('cm4'))} bytes]"}
    assert set(cm["data"]) == {"DB_PASSWORD", "LOG_LEVEL", "notes", "app.properties"}
    logs = ok(inspector.call("logs", {"name": "api-0", "namespace": ns, "tail_lines": None}, transport))
    for line in ("LOG_LEVEL=debug ready", "starting with DB_PASSWORD=[REDACTED]",
                 "postgres://app:[REDACTED]@db:5432/app", "Authorization: Bearer [REDACTED]",
                 "[REDACTED:private-key]", "[REDACTED:github-token]", "served 200 GET /healthz"):
        assert line in logs
    table = inspector.call("get", {"resource": f"dbclusters.{group}", "namespace": ns}, transport).structured_content
    assert table["columns"][:4] == ["NAME", "ENGINE", "PASSWORD", "LOGIN"]
    assert table["rows"][0][:4] == ["main", "postgres", "[REDACTED]", "[REDACTED]"]


def test_configmap_values_opt_in(cluster, planted, tmp_path) -> None:
    """INSPECTOR_CONFIGMAP_VALUES=show: values are shown, credential-shaped ones still are not."""
    env = {**base_env(cluster.kubeconfig), "INSPECTOR_CONFIGMAP_VALUES": "show"}
    with running_inspector(env, tmp_path) as server:
        for transport in TRANSPORTS:
            result = server.call("get", {"resource": "configmap", "name": "app-config", "namespace": planted["ns"],
                                         "output": "json"}, transport)
            data = result.structured_content["data"]
            assert data["LOG_LEVEL"] == "debug" and data["DB_PASSWORD"] == "[REDACTED]"
            assert data["app.properties"] == "db.url=postgres://app:[REDACTED]@db:5432/app\nlog.level=debug\n"
            assert data["notes"] == f"plain words {canary('cm2')}"  # not credential-shaped: the opt-in shows it
            assert result.structured_content["binaryData"]["blob"] == base64.b64encode(canary("cm4").encode()).decode()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sorting_by_a_hidden_value_tells_nothing(cluster, inspector, planted, transport: str) -> None:
    """Sorted by a hidden field, the order would say how the hidden values compare; it must be
    the order of what is shown instead (here: equal markers, so the API's name order)."""
    ns, group = planted["ns"], planted["group"]
    for name, value in (("sort-a", "zzzz"), ("sort-b", "aaaa")):  # names ascend, values descend
        apply(cluster, json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": name, "labels": {"sort": "yes"}},
                                   "data": {"DB_PASSWORD": f"{value}{CID}"}}), ns)
        apply(cluster, json.dumps({"apiVersion": f"{group}/v1", "kind": "DbCluster",
                                   "metadata": {"name": name, "labels": {"sort": "yes"}},
                                   "spec": {"engine": "x", "credentials": {"password": f"{value}{CID}"},
                                            "auth": {"apiKey": f"{value}{CID}"}}}), ns)
    by = {"namespace": ns, "label_selector": "sort=yes"}
    for resource, sort_by, output in (("configmaps", "data.DB_PASSWORD", "json"),
                                      (f"dbclusters.{group}", "spec.credentials.password", "yaml"),
                                      (f"dbclusters.{group}", "PASSWORD", "table"),
                                      (f"dbclusters.{group}", "LOGIN", "table"),
                                      (f"dbclusters.{group}", "spec.auth.apiKey", "table")):
        result = inspector.call("get", {"resource": resource, **by, "sort_by": sort_by, "output": output}, transport)
        names = ([item["metadata"]["name"] for item in result.structured_content["items"]] if output != "table"
                 else [row[0] for row in result.structured_content["rows"]])
        assert names == ["sort-a", "sort-b"], (resource, sort_by, names)
        assert not leaked(wire(result))
