"""`rollout` says what the lab's real `kubectl rollout status/history` say, for each workload kind.

Revisions are made as the controllers make them (ReplicaSets for a Deployment,
ControllerRevisions for a StatefulSet or DaemonSet, owner references and revision
annotations), statuses through the status subresource.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from mcp_tailnet_lab.broken_workloads import Builder, now
from inspector_support import TRANSPORTS, err, ok, wire

SECRET_ENV = f"env-{secrets.token_hex(6)}"


def _template(app: str, image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "app", "image": image,
                                     "env": [{"name": "API_TOKEN", "value": SECRET_ENV}]}]}}


def _controller_revision(b: Builder, owner: dict[str, Any], revision: int, image: str, cause: str | None) -> None:
    name = owner["metadata"]["name"]
    meta: dict[str, Any] = {"name": f"{name}-r{revision}", "labels": {"app": name},
                            "ownerReferences": [b.owner_ref(owner)]}
    if cause:
        meta["annotations"] = {"kubernetes.io/change-cause": cause}
    b.create({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta, "revision": revision,
              "data": {"spec": {"template": {**_template(name, image), "$patch": "replace"}}}})


@pytest.fixture(scope="module")
def workloads(cluster) -> Iterator[str]:
    ns = f"rollout-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", ns)
    b = Builder(cluster, ns, node="none")
    try:
        # a Deployment with three revisions, mid-rollout (2 of 3 updated)
        dep = b.deployment("web", _template("web", "registry.example/web:3"), replicas=3, revision=3,
                           cause="kubectl set image deployment/web app=web:3",
                           status={"replicas": 4, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3})
        for rev, cause in ((1, None), (2, "kubectl apply --record (bump to 2)"),
                           (3, "kubectl set image deployment/web app=web:3")):
            b.replicaset(dep, f"r{rev}", _template("web", f"registry.example/web:{rev}"), 3 if rev == 3 else 0,
                         rev, ready=2 if rev == 3 else 0, cause=cause)
        # a Deployment that is complete, and one stuck past its progress deadline
        dep = b.deployment("done", _template("done", "registry.example/done:1"), replicas=1,
                           status={"readyReplicas": 1, "availableReplicas": 1, "unavailableReplicas": 0})
        b.replicaset(dep, "a1", _template("done", "registry.example/done:1"), 1, 1, ready=1)
        b.deployment("late", _template("late", "registry.example/late:1"), status={"conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": 'ReplicaSet "late-1" has timed out progressing.', "lastUpdateTime": now(-5),
             "lastTransitionTime": now(-5)}]})
        # a StatefulSet rolling from revision 1 to 2
        sts = b.create({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                                 "template": _template("db", "registry.example/db:2")}})
        b.status("statefulset", "db", {"observedGeneration": sts["metadata"]["generation"], "replicas": 2,
                                       "readyReplicas": 2, "currentReplicas": 1, "updatedReplicas": 1,
                                       "currentRevision": "db-r1", "updateRevision": "db-r2"})
        _controller_revision(b, sts, 1, "registry.example/db:1", None)
        _controller_revision(b, sts, 2, "registry.example/db:2", "kubectl set image statefulset/db app=db:2")
        # a StatefulSet that is complete, and one whose strategy kubectl cannot follow
        for name, strategy, ready in (("cache", {"type": "RollingUpdate"}, 1), ("legacy", {"type": "OnDelete"}, 0)):
            s = b.create({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
                          "spec": {"replicas": 1, "serviceName": name, "updateStrategy": strategy,
                                   "selector": {"matchLabels": {"app": name}},
                                   "template": _template(name, f"registry.example/{name}:1")}})
            b.status("statefulset", name, {"observedGeneration": s["metadata"]["generation"], "replicas": 1,
                                           "readyReplicas": ready, "currentReplicas": 1, "updatedReplicas": 1,
                                           "currentRevision": f"{name}-r1", "updateRevision": f"{name}-r1"})
        # a DaemonSet with two revisions, complete
        ds = b.create({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                       "spec": {"selector": {"matchLabels": {"app": "agent"}},
                                "template": _template("agent", "registry.example/agent:2")}})
        b.status("daemonset", "agent", {"observedGeneration": ds["metadata"]["generation"],
                                        "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                                        "numberMisscheduled": 0, "numberReady": 2, "updatedNumberScheduled": 2,
                                        "numberAvailable": 2})
        _controller_revision(b, ds, 1, "registry.example/agent:1", "first")
        _controller_revision(b, ds, 2, "registry.example/agent:2", None)
        yield ns
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _kubectl_status(cluster, ns: str, target: str) -> tuple[str, str | None]:
    proc = cluster.kubectl("rollout", "status", target, "-n", ns, "--watch=false", check=False)
    error = proc.stderr.strip().removeprefix("error: ") if proc.returncode else None
    return proc.stdout.strip(), error


def _kubectl_history(cluster, ns: str, target: str) -> list[tuple[int, str | None]]:
    out = cluster.kubectl("rollout", "history", target, "-n", ns).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"^(\d+)\s+(.*?)\s*$", line)
        if m:
            rows.append((int(m.group(1)), None if m.group(2) == "<none>" else m.group(2)))
    return rows


TARGETS = [("deployment", "web"), ("deployment", "done"), ("deployment", "late"), ("statefulset", "db"),
           ("statefulset", "cache"), ("statefulset", "legacy"), ("daemonset", "agent")]


@pytest.mark.parametrize(("kind", "name"), TARGETS)
def test_status_and_history_match_kubectl(cluster, inspector, workloads: str, kind: str, name: str) -> None:
    result = inspector.call("rollout", {"resource": kind, "name": name, "namespace": workloads})
    ok(result)
    data = result.structured_content
    message, error = _kubectl_status(cluster, workloads, f"{kind}/{name}")
    # kubectl prints the status line, or only the error for a rollout past its deadline
    assert data["status"].get("message", "") == message.removesuffix(error or "").strip() or \
        (error and not data["status"].get("message")), (data["status"], message)
    assert data["status"].get("error") == error
    assert data["status"]["done"] == any(w in message for w in ("successfully rolled out", "roll out complete", "update complete")) or \
        data["status"]["done"] == (error is not None and "strategy type" in error)
    history = [(h["revision"], h["changeCause"]) for h in data["history"]]
    assert history == _kubectl_history(cluster, workloads, f"{kind}/{name}")
    assert SECRET_ENV not in wire(result)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_images_per_revision_and_the_current_one(inspector, workloads: str, transport: str) -> None:
    web = inspector.call("rollout", {"resource": "deploy", "name": "web", "namespace": workloads}, transport)
    out = ok(web)
    history = web.structured_content["history"]
    assert [(h["revision"], h["images"], h["current"]) for h in history] == [
        (1, ["registry.example/web:1"], False), (2, ["registry.example/web:2"], False),
        (3, ["registry.example/web:3"], True)]
    assert out.splitlines()[0] == "Rollout of deployment.apps/web"
    assert "2 out of 3 new replicas have been updated" in out
    db = inspector.call("rollout", {"resource": "sts", "name": "db", "namespace": workloads}, transport)
    assert [(h["revision"], h["images"], h["current"]) for h in db.structured_content["history"]] == [
        (1, ["registry.example/db:1"], False), (2, ["registry.example/db:2"], True)]
    assert SECRET_ENV not in wire(web) + wire(db)


def test_refused_kinds_and_read_only(inspector, workloads: str) -> None:
    assert "Deployment, StatefulSet or DaemonSet" in err(inspector.call(
        "rollout", {"resource": "pods", "name": "x", "namespace": workloads}))
    assert "not found" in err(inspector.call("rollout", {"resource": "deployment", "name": "nope",
                                                         "namespace": workloads}))
    tool = next(t for t in inspector.tools() if t.name == "rollout")
    assert tool.annotations.read_only_hint is True


def test_deployment_history_ignores_replicasets_it_does_not_control(cluster, inspector, workloads: str) -> None:
    """A ReplicaSet that matches the selector but belongs to no one is no revision (kubectl agrees)."""
    b = Builder(cluster, workloads, node="none")
    b.create({"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": "web-orphan", "labels": {"app": "web"},
                           "annotations": {"deployment.kubernetes.io/revision": "9"}},
              "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                       "template": json.loads(json.dumps(_template("web", "registry.example/web:9")))}})
    result = inspector.call("rollout", {"resource": "deployment", "name": "web", "namespace": workloads})
    revisions = [h["revision"] for h in result.structured_content["history"]]
    assert revisions == [r for r, _ in _kubectl_history(cluster, workloads, "deployment/web")] == [1, 2, 3]
