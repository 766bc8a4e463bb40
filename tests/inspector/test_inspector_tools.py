"""Every core tool over both transports, against the lab's real kube-apiserver (RBAC on)."""

from __future__ import annotations

import datetime
import json

import pytest

from inspector_support import TRANSPORTS, apply, err, ok, text

pytestmark = pytest.mark.parametrize("transport", TRANSPORTS)

WORKLOAD = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: app
          image: registry.example/web:1.2.3
          env: [{name: MODE, value: demo}]
"""


def _now(offset_s: int = 0) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def workload(cluster, k8s_namespace: str) -> dict[str, str]:
    """Deployment -> ReplicaSet -> Pod with owner references and a crash-looping status, plus events.

    No controller-manager runs in the lab, so the objects a controller would make are made
    here the same way (API writes, status via the status subresource).
    """
    ns = k8s_namespace
    apply(cluster, WORKLOAD, ns)
    # (an annotation change bumps a Deployment's generation, so read it afterwards)
    cluster.kubectl("patch", "deployment", "web", "-n", ns, "--type=merge", "-p",
                    json.dumps({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "2"}}}))
    dep = json.loads(cluster.kubectl("get", "deployment", "web", "-n", ns, "-o", "json").stdout)
    dep_uid = dep["metadata"]["uid"]
    cluster.kubectl("patch", "deployment", "web", "-n", ns, "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"observedGeneration": dep["metadata"]["generation"], "replicas": 2,
                                           "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                                           "unavailableReplicas": 1}}))
    rs = {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-7d9f", "labels": {"app": "web"},
                     "annotations": {"deployment.kubernetes.io/revision": "2"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                          "uid": dep_uid, "controller": True}]},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": dep["spec"]["template"]},
    }
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(rs))
    rs_uid = json.loads(cluster.kubectl("get", "rs", "web-7d9f", "-n", ns, "-o", "json").stdout)["metadata"]["uid"]
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7d9f-abcde", "labels": {"app": "web"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f",
                                          "uid": rs_uid, "controller": True}]},
        "spec": {"containers": [{"name": "app", "image": "registry.example/web:1.2.3"}]},
    }
    cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(pod))
    status = {"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                        "lastTransitionTime": _now(-60)}],
        "containerStatuses": [{
            "name": "app", "image": "registry.example/web:1.2.3", "imageID": "", "ready": False,
            "restartCount": 7,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting"}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137, "startedAt": _now(-120),
                                         "finishedAt": _now(-90)}},
        }],
    }}
    cluster.kubectl("patch", "pod", "web-7d9f-abcde", "-n", ns, "--subresource=status", "--type=merge", "-p",
                    json.dumps(status))
    pod_uid = json.loads(cluster.kubectl("get", "pod", "web-7d9f-abcde", "-n", ns, "-o", "json").stdout)[
        "metadata"]["uid"]
    for i, (etype, reason, msg, age_s) in enumerate([
        ("Normal", "Pulled", "Container image pulled", -600),
        ("Warning", "BackOff", "Back-off restarting failed container app", -30),
        ("Normal", "Started", "Started container app", -300),
    ]):
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"web-7d9f-abcde.{i}"},
            "involvedObject": {"kind": "Pod", "name": "web-7d9f-abcde", "namespace": ns, "uid": pod_uid,
                               "apiVersion": "v1"},
            "type": etype, "reason": reason, "message": msg, "count": 1,
            "firstTimestamp": _now(age_s), "lastTimestamp": _now(age_s),
            "source": {"component": "kubelet"},
        }
        cluster.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(event))
    return {"ns": ns, "pod": "web-7d9f-abcde"}


def test_api_resources(inspector, transport: str) -> None:
    result = inspector.call("api_resources", {}, transport)
    out = ok(result)
    rows = result.structured_content["rows"]
    by_name = {(r[0], r[2]): r for r in rows}
    assert ("pods", "v1") in by_name and ("deployments", "apps/v1") in by_name
    assert "deploy" in by_name[("deployments", "apps/v1")][1]
    assert "NAME" in out.splitlines()[0]
    core = inspector.call("api_resources", {"api_group": "", "namespaced": False}, transport)
    assert all(r[3] == "false" and "/" not in r[2] for r in core.structured_content["rows"])


def test_get_list_table_and_formats(inspector, workload, transport: str) -> None:
    ns = workload["ns"]
    table = inspector.call("get", {"resource": "po", "namespace": ns}, transport)
    out = ok(table)
    assert out.splitlines()[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert workload["pod"] in out and "CrashLoopBackOff" in out
    assert table.structured_content["columns"][0] == "NAME"
    wide = inspector.call("get", {"resource": "pods", "namespace": ns, "output": "wide"}, transport)
    assert "NODE" in ok(wide).splitlines()[0]
    names = inspector.call("get", {"resource": "deploy,", "namespace": ns}, transport)
    assert names.is_error  # malformed type is a tool error, not a crash
    names = inspector.call("get", {"resource": "deployments.apps", "namespace": ns, "output": "name"}, transport)
    assert ok(names).strip() == "deployment.apps/web"
    one = inspector.call("get", {"resource": "Deployment", "name": "web", "namespace": ns, "output": "json"},
                         transport)
    doc = json.loads(ok(one))
    assert doc["kind"] == "Deployment" and "managedFields" not in doc["metadata"]
    assert one.structured_content["metadata"]["name"] == "web"
    as_yaml = ok(inspector.call("get", {"resource": "rs", "name": "web-7d9f", "namespace": ns, "output": "yaml"},
                                transport))
    assert "kind: ReplicaSet" in as_yaml and "name: web-7d9f" in as_yaml


def test_get_selectors_all_namespaces_and_sort(inspector, workload, transport: str) -> None:
    ns = workload["ns"]
    by_label = inspector.call("get", {"resource": "pods", "all_namespaces": True, "label_selector": "app=web"},
                              transport)
    ok(by_label)
    assert by_label.structured_content["columns"][0] == "NAMESPACE"
    assert [ns, workload["pod"]] in [r[:2] for r in by_label.structured_content["rows"]]
    none = inspector.call("get", {"resource": "pods", "namespace": ns, "label_selector": "app=other"}, transport)
    assert "No resources found" in ok(none)
    by_field = inspector.call("get", {"resource": "pods", "namespace": ns,
                                      "field_selector": f"metadata.name={workload['pod']}", "output": "name"},
                              transport)
    assert ok(by_field).strip() == f"pod/{workload['pod']}"
    events = inspector.call("get", {"resource": "events", "namespace": ns, "output": "name",
                                    "sort_by": "metadata.name"}, transport)
    assert ok(events).split() == sorted(ok(events).split())


def test_describe_pod(inspector, workload, transport: str) -> None:
    result = inspector.call("describe", {"resource": "pod", "name": workload["pod"], "namespace": workload["ns"]},
                            transport)
    out = ok(result)
    d = result.structured_content
    assert d["ownerChain"] == ["ReplicaSet/web-7d9f", "Deployment/web"]
    c = d["containers"][0]
    assert c["restartCount"] == 7
    assert c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert c["lastTermination"]["reason"] == "OOMKilled" and c["lastTermination"]["exitCode"] == 137
    assert d["conditions"][0]["type"] == "Ready"
    assert "BackOff" in d["events"][0] and "Pulled" in d["events"][-1]  # newest first
    assert "OOMKilled" in out


def test_describe_deployment(inspector, workload, transport: str) -> None:
    result = inspector.call("describe", {"resource": "deploy", "name": "web", "namespace": workload["ns"]},
                            transport)
    ok(result)
    d = result.structured_content
    assert d["replicas"]["desired"] == 2 and d["replicas"]["available"] == 1
    assert d["rollout"].startswith("waiting for rollout to finish: 1 of 2 updated replicas")
    assert d["replicaSets"][0]["name"] == "web-7d9f" and d["replicaSets"][0]["current"] is True
    assert d["template"]["containers"][0]["env"] == ["MODE: demo"]


def test_events(inspector, workload, transport: str) -> None:
    ns = workload["ns"]
    result = inspector.call("events", {"namespace": ns}, transport)
    ok(result)
    reasons = [r[2] for r in result.structured_content["rows"]]
    assert reasons == ["BackOff", "Started", "Pulled"]  # newest first
    warn = inspector.call("events", {"namespace": ns, "warnings_only": True}, transport)
    assert [r[2] for r in warn.structured_content["rows"]] == ["BackOff"]
    obj = inspector.call("events", {"namespace": ns, "resource": "pod", "name": workload["pod"], "limit": 1},
                         transport)
    assert len(obj.structured_content["rows"]) == 1 and "newest 1 of 3" in text(obj)
    other = inspector.call("events", {"namespace": ns, "resource": "pod", "name": "nothing"}, transport)
    assert other.structured_content["rows"] == []


def test_top_without_metrics_api(inspector, transport: str) -> None:
    for what in ("nodes", "pods"):
        message = err(inspector.call("top", {"what": what, "all_namespaces": what == "pods"}, transport))
        assert "metrics.k8s.io" in message and "not available" in message


def test_cluster_overview(inspector, cluster, workload, transport: str) -> None:
    result = inspector.call("cluster_overview", {}, transport)
    ok(result)
    d = result.structured_content
    assert d["version"] == cluster.version
    assert workload["ns"] in d["namespaces"]["names"]
    assert f"{workload['ns']}/web: 1/2 ready" in d["unhealthy"]["deployments"]
    assert any(p.startswith(f"{workload['ns']}/{workload['pod']}: CrashLoopBackOff") for p in d["unhealthy"]["pods"])


def test_errors_are_one_line_and_server_keeps_serving(inspector, k8s_namespace: str, transport: str) -> None:
    cases = [
        ({"resource": "gizmos"}, 'doesn\'t have a resource type "gizmos"'),
        ({"resource": "pods", "name": "ghost", "namespace": k8s_namespace}, 'pods "ghost" not found'),
        ({"resource": "pods", "namespace": k8s_namespace, "label_selector": "app in (web"}, "bad request"),
        ({"resource": "pods", "namespace": k8s_namespace, "field_selector": "spec.nope=1"}, "bad request"),
        ({"resource": "pods", "namespace": k8s_namespace, "continue_token": "garbage"}, ""),
    ]
    for args, expected in cases:
        message = err(inspector.call("get", args, transport))
        assert expected in message and "\n" not in message and "Traceback" not in message
    # argument validation happens in the SDK, before the tool runs: still a tool error naming the argument
    message = err(inspector.call("get", {"resource": "pods", "output": "xml"}, transport))
    assert "output" in message and "'table'" in message and "Traceback" not in message
    assert err(inspector.call("describe", {"resource": "pod", "name": "ghost", "namespace": k8s_namespace},
                              transport))
    assert not inspector.call("get", {"resource": "namespaces", "name": k8s_namespace}, transport).is_error
