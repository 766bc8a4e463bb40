"""`rollout`: a Deployment's, StatefulSet's or DaemonSet's rollout status and history, in one answer.

The status line is the one `kubectl rollout status --watch=false` prints (same checks in
the same order), the history the revisions `kubectl rollout history` lists: a
Deployment's from its ReplicaSets, a StatefulSet's or DaemonSet's from its
ControllerRevisions, each with its change-cause and the images of its pod template.
Only images are taken from a revision's template, never its environment.
"""

from __future__ import annotations

from typing import Any

from eks_inspector.context import Inspector, age
from eks_inspector.errors import InspectorError, Op
from eks_inspector.kube import api_path
from eks_inspector.render import Document
from eks_inspector.tools.diagnose import label_selector

CHANGE_CAUSE = "kubernetes.io/change-cause"
REVISION = "deployment.kubernetes.io/revision"
MAX_REVISIONS = 50
KINDS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}


def deployment_status(d: dict[str, Any]) -> tuple[str, bool, str | None]:
    """(message, done, error) as kubectl's DeploymentStatusViewer words them."""
    name, spec, st = d["metadata"]["name"], d.get("spec") or {}, d.get("status") or {}
    if d["metadata"].get("generation", 0) > st.get("observedGeneration", 0):
        return "Waiting for deployment spec update to be observed...", False, None
    progressing = next((c for c in st.get("conditions") or [] if c.get("type") == "Progressing"), {})
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return "", False, f'deployment "{name}" exceeded its progress deadline'
    replicas, updated = spec.get("replicas", 1), st.get("updatedReplicas", 0)
    if updated < replicas:
        return (f'Waiting for deployment "{name}" rollout to finish: {updated} out of {replicas} new replicas have '
                f"been updated..."), False, None
    if st.get("replicas", 0) > updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {st.get("replicas", 0) - updated} old replicas '
                f"are pending termination..."), False, None
    if st.get("availableReplicas", 0) < updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {st.get("availableReplicas", 0)} of {updated} '
                f"updated replicas are available..."), False, None
    return f'deployment "{name}" successfully rolled out', True, None


def statefulset_status(s: dict[str, Any]) -> tuple[str, bool, str | None]:
    spec, st = s.get("spec") or {}, s.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return "", True, "rollout status is only available for RollingUpdate strategy type"
    if not st.get("observedGeneration") or s["metadata"].get("generation", 0) > st.get("observedGeneration", 0):
        return "Waiting for statefulset spec update to be observed...", False, None
    replicas = spec.get("replicas", 1)
    if st.get("readyReplicas", 0) < replicas:
        return f"Waiting for {replicas - st.get('readyReplicas', 0)} pods to be ready...", False, None
    rolling = strategy.get("rollingUpdate")
    if rolling is not None:  # the API server defaults it (partition 0), so kubectl words most cases this way
        partition = rolling.get("partition")
        if partition is not None and st.get("updatedReplicas", 0) < replicas - partition:
            return (f"Waiting for partitioned roll out to finish: {st.get('updatedReplicas', 0)} out of "
                    f"{replicas - partition} new pods have been updated..."), False, None
        return f"partitioned roll out complete: {st.get('updatedReplicas', 0)} new pods have been updated...", True, None
    if st.get("updateRevision") != st.get("currentRevision"):
        return (f"waiting for statefulset rolling update to complete {st.get('updatedReplicas', 0)} pods at revision "
                f"{st.get('updateRevision')}..."), False, None
    return (f"statefulset rolling update complete {st.get('currentReplicas', 0)} pods at revision "
            f"{st.get('currentRevision')}..."), True, None


def daemonset_status(ds: dict[str, Any]) -> tuple[str, bool, str | None]:
    name, spec, st = ds["metadata"]["name"], ds.get("spec") or {}, ds.get("status") or {}
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return "", True, "rollout status is only available for RollingUpdate strategy type"
    if ds["metadata"].get("generation", 0) > st.get("observedGeneration", 0):
        return "Waiting for daemon set spec update to be observed...", False, None
    desired = st.get("desiredNumberScheduled", 0)
    if st.get("updatedNumberScheduled", 0) < desired:
        return (f'Waiting for daemon set "{name}" rollout to finish: {st.get("updatedNumberScheduled", 0)} out of '
                f"{desired} new pods have been updated..."), False, None
    if st.get("numberAvailable", 0) < desired:
        return (f'Waiting for daemon set "{name}" rollout to finish: {st.get("numberAvailable", 0)} of {desired} '
                f"updated pods are available..."), False, None
    return f'daemon set "{name}" successfully rolled out', True, None


STATUS = {"Deployment": deployment_status, "StatefulSet": statefulset_status, "DaemonSet": daemonset_status}


def _images(template: dict[str, Any]) -> list[str]:
    spec = template.get("spec") or {}
    return [str(c.get("image")) for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]


def _controlled_by(obj: dict[str, Any], uid: str) -> bool:
    return any(r.get("uid") == uid and r.get("controller") for r in (obj.get("metadata") or {}).get("ownerReferences")
               or [])


def _history(ins: Inspector, kind: str, w: dict[str, Any], ns: str) -> list[dict[str, Any]]:
    uid = w["metadata"]["uid"]
    q = [("labelSelector", label_selector((w.get("spec") or {}).get("selector")))]
    revisions = []
    if kind == "Deployment":
        doc = ins.kube.get(api_path("apps", "v1", "replicasets", ns), Op("list", "replicasets", "apps", ns), q)
        current = (w["metadata"].get("annotations") or {}).get(REVISION)
        for rs in doc.get("items") or []:
            ann = rs["metadata"].get("annotations") or {}
            if not _controlled_by(rs, uid) or not str(ann.get(REVISION, "")).isdigit():
                continue
            revisions.append({"revision": int(ann[REVISION]), "changeCause": ann.get(CHANGE_CAUSE),
                              "images": _images((rs.get("spec") or {}).get("template") or {}),
                              "replicaSet": rs["metadata"]["name"], "current": ann[REVISION] == current,
                              "replicas": f"{(rs.get('status') or {}).get('readyReplicas', 0)}/"
                                          f"{(rs.get('spec') or {}).get('replicas', 0)} ready",
                              "age": age(rs["metadata"].get("creationTimestamp"))})
    else:
        doc = ins.kube.get(api_path("apps", "v1", "controllerrevisions", ns),
                           Op("list", "controllerrevisions", "apps", ns), q)
        current = (w.get("status") or {}).get("updateRevision") if kind == "StatefulSet" else None
        for cr in doc.get("items") or []:
            if not _controlled_by(cr, uid):
                continue
            template = (((cr.get("data") or {}).get("spec") or {}).get("template")) or {}
            revisions.append({"revision": int(cr.get("revision", 0)),
                              "changeCause": (cr["metadata"].get("annotations") or {}).get(CHANGE_CAUSE),
                              "images": _images(template), "controllerRevision": cr["metadata"]["name"],
                              **({"current": cr["metadata"]["name"] == current} if current else {}),
                              "age": age(cr["metadata"].get("creationTimestamp"))})
        if kind == "DaemonSet" and revisions:
            newest = max(r["revision"] for r in revisions)
            for r in revisions:
                r["current"] = r["revision"] == newest
    revisions.sort(key=lambda r: r["revision"])
    return revisions


def rollout(ins: Inspector, resource: str, name: str, namespace: str | None = None) -> Document:
    """Rollout status and revision history of a Deployment, StatefulSet or DaemonSet."""
    r = ins.discovery.resolve(resource)
    if r.group != "apps" or r.kind not in KINDS:
        raise InspectorError(f"rollout takes a Deployment, StatefulSet or DaemonSet, not {r.kind}")
    ns = ins.namespace_for(r, namespace)
    assert ns is not None
    plural = KINDS[r.kind]
    w = ins.kube.get(api_path("apps", "v1", plural, ns, name), Op("get", plural, "apps", ns, name))
    message, done, error = STATUS[r.kind](w)
    status: dict[str, Any] = {"done": done}
    if message:
        status["message"] = message
    if error:
        status["error"] = error
    notes: list[str] = []
    try:
        history = _history(ins, r.kind, w, ns)
    except InspectorError as exc:
        history = []
        notes.append(f"history: {exc}")
    if len(history) > MAX_REVISIONS:
        notes.append(f"history: showing the newest {MAX_REVISIONS} of {len(history)} revisions")
        history = history[-MAX_REVISIONS:]
    target = f"{r.kind.lower()}.apps/{name}"
    out: dict[str, Any] = {"target": target, "namespace": ns, "status": status, "history": history}
    if not history and not notes:
        notes.append("No rollout history found.")
    return Document(out, title=f"Rollout of {target}", notes=notes)
