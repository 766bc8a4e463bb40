"""`describe`: one object with what an SRE looks at first.

Conditions, the owner chain up to the top controller, recent events; for pods the
container states, restarts and last termination; for deployments the rollout state and
its replica sets. Parts the caller may not read are reported, not fatal.
"""

from __future__ import annotations

from typing import Any

from eks_inspector.context import Inspector, age
from eks_inspector.discovery import Resource
from eks_inspector.errors import InspectorError, Op
from eks_inspector.kube import api_path
from eks_inspector.render import Document
from eks_inspector.tools.get import check_secret_access

MAX_OWNER_DEPTH = 6


def describe(ins: Inspector, resource: str, name: str, namespace: str | None = None, events_limit: int = 20,
             include_secret_metadata: bool = False) -> Document:
    if not 0 <= events_limit <= 200:
        raise InspectorError("events_limit must be between 0 and 200")

    def fetch(r: Resource) -> tuple[Resource, str | None, dict[str, Any]]:
        check_secret_access(r, include_secret_metadata)
        ns = ins.namespace_for(r, namespace)
        return r, ns, ins.kube.get(api_path(r.group, r.version, r.plural, ns, name),
                                   Op("get", r.plural, r.group, ns, name))

    r, ns, obj = ins.discovery.run(resource, fetch)
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {
        "kind": obj.get("kind", r.kind), "apiVersion": obj.get("apiVersion", r.group_version),
        "name": meta.get("name"),
    }
    if ns:
        out["namespace"] = ns
    out["created"] = f"{meta.get('creationTimestamp')} ({age(meta.get('creationTimestamp'))} ago)"
    for key in ("labels", "annotations"):
        if meta.get(key):
            out[key] = meta[key]
    if meta.get("deletionTimestamp"):
        out["deleting"] = f"since {meta['deletionTimestamp']}"
    chain = owner_chain(ins, obj, ns)
    if chain:
        out["ownerChain"] = chain
    status = obj.get("status") or {}
    if isinstance(status, dict) and status.get("conditions"):
        out["conditions"] = [_condition(c) for c in status["conditions"]]
    kind = obj.get("kind")
    if kind == "Pod" and r.group == "":
        out.update(_pod(obj))
    elif kind == "Deployment" and r.group == "apps":
        out.update(_deployment(ins, obj, ns or ""))
    elif kind == "Secret":
        out["type"] = obj.get("type")
        out["dataKeys"] = len(obj.get("data") or {})
    else:
        for key in ("spec", "data", "status"):
            if key in obj and not (key == "status" and list(status) == ["conditions"]):
                value = obj[key]
                if key == "status" and isinstance(value, dict):
                    value = {k: v for k, v in value.items() if k != "conditions"}
                if value:
                    out[key] = value
    notes: list[str] = []
    if events_limit:
        try:
            out["events"] = recent_events(ins, meta.get("uid", ""), ns, events_limit)
        except InspectorError as exc:
            notes.append(f"events: {exc}")
    return Document(out, notes=notes, secret_metadata=include_secret_metadata)


def _condition(c: dict[str, Any]) -> dict[str, Any]:
    d = {"type": c.get("type"), "status": c.get("status")}
    for k in ("reason", "message"):
        if c.get(k):
            d[k] = c[k]
    when = c.get("lastTransitionTime") or c.get("lastUpdateTime")
    if when:
        d["since"] = f"{age(when)} ago"
    return d


def owner_chain(ins: Inspector, obj: dict[str, Any], ns: str | None) -> list[str]:
    chain: list[str] = []
    current = obj
    for _ in range(MAX_OWNER_DEPTH):
        refs = (current.get("metadata") or {}).get("ownerReferences") or []
        if not refs:
            break
        ref = next((x for x in refs if x.get("controller")), refs[0])
        label = f"{ref.get('kind')}/{ref.get('name')}"
        owner_r = ins.discovery.kinds_for_owner(ref.get("apiVersion", ""), ref.get("kind", ""))
        if owner_r is None:
            chain.append(f"{label} (type not served)")
            break
        owner_ns = ns if owner_r.namespaced else None
        try:
            current = ins.kube.get(api_path(owner_r.group, owner_r.version, owner_r.plural, owner_ns, ref.get("name")),
                                   Op("get", owner_r.plural, owner_r.group, owner_ns, ref.get("name")))
        except InspectorError as exc:
            chain.append(f"{label} ({exc})")
            break
        chain.append(label)
    return chain


def _env(env: list[dict[str, Any]]) -> list[str]:
    lines = []
    for e in env or []:
        vf = e.get("valueFrom") or {}
        if "secretKeyRef" in vf:
            ref = vf["secretKeyRef"]
            lines.append(f"{e.get('name')}: <set to the key '{ref.get('key')}' in secret '{ref.get('name')}'>")
        elif "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            lines.append(f"{e.get('name')}: <set to the key '{ref.get('key')}' of config map '{ref.get('name')}'>")
        elif "fieldRef" in vf:
            lines.append(f"{e.get('name')}: ({vf['fieldRef'].get('fieldPath')})")
        elif "resourceFieldRef" in vf:
            lines.append(f"{e.get('name')}: ({vf['resourceFieldRef'].get('resource')})")
        else:
            lines.append(f"{e.get('name')}: {e.get('value', '')}")
    return lines


def _state(state: dict[str, Any] | None) -> dict[str, Any] | str:
    if not state:
        return "unknown"
    if "running" in state:
        started = (state["running"] or {}).get("startedAt")
        return {"running": f"since {started} ({age(started)})"}
    if "waiting" in state:
        w = state["waiting"] or {}
        return {"waiting": {k: w[k] for k in ("reason", "message") if w.get(k)}}
    if "terminated" in state:
        t = state["terminated"] or {}
        return {"terminated": {k: t[k] for k in ("reason", "exitCode", "signal", "message", "startedAt", "finishedAt")
                               if t.get(k) is not None}}
    return "unknown"


def _containers(specs: list[dict[str, Any]], statuses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {s.get("name"): s for s in statuses or []}
    out = []
    for c in specs or []:
        s = by_name.get(c.get("name"), {})
        d: dict[str, Any] = {"name": c.get("name"), "image": c.get("image")}
        if s:
            d["state"] = _state(s.get("state"))
            d["ready"] = s.get("ready")
            d["restartCount"] = s.get("restartCount", 0)
            last = s.get("lastState") or {}
            if last.get("terminated"):
                d["lastTermination"] = _state(last)["terminated"]  # type: ignore[index]
        if c.get("ports"):
            d["ports"] = [f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in c["ports"]]
        if c.get("resources"):
            d["resources"] = c["resources"]
        if c.get("env"):
            d["env"] = _env(c["env"])
        if c.get("envFrom"):
            d["envFrom"] = [
                (f"secret {x['secretRef'].get('name')}" if "secretRef" in x else f"configmap {x.get('configMapRef', {}).get('name')}")
                for x in c["envFrom"]
            ]
        if c.get("volumeMounts"):
            d["mounts"] = [f"{m.get('mountPath')} from {m.get('name')}{' (ro)' if m.get('readOnly') else ''}"
                           for m in c["volumeMounts"]]
        out.append(d)
    return out


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    out: dict[str, Any] = {
        "node": spec.get("nodeName") or "<unscheduled>", "phase": st.get("phase"),
        "podIP": st.get("podIP"), "qosClass": st.get("qosClass"),
        "serviceAccount": spec.get("serviceAccountName"),
    }
    if st.get("reason"):
        out["reason"] = st["reason"]
    if st.get("message"):
        out["message"] = st["message"]
    if spec.get("initContainers"):
        out["initContainers"] = _containers(spec["initContainers"], st.get("initContainerStatuses") or [])
    out["containers"] = _containers(spec.get("containers") or [], st.get("containerStatuses") or [])
    restarts = sum(c.get("restartCount", 0) for c in st.get("containerStatuses") or [])
    out["restarts"] = restarts
    if spec.get("volumes"):
        out["volumes"] = [
            {"name": v.get("name"), "type": next((k for k in v if k != "name"), "?"),
             **({"secretName": v["secret"].get("secretName")} if "secret" in v else {})}
            for v in spec["volumes"]
        ]
    if spec.get("tolerations"):
        out["tolerations"] = len(spec["tolerations"])
    return out


def _deployment(ins: Inspector, obj: dict[str, Any], ns: str) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    st = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    desired = spec.get("replicas", 1)
    updated = st.get("updatedReplicas", 0)
    available = st.get("availableReplicas", 0)
    ready = st.get("readyReplicas", 0)
    total = st.get("replicas", 0)
    if st.get("observedGeneration", 0) < meta.get("generation", 0):
        rollout = "waiting for the deployment spec update to be observed"
    elif updated < desired:
        rollout = f"waiting for rollout to finish: {updated} of {desired} updated replicas are available"
    elif total > updated:
        rollout = f"waiting for rollout to finish: {total - updated} old replicas are pending termination"
    elif available < updated:
        rollout = f"waiting for rollout to finish: {available} of {updated} updated replicas are available"
    else:
        rollout = "rollout complete"
    progressing = next((c for c in st.get("conditions") or [] if c.get("type") == "Progressing"), None)
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        rollout = f"rollout stuck: {progressing.get('message', 'progress deadline exceeded')}"
    template = (spec.get("template") or {}).get("spec") or {}
    out: dict[str, Any] = {
        "replicas": {"desired": desired, "updated": updated, "ready": ready, "available": available,
                     "unavailable": st.get("unavailableReplicas", 0), "total": total},
        "rollout": rollout,
        "revision": (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision"),
        "strategy": (spec.get("strategy") or {}).get("type"),
        "selector": (spec.get("selector") or {}).get("matchLabels"),
        "template": {"containers": _containers(template.get("containers") or [], [])},
    }
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    try:
        doc = ins.kube.get(api_path("apps", "v1", "replicasets", ns), Op("list", "replicasets", "apps", ns),
                           [("labelSelector", selector)] if selector else [])
        uid = meta.get("uid")
        sets = []
        for rs in doc.get("items") or []:
            rmeta = rs.get("metadata") or {}
            if not any(o.get("uid") == uid for o in rmeta.get("ownerReferences") or []):
                continue
            rev = (rmeta.get("annotations") or {}).get("deployment.kubernetes.io/revision")
            rst = rs.get("status") or {}
            sets.append({
                "name": rmeta.get("name"), "revision": rev,
                "current": rev == out["revision"],
                "replicas": f"{rst.get('readyReplicas', 0)}/{(rs.get('spec') or {}).get('replicas', 0)} ready",
                "images": [c.get("image") for c in ((rs.get("spec") or {}).get("template") or {}).get("spec", {})
                           .get("containers", [])],
                "age": age(rmeta.get("creationTimestamp")),
            })
        sets.sort(key=lambda s: int(s["revision"] or 0), reverse=True)
        out["replicaSets"] = sets
    except InspectorError as exc:
        out["replicaSets"] = f"not readable: {exc}"
    return out


def event_time(e: dict[str, Any]) -> str:
    series = e.get("series") or {}
    return (series.get("lastObservedTime") or e.get("lastTimestamp") or e.get("eventTime")
            or e.get("firstTimestamp") or (e.get("metadata") or {}).get("creationTimestamp") or "")


def recent_events(ins: Inspector, uid: str, ns: str | None, limit: int) -> list[str]:
    path = f"/api/v1/namespaces/{ns}/events" if ns else "/api/v1/events"
    doc = ins.kube.get(path, Op("list", "events", "", ns), [("fieldSelector", f"involvedObject.uid={uid}")])
    items = sorted(doc.get("items") or [], key=event_time, reverse=True)
    lines = []
    for e in items[:limit]:
        count = e.get("count") or (e.get("series") or {}).get("count") or 1
        lines.append(f"{age(event_time(e))} ago  {e.get('type')}  {e.get('reason')}  "
                     f"{(' (x%d)' % count) if count > 1 else ''}{e.get('message', '').strip()}")
    return lines
