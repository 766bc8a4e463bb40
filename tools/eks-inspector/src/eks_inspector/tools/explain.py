"""`explain`: a kind's or field's documentation from the API server's OpenAPI v3, as `kubectl explain`.

The API server publishes one OpenAPI v3 document per group version, addressed by a
content hash (`/openapi/v3` lists them), so a document fetched once is valid for as long
as its address is: a few are kept, keyed by address. Schemas are documentation, not
cluster data; the answer still leaves through the renderer like every other.
"""

from __future__ import annotations

import re
import textwrap
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from eks_inspector.context import Inspector
from eks_inspector.errors import InspectorError, Op
from eks_inspector.render import Text

#: OpenAPI documents kept (an api/v1 document is a few MiB parsed; most calls touch one or two).
CACHE_DOCS = 6
MAX_PATH = 20
WIDTH = 80
_FIELD = re.compile(r"[A-Za-z0-9_$\-]{1,253}")


class _Documents:
    """A small LRU of OpenAPI documents keyed by (API server, hashed URL)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    def get(self, ins: Inspector, url: str) -> dict[str, Any]:
        key = (str(getattr(ins.kube.api.configuration, "host", "")), url)
        with self._lock:
            if key in self._docs:
                self._docs.move_to_end(key)
                return self._docs[key]
        parts = urlsplit(url)
        doc = ins.kube.get(parts.path, Op("get", "openapi/v3"), parse_qsl(parts.query))
        with self._lock:
            self._docs[key] = doc
            while len(self._docs) > CACHE_DOCS:
                self._docs.popitem(last=False)
        return doc


DOCUMENTS = _Documents()


def _schema_doc(ins: Inspector, group: str, version: str) -> dict[str, Any]:
    index = ins.kube.get("/openapi/v3", Op("get", "openapi/v3"))
    key = f"apis/{group}/{version}" if group else f"api/{version}"
    entry = (index.get("paths") or {}).get(key)
    if not entry or not entry.get("serverRelativeURL"):
        raise InspectorError(f"the API server publishes no OpenAPI v3 schema for {key}")
    return DOCUMENTS.get(ins, str(entry["serverRelativeURL"]))


def _deref(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref and a lone allOf, as far as they go (bounded)."""
    for _ in range(10):
        if "$ref" in schema:
            schema = (doc.get("components") or {}).get("schemas", {}).get(str(schema["$ref"]).rsplit("/", 1)[-1]) or {}
        elif len(schema.get("allOf") or []) == 1 and not schema.get("properties"):
            schema = schema["allOf"][0]
        else:
            break
    return schema


def type_name(schema: dict[str, Any]) -> str:
    """The type as kubectl explain names it: []Container, map[string]string, ObjectMeta, string, Object."""
    if schema.get("items"):
        return "[]" + type_name(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        return "map[string]" + type_name(schema["additionalProperties"])
    if len(schema.get("allOf") or []) == 1 and not schema.get("properties"):
        return type_name(schema["allOf"][0])
    if schema.get("$ref"):
        return str(schema["$ref"]).rsplit("/", 1)[-1].rsplit(".", 1)[-1] or "Object"
    if schema.get("type"):
        return str(schema["type"])
    if schema.get("x-kubernetes-int-or-string"):
        return "IntOrString"
    return "Object"


def _element(doc: dict[str, Any], schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """What a field holds once arrays and maps are looked through; and whether it is a named type."""
    for _ in range(10):
        if schema.get("items"):
            schema = schema["items"]
        elif isinstance(schema.get("additionalProperties"), dict):
            schema = schema["additionalProperties"]
        else:
            break
    named = bool(schema.get("$ref")) or (len(schema.get("allOf") or []) == 1 and bool(schema["allOf"][0].get("$ref")))
    return _deref(doc, schema), named


def _wrap(text: str, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for para in str(text).split("\n"):
        if not para.strip():
            lines.append(pad)
            continue
        lines += textwrap.wrap(para, WIDTH - indent, initial_indent=pad, subsequent_indent=pad,
                               break_long_words=False, break_on_hyphens=False) or [pad]
    return lines


def explain(ins: Inspector, path: str, api_version: str | None = None) -> Text:
    """Field documentation for `resource[.field[.field...]]` (like `kubectl explain deployment.spec.strategy`)."""
    head, *fields = path.strip().split(".")
    if not head or len(fields) > MAX_PATH or not all(_FIELD.fullmatch(f) for f in fields):
        raise InspectorError(f"explain takes RESOURCE[.FIELD...] (e.g. deployment.spec.strategy), not {path[:200]!r}")
    if api_version:
        group, _, version = api_version.rpartition("/")
        r = ins.discovery.resolve(f"{head}.{version}.{group}" if group else f"{head}.{version}")
    else:
        r = ins.discovery.resolve(head)
    doc = _schema_doc(ins, r.group, r.version)
    gvk = {"group": r.group, "version": r.version, "kind": r.kind}
    root = next((s for s in ((doc.get("components") or {}).get("schemas") or {}).values()
                 if gvk in (s.get("x-kubernetes-group-version-kind") or [])), None)
    if root is None:
        raise InspectorError(f"no OpenAPI schema for {r.kind} in {r.group_version}")
    schema, description, field_line = _deref(doc, root), str(root.get("description", "")), None
    walked: list[str] = []
    for name in fields:
        props = schema.get("properties") or {}
        if name not in props:
            where = ".".join([r.kind.lower(), *walked]) if walked else r.kind.lower()
            raise InspectorError(f'field "{name}" does not exist in {where}')
        field = props[name]
        target, named = _element(doc, field)
        description = str(field.get("description", "") or _deref(doc, field).get("description", ""))
        if named and target.get("description") and target.get("description") != description:
            description = f"{description}\n{target['description']}" if description else str(target["description"])
        field_line = f"FIELD: {name} <{type_name(field)}>"
        schema = target
        walked.append(name)
    lines = ([f"GROUP:      {r.group}"] if r.group else []) + [f"KIND:       {r.kind}", f"VERSION:    {r.version}", ""]
    if field_line:
        lines += [field_line, "", ""]
    lines += ["DESCRIPTION:", *_wrap(description, 4)]
    listed = []
    props = schema.get("properties") or {}
    if props:
        lines.append("FIELDS:")
        required = set(schema.get("required") or [])
        for name in sorted(props):
            sub = props[name]
            tname = type_name(sub)
            lines.append(f"  {name}\t<{tname}>" + (" -required-" if name in required else ""))
            if sub.get("enum"):
                lines.append(f"  enum: {', '.join(str(e) for e in sub['enum'])}")
            lines += _wrap(str(sub.get("description", "") or _deref(doc, sub).get("description", "")), 4)
            lines.append("")
            listed.append({"name": name, "type": tname, "required": name in required})
    data: dict[str, Any] = {"group": r.group, "kind": r.kind, "version": r.version, "fields": listed}
    if walked:
        data["field"] = ".".join(walked)
        data["type"] = field_line.split(" <", 1)[1].rstrip(">") if field_line else None
    return Text("\n".join(lines).rstrip() + "\n", data, keep="head")
