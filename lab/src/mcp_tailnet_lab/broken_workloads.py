"""Broken workloads built for real in the lab cluster, as the controllers and kubelet would leave them.

Shared by tests/inspector (diagnose, rollout) and bench/inspector_bench.py (the troubleshooting bench).

The lab runs kube-apiserver without a controller-manager, scheduler or kubelet, so what
they would write is written here the same way: objects through the API (owner references
as the controllers set them), pod and workload statuses through the status subresource,
and Events as the scheduler, kubelet and ReplicaSet controller emit them. The quota
refusal is the API server's own answer to a pod the quota does not admit.
"""

from __future__ import annotations

import datetime
import json
import secrets
from dataclasses import dataclass
from typing import Any

CM_VALUE = f"cm-value-{secrets.token_hex(6)}"  # a ConfigMap value no answer may show
LOG_SECRET = f"pw-{secrets.token_hex(6)}"  # a password a crashing container logs


def now(offset_s: int = 0) -> str:
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def container_log(_ns: str, pod: str, container: str, query: dict[str, list[str]]) -> str:
    """What the fake kubelet serves: the previous instance's log says why it died."""
    if query.get("previous") == ["true"]:
        return (f"starting {pod}/{container}\nconnecting with DB_PASSWORD={LOG_SECRET}\n"
                f"panic: dial tcp 10.0.0.9:5432: connect: connection refused\n")
    return f"{pod}/{container} current instance starting\n"


@dataclass(frozen=True)
class Scenario:
    key: str
    resource: str
    name: str
    reason: str  # the top finding's reason
    words: tuple[str, ...] = ()  # words the top finding's message must contain


SCENARIOS = [
    Scenario("image-pull", "deployment", "imgpull", "ImagePullBackOff", ("registry.example/missing:9", "not found")),
    Scenario("crash-loop", "deployment", "crashy", "CrashLoopBackOff", ("exit code 1",)),
    Scenario("oom", "deployment", "hungry", "OOMKilled", ("exit code 137", "64Mi")),
    Scenario("pending-resources", "deployment", "huge", "Unschedulable", ("Insufficient cpu",)),
    Scenario("pending-pvc", "statefulset", "db", "MissingPersistentVolumeClaim", ("data-db-0",)),
    Scenario("readiness", "deployment", "notready", "ReadinessProbeFailed", ("503",)),
    Scenario("configmap-key", "deployment", "cfg", "MissingConfigMapKey", ("app-settings", "DB_HOST")),
    Scenario("stuck-rollout", "deployment", "stuck", "ProgressDeadlineExceeded", ("stuck-v2",)),
    Scenario("quota", "deployment", "greedy", "QuotaExceeded", ("exceeded quota", "compute")),
    Scenario("job-oom", "job", "batch", "OOMKilled", ("exit code 137",)),
]


class Builder:
    """Writes objects the way the lab's missing controllers would."""

    def __init__(self, cluster: Any, ns: str, node: str) -> None:
        self.cluster, self.ns, self.node = cluster, ns, node
        self.count = 0

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        out = self.cluster.kubectl("create", "-n", self.ns, "-o", "json", "-f", "-", input=json.dumps(obj)).stdout
        return json.loads(out)

    def status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        self.cluster.kubectl("patch", plural, name, "-n", self.ns, "--subresource=status", "--type=merge", "-p",
                             json.dumps({"status": status}))

    def event(self, obj: dict[str, Any], reason: str, message: str, *, etype: str = "Warning", count: int = 1,
              field_path: str | None = None, component: str = "kubelet", age_s: int = 30) -> None:
        self.count += 1
        io = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
              "namespace": self.ns, "uid": obj["metadata"]["uid"]}
        if field_path:
            io["fieldPath"] = field_path
        self.create({"apiVersion": "v1", "kind": "Event",
                     "metadata": {"name": f"{obj['metadata']['name']}.{self.count:04d}"},
                     "involvedObject": io, "type": etype, "reason": reason, "message": message, "count": count,
                     "firstTimestamp": now(-age_s - 60 * (count - 1)), "lastTimestamp": now(-age_s),
                     "source": {"component": component}})

    # -- workloads --

    @staticmethod
    def template(app: str, containers: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
        return {"metadata": {"labels": {"app": app}},
                "spec": {"containers": containers or [{"name": "app", "image": f"registry.example/{app}:1"}],
                         **spec}}

    def deployment(self, name: str, template: dict[str, Any], replicas: int = 1, revision: int = 1,
                   status: dict[str, Any] | None = None, cause: str | None = None) -> dict[str, Any]:
        annotations = {"deployment.kubernetes.io/revision": str(revision)}
        if cause:
            annotations["kubernetes.io/change-cause"] = cause
        dep = self.create({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": name, "annotations": annotations},
                           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                                    "progressDeadlineSeconds": 600, "template": template}})
        self.status("deployment", name, {"observedGeneration": dep["metadata"]["generation"], "replicas": replicas,
                                         "updatedReplicas": replicas, "readyReplicas": 0, "availableReplicas": 0,
                                         "unavailableReplicas": replicas, **(status or {})})
        return dep

    def replicaset(self, owner: dict[str, Any], suffix: str, template: dict[str, Any], replicas: int,
                   revision: int, ready: int = 0, cause: str | None = None) -> dict[str, Any]:
        name = f"{owner['metadata']['name']}-{suffix}"
        labels = {**template["metadata"]["labels"], "pod-template-hash": suffix}
        template = {**template, "metadata": {"labels": labels}}
        annotations = {"deployment.kubernetes.io/revision": str(revision)}
        if cause:
            annotations["kubernetes.io/change-cause"] = cause
        rs = self.create({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                          "metadata": {"name": name, "labels": labels, "annotations": annotations,
                                       "ownerReferences": [self.owner_ref(owner)]},
                          "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template}})
        self.status("replicaset", name, {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready,
                                         "observedGeneration": 1})
        return rs

    @staticmethod
    def owner_ref(owner: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def pod(self, owner: dict[str, Any], name: str, template: dict[str, Any], status: dict[str, Any],
            scheduled: bool = True) -> dict[str, Any]:
        spec = dict(template["spec"])
        if scheduled:
            spec["nodeName"] = self.node
        pod = self.create({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "labels": template["metadata"]["labels"],
                                        "ownerReferences": [self.owner_ref(owner)]},
                           "spec": spec})
        self.status("pod", name, status)
        return pod


def running(ready: bool, restarts: int = 0, last: dict[str, Any] | None = None, container: str = "app",
            image: str = "registry.example/x:1") -> dict[str, Any]:
    s: dict[str, Any] = {"name": container, "image": image, "imageID": "", "ready": ready, "restartCount": restarts,
                         "started": True, "state": {"running": {"startedAt": now(-300)}}}
    if last:
        s["lastState"] = {"terminated": last}
    return s


def waiting(reason: str, message: str, restarts: int = 0, last: dict[str, Any] | None = None,
            container: str = "app", image: str = "registry.example/x:1") -> dict[str, Any]:
    s: dict[str, Any] = {"name": container, "image": image, "imageID": "", "ready": False, "restartCount": restarts,
                         "started": False, "state": {"waiting": {"reason": reason, "message": message}}}
    if last:
        s["lastState"] = {"terminated": last}
    return s


def pod_status(phase: str, containers: list[dict[str, Any]], ready: bool = False,
               scheduled: dict[str, Any] | None = None) -> dict[str, Any]:
    conds = [scheduled or {"type": "PodScheduled", "status": "True", "lastTransitionTime": now(-600)}]
    if phase != "Pending" or containers:
        conds.append({"type": "Ready", "status": str(ready), "lastTransitionTime": now(-300),
                      **({} if ready else {"reason": "ContainersNotReady"})})
    return {"phase": phase, "conditions": conds, "containerStatuses": containers, "startTime": now(-600)}


def build(cluster: Any, ns: str, node: str) -> None:
    """Every scenario of SCENARIOS in namespace `ns`, plus one healthy deployment."""
    b = Builder(cluster, ns, node)

    # healthy: no finding may name it
    t = b.template("fine")
    dep = b.deployment("fine", t, status={"readyReplicas": 1, "availableReplicas": 1, "unavailableReplicas": 0})
    rs = b.replicaset(dep, "f00d", t, 1, 1, ready=1)
    b.pod(rs, "fine-f00d-aaaaa", t, pod_status("Running", [running(True)], ready=True))

    # image pull error
    image = "registry.example/missing:9"
    t = b.template("imgpull", [{"name": "app", "image": image}])
    dep = b.deployment("imgpull", t)
    rs = b.replicaset(dep, "1a2b", t, 1, 1)
    pod = b.pod(rs, "imgpull-1a2b-xxxxx", t, pod_status("Pending", [
        waiting("ImagePullBackOff", f'Back-off pulling image "{image}"', image=image)]))
    b.event(pod, "Failed", f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and '
            f'unpack image "{image}": {image}: not found', count=4, field_path="spec.containers{app}")
    # the newest event only says the kubelet waits; the older one says why
    b.event(pod, "BackOff", f'Back-off pulling image "{image}"', count=9, field_path="spec.containers{app}",
            age_s=5)

    # crash loop (its previous log names the cause)
    t = b.template("crashy")
    dep = b.deployment("crashy", t)
    rs = b.replicaset(dep, "3c4d", t, 1, 1)
    pod = b.pod(rs, "crashy-3c4d-xxxxx", t, pod_status("Running", [waiting(
        "CrashLoopBackOff", "back-off 5m0s restarting failed container=app", restarts=6,
        last={"reason": "Error", "exitCode": 1, "startedAt": now(-100), "finishedAt": now(-95)})]))
    b.event(pod, "BackOff", "Back-off restarting failed container app in pod crashy-3c4d-xxxxx", count=25,
            field_path="spec.containers{app}")

    # OOMKilled
    t = b.template("hungry", [{"name": "app", "image": "registry.example/hungry:1",
                               "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}}}])
    dep = b.deployment("hungry", t)
    rs = b.replicaset(dep, "5e6f", t, 1, 1)
    b.pod(rs, "hungry-5e6f-xxxxx", t, pod_status("Running", [waiting(
        "CrashLoopBackOff", "back-off 2m40s restarting failed container=app", restarts=4,
        last={"reason": "OOMKilled", "exitCode": 137, "startedAt": now(-80), "finishedAt": now(-70)})]))

    # pending on resources: the scheduler's verdict on a pod that asks for more CPU than any node has
    t = b.template("huge", [{"name": "app", "image": "registry.example/huge:1",
                             "resources": {"requests": {"cpu": "64"}}}])
    dep = b.deployment("huge", t)
    rs = b.replicaset(dep, "7a8b", t, 1, 1)
    msg = ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
           "1 No preemption victims found for incoming pod.")
    pod = b.pod(rs, "huge-7a8b-xxxxx", t, pod_status("Pending", [], scheduled={
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
        "lastTransitionTime": now(-300)}), scheduled=False)
    b.event(pod, "FailedScheduling", msg, count=3, component="default-scheduler")

    # pending on a missing PVC (a StatefulSet's claim template whose claim was never made)
    mounted = b.template("db", [{"name": "app", "image": "registry.example/db:1",
                                 "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}])
    claim = {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                    "resources": {"requests": {"storage": "1Gi"}}}}
    sts = b.create({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                    "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                             "template": mounted, "volumeClaimTemplates": [claim]}})
    t = {**mounted, "spec": {**mounted["spec"],
                             "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]}}
    b.status("statefulset", "db", {"replicas": 1, "readyReplicas": 0, "currentReplicas": 1,
                                   "observedGeneration": sts["metadata"]["generation"]})
    msg = '0/1 nodes are available: persistentvolumeclaim "data-db-0" not found. preemption: 0/1 nodes are available.'
    pod = b.pod(sts, "db-0", t, pod_status("Pending", [], scheduled={
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
        "lastTransitionTime": now(-300)}), scheduled=False)
    b.event(pod, "FailedScheduling", msg, count=5, component="default-scheduler")

    # failing readiness probe
    t = b.template("notready", [{"name": "app", "image": "registry.example/notready:1",
                                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}])
    dep = b.deployment("notready", t)
    rs = b.replicaset(dep, "9c0d", t, 1, 1)
    pod = b.pod(rs, "notready-9c0d-xxxxx", t, pod_status("Running", [running(False)]))
    b.event(pod, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", count=40,
            field_path="spec.containers{app}")

    # a ConfigMap key the pod needs is missing (the ConfigMap exists, with other keys)
    b.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-settings"},
              "data": {"LOG_LEVEL": "debug", "DB_PASSWORD": CM_VALUE}})
    t = b.template("cfg", [{"name": "app", "image": "registry.example/cfg:1", "env": [
        {"name": "DB_HOST", "valueFrom": {"configMapKeyRef": {"name": "app-settings", "key": "DB_HOST"}}},
        {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app-settings", "key": "LOG_LEVEL"}}}]}])
    dep = b.deployment("cfg", t)
    rs = b.replicaset(dep, "e1f2", t, 1, 1)
    pod = b.pod(rs, "cfg-e1f2-xxxxx", t, pod_status("Pending", [waiting(
        "CreateContainerConfigError", f"couldn't find key DB_HOST in ConfigMap {ns}/app-settings")]))
    b.event(pod, "Failed", f"Error: couldn't find key DB_HOST in ConfigMap {ns}/app-settings", count=12,
            field_path="spec.containers{app}")

    # stuck rollout: revision 2's pod never becomes ready, the old ReplicaSet keeps serving
    t1 = b.template("stuck", [{"name": "app", "image": "registry.example/stuck:1"}])
    t2 = b.template("stuck", [{"name": "app", "image": "registry.example/stuck:2"}])
    dep = b.deployment("stuck", t2, replicas=2, revision=2, cause="kubectl set image deployment/stuck app=stuck:2",
                       status={"replicas": 3, "updatedReplicas": 1, "readyReplicas": 2, "availableReplicas": 2,
                               "unavailableReplicas": 1, "conditions": [
                                   {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                    "message": "Deployment has minimum availability.",
                                    "lastUpdateTime": now(-900), "lastTransitionTime": now(-900)},
                                   {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                    "message": 'ReplicaSet "stuck-v2" has timed out progressing.',
                                    "lastUpdateTime": now(-60), "lastTransitionTime": now(-60)}]})
    old = b.replicaset(dep, "v1", t1, 2, 1, ready=2, cause="kubectl create deployment stuck --image=stuck:1")
    new = b.replicaset(dep, "v2", t2, 1, 2, cause="kubectl set image deployment/stuck app=stuck:2")
    for i in range(2):
        b.pod(old, f"stuck-v1-{i}", t1, pod_status("Running", [running(True, image="registry.example/stuck:1")],
                                                   ready=True))
    b.pod(new, "stuck-v2-0", t2, pod_status("Running", [running(False, image="registry.example/stuck:2")]))
    b.event(dep, "ProgressDeadlineExceeded", 'ReplicaSet "stuck-v2" has timed out progressing.',
            component="deployment-controller", etype="Normal")

    # a Job whose pod was OOMKilled until the backoff limit
    t = b.template("batch", [{"name": "app", "image": "registry.example/batch:1",
                              "resources": {"limits": {"memory": "128Mi"}}}], restartPolicy="Never")
    job = b.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"},
                    "spec": {"backoffLimit": 0, "template": t}})
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    b.status("job", "batch", {"failed": 1, "startTime": now(-400), "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit", "lastTransitionTime": now(-200)},
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit", "lastTransitionTime": now(-200)}]})
    jt = {"metadata": {"labels": job_labels}, "spec": t["spec"]}
    failed = pod_status("Failed", [{"name": "app", "image": "registry.example/batch:1", "imageID": "", "ready": False,
                                    "restartCount": 0, "started": False, "state": {"terminated": {
                                        "reason": "OOMKilled", "exitCode": 137, "startedAt": now(-300),
                                        "finishedAt": now(-250)}}}])
    b.pod(job, "batch-xxxxx", jt, failed)

    # quota (last: it refuses every pod without CPU limits from here on): the API server itself refuses the ReplicaSet's pod; the controller reports it as FailedCreate
    b.create({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
              "spec": {"hard": {"requests.cpu": "1", "limits.cpu": "1"}}})
    b.status("resourcequota", "compute", {"hard": {"requests.cpu": "1", "limits.cpu": "1"},
                                          "used": {"requests.cpu": "0", "limits.cpu": "0"}})
    t = b.template("greedy", [{"name": "app", "image": "registry.example/greedy:1",
                               "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}}])
    dep = b.deployment("greedy", t)
    rs = b.replicaset(dep, "0a0b", t, 1, 1)
    refused = cluster.kubectl("create", "-n", ns, "-f", "-", check=False, input=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "greedy-0a0b-probe"}, "spec": t["spec"]}))
    assert refused.returncode != 0 and "exceeded quota" in refused.stderr, refused.stderr
    reason = refused.stderr.strip().removeprefix("Error from server (Forbidden): error when creating \"STDIN\": ")
    b.event(rs, "FailedCreate", f"Error creating: {reason}", count=7, component="replicaset-controller")
    b.status("replicaset", rs["metadata"]["name"], {"replicas": 0, "conditions": [
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": reason,
         "lastTransitionTime": now(-120)}]})
