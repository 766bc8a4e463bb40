"""`api_resources`, `top` and `cluster_overview`: the cluster-wide views."""

from __future__ import annotations

import re
from typing import Any, Literal

from eks_inspector.context import Inspector, age
from eks_inspector.errors import InspectorError, Op
from eks_inspector.kube import ACCEPT_TABLE, api_path
from eks_inspector.render import Document, Table

METRICS_GROUP = "metrics.k8s.io"
NO_METRICS = ("the metrics API (metrics.k8s.io) is not available on this cluster: install metrics-server "
              "(or another metrics provider) to use top")
OVERVIEW_POD_SCAN = 2000

_SUFFIX = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "E": 1e18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(value: Any) -> float:
    """A Kubernetes quantity ('250m', '1.5Gi', '1e3') as a float."""
    m = re.fullmatch(r"\s*([+-]?[0-9.]+(?:[eE][+-]?\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"not a quantity: {value!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def api_resources(ins: Inspector, api_group: str | None = None, namespaced: bool | None = None,
                  refresh: bool = False) -> Table:
    catalog = ins.discovery.catalog(force=refresh)
    rows = []
    for r in catalog.resources:
        if not r.preferred:
            continue
        if api_group is not None and r.group != api_group:
            continue
        if namespaced is not None and r.namespaced != namespaced:
            continue
        rows.append([r.plural, ",".join(r.short_names), r.group_version, str(r.namespaced).lower(), r.kind,
                     ",".join(r.verbs)])
    notes = []
    if catalog.stale_groups:
        notes.append("unavailable API groups (their aggregated API server does not answer): "
                     + ", ".join(sorted(set(catalog.stale_groups))))
    return Table(["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND", "VERBS"], rows, notes=notes,
                 extra={"staleGroups": sorted(set(catalog.stale_groups))})


def _metrics(ins: Inspector, path: str, ns: str | None, what: str, q: list[tuple[str, str]]) -> dict[str, Any]:
    if not ins.discovery.has_group(METRICS_GROUP):
        raise InspectorError(NO_METRICS)
    try:
        return ins.kube.get(path, Op("list", what, METRICS_GROUP, ns), q)
    except InspectorError as exc:
        if "not found" in str(exc) or "unavailable" in str(exc):
            raise InspectorError(f"{NO_METRICS} ({exc})") from None
        raise


def top(ins: Inspector, what: Literal["nodes", "pods"] = "pods", namespace: str | None = None,
        all_namespaces: bool = False, label_selector: str | None = None, containers: bool = False,
        sort_by: Literal["cpu", "memory", "name"] = "name") -> Table:
    base = f"/apis/{METRICS_GROUP}/v1beta1"
    q = [("labelSelector", label_selector)] if label_selector else []
    if what == "nodes":
        doc = _metrics(ins, f"{base}/nodes", None, "nodes", q)
        alloc: dict[str, dict[str, Any]] = {}
        try:
            nodes = ins.kube.get("/api/v1/nodes", Op("list", "nodes"), q)
            alloc = {(n.get("metadata") or {}).get("name"): (n.get("status") or {}).get("allocatable") or {}
                     for n in nodes.get("items") or []}
        except InspectorError:
            pass
        rows = []
        for m in doc.get("items") or []:
            name = (m.get("metadata") or {}).get("name")
            cpu = quantity((m.get("usage") or {}).get("cpu", "0"))
            mem = quantity((m.get("usage") or {}).get("memory", "0"))
            a = alloc.get(name) or {}
            cpu_pct = f"{round(100 * cpu / quantity(a['cpu']))}%" if a.get("cpu") else "<unknown>"
            mem_pct = f"{round(100 * mem / quantity(a['memory']))}%" if a.get("memory") else "<unknown>"
            rows.append([name, f"{round(cpu * 1000)}m", cpu_pct, f"{round(mem / 2**20)}Mi", mem_pct, cpu, mem])
        return _sorted_table(["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"], rows, sort_by, 0)
    if what != "pods":
        raise InspectorError("top takes what=nodes or what=pods")
    namespaces = ins.namespaces_for(namespace, all_namespaces)
    rows = []
    show_ns = len(namespaces) > 1 or namespaces[0] is None
    for ns in namespaces:
        path = f"{base}/namespaces/{ns}/pods" if ns else f"{base}/pods"
        doc = _metrics(ins, path, ns, "pods", q)
        for m in doc.get("items") or []:
            meta = m.get("metadata") or {}
            prefix = [meta.get("namespace", "")] if show_ns else []
            if containers:
                for c in m.get("containers") or []:
                    cpu = quantity((c.get("usage") or {}).get("cpu", "0"))
                    mem = quantity((c.get("usage") or {}).get("memory", "0"))
                    rows.append(prefix + [meta.get("name"), c.get("name"), f"{round(cpu * 1000)}m",
                                          f"{round(mem / 2**20)}Mi", cpu, mem])
            else:
                cpu = sum(quantity((c.get("usage") or {}).get("cpu", "0")) for c in m.get("containers") or [])
                mem = sum(quantity((c.get("usage") or {}).get("memory", "0")) for c in m.get("containers") or [])
                rows.append(prefix + [meta.get("name"), f"{round(cpu * 1000)}m", f"{round(mem / 2**20)}Mi", cpu, mem])
    cols = (["NAMESPACE"] if show_ns else []) + ["POD"] + (["NAME"] if containers else []) + \
        ["CPU(cores)", "MEMORY(bytes)"]
    return _sorted_table(cols, rows, sort_by, 1 if show_ns else 0)


def _sorted_table(columns: list[str], rows: list[list[Any]], sort_by: str, name_idx: int) -> Table:
    if sort_by == "cpu":
        rows.sort(key=lambda r: -r[-2])
    elif sort_by == "memory":
        rows.sort(key=lambda r: -r[-1])
    else:
        rows.sort(key=lambda r: str(r[name_idx]))
    return Table(columns, [r[:-2] for r in rows])


def _try(fn: Any, notes: list[str], label: str) -> Any:
    try:
        return fn()
    except InspectorError as exc:
        notes.append(f"{label}: {exc}")
        return None


def cluster_overview(ins: Inspector) -> Document:
    notes: list[str] = []
    out: dict[str, Any] = {}
    version = _try(lambda: ins.kube.get("/version", Op("get", "version")), notes, "version")
    if version:
        out["version"] = version.get("gitVersion")
        out["platform"] = version.get("platform")
    nodes = _try(lambda: ins.kube.get("/api/v1/nodes", Op("list", "nodes")), notes, "nodes")
    if nodes is not None:
        rows = []
        for n in nodes.get("items") or []:
            meta = n.get("metadata") or {}
            st = n.get("status") or {}
            conds = {c.get("type"): c for c in st.get("conditions") or []}
            ready = (conds.get("Ready") or {}).get("status") == "True"
            problems = [f"{t}: {c.get('reason') or c.get('status')}" for t, c in conds.items()
                        if (t == "Ready" and c.get("status") != "True") or (t != "Ready" and c.get("status") == "True")]
            roles = sorted(k.split("/", 1)[1] for k in (meta.get("labels") or {})
                           if k.startswith("node-role.kubernetes.io/")) or ["<none>"]
            cap = st.get("capacity") or {}
            rows.append({
                "name": meta.get("name"), "ready": ready, "roles": ",".join(roles),
                "kubelet": (st.get("nodeInfo") or {}).get("kubeletVersion"),
                "instanceType": (meta.get("labels") or {}).get("node.kubernetes.io/instance-type"),
                "capacity": {k: cap.get(k) for k in ("cpu", "memory", "pods") if k in cap},
                "age": age(meta.get("creationTimestamp")),
                **({"problems": problems} if problems else {}),
                **({"unschedulable": True} if (n.get("spec") or {}).get("unschedulable") else {}),
            })
        out["nodes"] = {"count": len(rows), "notReady": sum(1 for r in rows if not r["ready"]), "items": rows[:100]}
        if len(rows) > 100:
            notes.append(f"nodes: showing 100 of {len(rows)}; use get nodes for all")
    if ins.settings.namespaces:
        out["namespaces"] = {"allowList": list(ins.settings.namespaces)}
    else:
        nss = _try(lambda: ins.kube.get("/api/v1/namespaces", Op("list", "namespaces")), notes, "namespaces")
        if nss is not None:
            items = nss.get("items") or []
            out["namespaces"] = {
                "count": len(items),
                "names": [(i.get("metadata") or {}).get("name") for i in items][:200],
                **({"terminating": [(i.get("metadata") or {}).get("name") for i in items
                                    if (i.get("status") or {}).get("phase") == "Terminating"]}
                   if any((i.get("status") or {}).get("phase") == "Terminating" for i in items) else {}),
            }
    out["unhealthy"] = _unhealthy(ins, notes)
    return Document(out, title="Cluster overview", notes=notes)


def _unhealthy(ins: Inspector, notes: list[str]) -> dict[str, Any]:
    scopes: list[str | None] = list(ins.settings.namespaces) or [None]
    found: dict[str, list[str]] = {"deployments": [], "statefulsets": [], "daemonsets": [], "pods": [], "jobs": []}
    for ns in scopes:
        for plural in ("deployments", "statefulsets", "daemonsets"):
            doc = _try(lambda p=plural, n=ns: ins.kube.get(api_path("apps", "v1", p, n), Op("list", p, "apps", n)),
                       notes, plural)
            for o in (doc or {}).get("items") or []:
                meta, spec, st = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
                key = f"{meta.get('namespace')}/{meta.get('name')}"
                if plural == "daemonsets":
                    want, have = st.get("desiredNumberScheduled", 0), st.get("numberReady", 0)
                else:
                    want, have = spec.get("replicas", 1), st.get("readyReplicas", 0)
                if have < want:
                    found[plural].append(f"{key}: {have}/{want} ready")
        jobs = _try(lambda n=ns: ins.kube.get(api_path("batch", "v1", "jobs", n), Op("list", "jobs", "batch", n)),
                    notes, "jobs")
        for j in (jobs or {}).get("items") or []:
            meta = j.get("metadata") or {}
            if any(c.get("type") == "Failed" and c.get("status") == "True" for c in (j.get("status") or {}).get(
                    "conditions") or []):
                found["jobs"].append(f"{meta.get('namespace')}/{meta.get('name')}: failed")
        cont = None
        scanned = 0
        while True:
            q = [("limit", "500"), ("includeObject", "Metadata")] + ([("continue", cont)] if cont else [])
            table = _try(lambda n=ns, qq=q: ins.kube.get(api_path("", "v1", "pods", n), Op("list", "pods", "", n), qq,
                                                          accept=ACCEPT_TABLE), notes, "pods")
            if not table or table.get("kind") != "Table":
                break
            names = [c.get("name") for c in table.get("columnDefinitions") or []]
            for row in table.get("rows") or []:
                cells = dict(zip(names, row.get("cells") or [], strict=False))
                meta = (row.get("object") or {}).get("metadata") or {}
                status = str(cells.get("Status", ""))
                ready = str(cells.get("Ready", "0/0"))
                have, _, want = ready.partition("/")
                if status not in ("Running", "Completed", "Succeeded") or (status == "Running" and have != want):
                    found["pods"].append(f"{meta.get('namespace')}/{meta.get('name')}: {status} "
                                         f"ready {ready} restarts {cells.get('Restarts', 0)}")
            scanned += len(table.get("rows") or [])
            cont = (table.get("metadata") or {}).get("continue")
            if not cont:
                break
            if scanned >= OVERVIEW_POD_SCAN:
                notes.append(f"pods: scanned the first {scanned} pods only; use get pods with a namespace for more")
                break
    return {k: v[:50] + ([f"... and {len(v) - 50} more"] if len(v) > 50 else []) for k, v in found.items() if v}
