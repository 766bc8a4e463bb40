"""`events`: newest first, for a namespace or one object, optionally warnings only.

The API server has no server-side sort, so this reads a bounded number of events
(filtered server-side by field selectors) and sorts them here.
"""

from __future__ import annotations

from eks_inspector.context import Inspector, age
from eks_inspector.errors import InspectorError, Op
from eks_inspector.render import Table
from eks_inspector.tools.describe import event_time

SCAN_PAGE = 500
SCAN_MAX = 5000


def events(
    ins: Inspector,
    namespace: str | None = None,
    all_namespaces: bool = False,
    resource: str | None = None,
    name: str | None = None,
    warnings_only: bool = False,
    limit: int = 50,
) -> Table:
    if not 1 <= limit <= 1000:
        raise InspectorError("limit must be between 1 and 1000")
    selectors = []
    if warnings_only:
        selectors.append("type=Warning")
    if name:
        selectors.append(f"involvedObject.name={name}")
    if resource:
        selectors.append(f"involvedObject.kind={ins.discovery.resolve(resource).kind}")
    namespaces = ins.namespaces_for(namespace, all_namespaces)
    items = []
    partial = False
    for ns in namespaces:
        path = f"/api/v1/namespaces/{ns}/events" if ns else "/api/v1/events"
        cont = None
        scanned = 0
        while True:
            q = [("limit", str(SCAN_PAGE))]
            if selectors:
                q.append(("fieldSelector", ",".join(selectors)))
            if cont:
                q.append(("continue", cont))
            doc = ins.kube.get(path, Op("list", "events", "", ns), q)
            batch = doc.get("items") or []
            items.extend(batch)
            scanned += len(batch)
            cont = (doc.get("metadata") or {}).get("continue")
            if not cont:
                break
            if scanned >= SCAN_MAX:
                partial = True
                break
    items.sort(key=event_time, reverse=True)
    show_ns = len(namespaces) > 1 or namespaces[0] is None
    columns = (["NAMESPACE"] if show_ns else []) + ["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"]
    rows = []
    for e in items[:limit]:
        obj = e.get("involvedObject") or {}
        row = [age(event_time(e)), e.get("type", ""), e.get("reason", ""),
               f"{str(obj.get('kind', '')).lower()}/{obj.get('name', '')}",
               e.get("count") or (e.get("series") or {}).get("count") or 1,
               " ".join(str(e.get("message", "")).split())]
        if show_ns:
            row.insert(0, (e.get("metadata") or {}).get("namespace", ""))
        rows.append(row)
    notes = []
    if len(items) > limit:
        notes.append(f"showing the newest {limit} of {len(items)} matching events; raise limit or filter by object")
    if partial:
        notes.append(f"scanned the first {SCAN_MAX} events only; filter by namespace or object for a full view")
    return Table(columns, rows, notes=notes, extra={"matched": len(items)})
