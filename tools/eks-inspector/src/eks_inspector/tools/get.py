"""`get`: any kind, one object or a page of a list, as kubectl prints it.

Lists ask the API server for a Table (the columns kubectl shows, computed server-side,
CRD printer columns included), so a list of pods costs kilobytes, not megabytes. When a
page would exceed the cap, the page is fetched again with a smaller limit so the
continue token handed back points exactly after the last row shown.
"""

from __future__ import annotations

from typing import Any, Literal

from eks_inspector.context import Inspector, dig
from eks_inspector.discovery import Resource
from eks_inspector.errors import InspectorError, Op
from eks_inspector.kube import ACCEPT_JSON, ACCEPT_METADATA, ACCEPT_TABLE, api_path
from eks_inspector.render import Answer, Objects, Renderer, Table

Output = Literal["table", "wide", "name", "yaml", "json"]
DEFAULT_LIMIT = 500
MAX_LIMIT = 5000
#: Reads of a page that did not fit, at most; past them the renderer cuts the page and
#: hands out no continue token (one that resumes after rows not shown would skip them).
REFETCHES = 3


#: API groups whose Table columns are kubectl's own; any other group's printer columns are the
#: CRD author's choice and may show any field, so its rows come with their objects (to scrub cells).
BUILTIN_GROUPS = frozenset({"", "apps", "batch", "autoscaling", "policy", "extensions"})


def full_rows(r: Resource) -> bool:
    return not (r.group in BUILTIN_GROUPS or r.group.endswith(".k8s.io"))


def check_secret_access(resource: Resource, include_secret_metadata: bool) -> None:
    if resource.kind == "Secret" and not include_secret_metadata:
        raise InspectorError(
            "Secrets are not shown by default; pass include_secret_metadata=true for their metadata "
            "(names, labels, type, key count; never their data)"
        )


def _sort(items: list[Any], sort_by: str, key_of: Any) -> list[Any]:
    """Sorted by `key_of`, which must read cleaned values: an order by a hidden value would tell
    the caller how hidden values compare (a password's first letter, one call at a time)."""
    def key(item: Any) -> tuple[int, Any]:
        v = key_of(item)
        if v is None:
            return (2, "")
        if isinstance(v, (int, float)):
            return (0, v)
        return (1, str(v))

    return sorted(items, key=key)


def _table_answer(doc: dict[str, Any], wide: bool, show_ns: bool, sort_by: str | None, renderer: Renderer) -> Table:
    cols = [c for c in doc.get("columnDefinitions") or [] if wide or not c.get("priority")]
    all_cols = doc.get("columnDefinitions") or []
    idx = [all_cols.index(c) for c in cols]
    rows_in = doc.get("rows") or []
    if sort_by:
        names = [c.get("name", "").lower() for c in all_cols]
        col = sort_by.strip().lower()
        if col in names:
            i = names.index(col)
            column = str(all_cols[i].get("name", ""))
            rows_in = _sort(rows_in, sort_by, lambda r: renderer.clean_cell(
                (r.get("cells") or [None] * (i + 1))[i], column, r.get("object")))
        else:
            rows_in = _sort(rows_in, sort_by, lambda r: dig(renderer.sanitize(r.get("object") or {}), sort_by))
    columns = (["NAMESPACE"] if show_ns else []) + [str(c.get("name", "")).upper() for c in cols]
    rows = []
    for r in rows_in:
        cells = r.get("cells") or []
        row = [cells[i] if i < len(cells) else "" for i in idx]
        if show_ns:
            row.insert(0, ((r.get("object") or {}).get("metadata") or {}).get("namespace", ""))
        rows.append(row)
    meta = doc.get("metadata") or {}
    return Table(columns, rows, continue_token=meta.get("continue") or None,
                 remaining=meta.get("remainingItemCount"),
                 row_objects=[r.get("object") if isinstance(r.get("object"), dict) else {} for r in rows_in])


def get(
    ins: Inspector,
    resource: str,
    name: str | None = None,
    namespace: str | None = None,
    all_namespaces: bool = False,
    label_selector: str | None = None,
    field_selector: str | None = None,
    output: Output = "table",
    limit: int | None = None,
    continue_token: str | None = None,
    sort_by: str | None = None,
    include_secret_metadata: bool = False,
) -> Answer:
    return ins.discovery.run(resource, lambda r: _get(ins, r, name, namespace, all_namespaces, label_selector,
                                                      field_selector, output, limit, continue_token, sort_by,
                                                      include_secret_metadata))


def _get(ins: Inspector, r: Resource, name: str | None, namespace: str | None, all_namespaces: bool,
         label_selector: str | None, field_selector: str | None, output: str, limit: int | None,
         continue_token: str | None, sort_by: str | None, include_secret_metadata: bool) -> Answer:
    check_secret_access(r, include_secret_metadata)
    if output not in ("table", "wide", "name", "yaml", "json"):
        raise InspectorError(f"output must be table, wide, name, yaml or json, not {output!r}")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InspectorError(f"limit must be between 1 and {MAX_LIMIT}")
    if name and (all_namespaces or label_selector or field_selector or continue_token):
        raise InspectorError("a name selects one object: drop all_namespaces, selectors and continue")
    if name:
        if "get" not in r.verbs:
            raise InspectorError(f"{r.qualified} does not support get")
        ns = ins.namespace_for(r, namespace)
        return _get_one(ins, r, name, ns, output, include_secret_metadata)
    if "list" not in r.verbs:
        raise InspectorError(f"{r.qualified} does not support list")
    if r.namespaced and all_namespaces and ins.settings.namespaces:
        return _list_allowed(ins, r, label_selector, field_selector, output, limit, sort_by, include_secret_metadata)
    if not r.namespaced and r.kind == "Namespace" and ins.settings.namespaces:
        return _list_allowed_namespaces(ins, r, output, include_secret_metadata)
    ns = ins.namespace_for(r, namespace, all_namespaces)
    answer = _list(ins, r, ns, label_selector, field_selector, output, limit or DEFAULT_LIMIT, continue_token,
                   sort_by, include_secret_metadata)
    fits = ins.renderer.fit(answer)
    for _ in range(REFETCHES):
        if fits is None or fits < 1:
            break
        # Ask again for exactly what fits, so the continue token resumes right after it; the
        # page read again can differ (ages, new objects), so check it again as the renderer will.
        answer = _list(ins, r, ns, label_selector, field_selector, output, fits, continue_token, sort_by,
                       include_secret_metadata)
        smaller = ins.renderer.fit(answer)
        if smaller is not None:
            fits = smaller
            continue
        answer.notes.append(
            f"[truncated: output capped at {ins.settings.output_cap // 1024} KiB; this page holds {fits} items; "
            f"get the rest with the continue token below, or narrow the query.]"
        )
        break
    return answer


def _accept(output: str) -> str:
    return {"table": ACCEPT_TABLE, "wide": ACCEPT_TABLE, "name": ACCEPT_METADATA}.get(output, ACCEPT_JSON)


def _get_one(ins: Inspector, r: Resource, name: str, ns: str | None, output: str, secret_meta: bool) -> Answer:
    op = Op("get", r.plural, r.group, ns, name)
    path = api_path(r.group, r.version, r.plural, ns, name)
    if output in ("table", "wide"):
        doc = ins.kube.get(path, op, [("includeObject", "Object")] if full_rows(r) else [], accept=ACCEPT_TABLE)
        if doc.get("kind") == "Table":
            return _table_answer(doc, output == "wide", False, None, ins.renderer)
        return Objects([doc], "yaml", single=True, secret_metadata=secret_meta)
    doc = ins.kube.get(path, op, accept=ACCEPT_JSON)
    return Objects([doc], output, single=True, secret_metadata=secret_meta)  # type: ignore[arg-type]


def _query(label_selector: str | None, field_selector: str | None, limit: int | None, cont: str | None,
           include_object: str | None) -> list[tuple[str, str]]:
    q: list[tuple[str, str]] = []
    if label_selector:
        q.append(("labelSelector", label_selector))
    if field_selector:
        q.append(("fieldSelector", field_selector))
    if limit:
        q.append(("limit", str(limit)))
    if cont:
        q.append(("continue", cont))
    if include_object:
        q.append(("includeObject", include_object))
    return q


def _list(ins: Inspector, r: Resource, ns: str | None, label_selector: str | None, field_selector: str | None,
          output: str, limit: int | None, cont: str | None, sort_by: str | None, secret_meta: bool) -> Answer:
    op = Op("list", r.plural, r.group, ns)
    path = api_path(r.group, r.version, r.plural, ns)
    table = output in ("table", "wide")
    include = None
    if table:
        needs_object = full_rows(r) or (bool(sort_by) and not sort_by.strip().lstrip("{.").startswith("metadata"))
        include = "Object" if needs_object else "Metadata"
    doc = ins.kube.get(path, op, _query(label_selector, field_selector, limit, cont, include), accept=_accept(output))
    if table and doc.get("kind") == "Table":
        return _table_answer(doc, output == "wide", r.namespaced and ns is None, sort_by, ins.renderer)
    items = doc.get("items") or []
    kind = r.kind
    api_version = r.group_version
    for it in items:  # list items omit kind (metadata lists say PartialObjectMetadata); set the real one
        it["kind"] = kind
        it["apiVersion"] = api_version
    if sort_by:
        items = _sort(items, sort_by, lambda o: dig(ins.renderer.sanitize(o, secret_meta), sort_by))
    meta = doc.get("metadata") or {}
    fmt = "yaml" if table else output
    return Objects(items, fmt, continue_token=meta.get("continue") or None,  # type: ignore[arg-type]
                   remaining=meta.get("remainingItemCount"), secret_metadata=secret_meta)


def _list_allowed(ins: Inspector, r: Resource, label_selector: str | None, field_selector: str | None, output: str,
                  limit: int | None, sort_by: str | None, secret_meta: bool) -> Answer:
    """all_namespaces under an allow-list: one list per allowed namespace, merged (no continue)."""
    budget = limit or DEFAULT_LIMIT
    merged: Answer | None = None
    notes: list[str] = []
    for ns in ins.settings.namespaces:
        part = _list(ins, r, ns, label_selector, field_selector, output, budget, None, None, secret_meta)
        if isinstance(part, Table):
            if part.columns[:1] != ["NAMESPACE"]:
                part.columns.insert(0, "NAMESPACE")
                for row in part.rows:
                    row.insert(0, ns)
        if part.continue_token:
            notes.append(f"namespace {ns} has more items: ask with namespace={ns} and continue")
        if merged is None:
            merged = part
        elif isinstance(merged, Table) and isinstance(part, Table):
            merged.row_objects.extend(part.row_objects)
            merged.rows.extend(part.rows)
        elif isinstance(merged, Objects) and isinstance(part, Objects):
            merged.objects.extend(part.objects)
    assert merged is not None
    merged.continue_token = None
    merged.remaining = None
    merged.notes.extend(notes + [f"all_namespaces covers the allow-list: {', '.join(ins.settings.namespaces)}"])
    return merged


def _list_allowed_namespaces(ins: Inspector, r: Resource, output: str, secret_meta: bool) -> Answer:
    objs = []
    for ns in ins.settings.namespaces:
        try:
            objs.append(_get_one(ins, r, ns, None, "json", secret_meta))
        except InspectorError as exc:
            objs.append(exc)
    rows = []
    items = []
    for ns, o in zip(ins.settings.namespaces, objs, strict=True):
        if isinstance(o, Objects):
            items.append(o.objects[0])
            rows.append([ns, (o.objects[0].get("status") or {}).get("phase", "")])
        else:
            rows.append([ns, f"unreadable: {o}"])
    if output in ("table", "wide"):
        return Table(["NAME", "STATUS"], rows, notes=["namespaces limited to this server's allow-list"])
    return Objects(items, output, notes=["namespaces limited to this server's allow-list"],  # type: ignore[arg-type]
                   secret_metadata=secret_meta)
