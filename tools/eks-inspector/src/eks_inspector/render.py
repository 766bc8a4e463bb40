"""The one renderer every tool answer passes through: redaction, then bounding.

Tools hand back data (an Answer), never text; only this module turns data into the
MCP result, so no tool can skip redaction or the size cap. Redaction is structural:
it walks every nested object, so a Secret inside a List, a Table row's object or an
embedded template is cleaned the same way as a top-level one.

Each answer carries its data once (tools/eks-inspector/README.md, "What each tool sends"):
lists and objects as text plus structuredContent (the rows, items and continue token a
program pages through); a Document marked `structured=False` (a diagnosis) only as text
that is itself the structure, in YAML; a Text answer's lines only in its text content.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from mcp_types import CallToolResult, TextContent

from eks_inspector.config import ConfigMapValues
from eks_inspector.scrub import HIDDEN, MARKER, replaced_values, scrub_text, scrub_tree

__all__ = ["LAST_APPLIED", "REDACTED", "Answer", "Document", "Objects", "Renderer", "Table", "Text", "sanitize",
           "scrub_text"]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
REDACTED = MARKER
CONFIGMAP_HIDDEN = ("ConfigMap values are summarised as key and size; the server's operator can show them "
                    "(still scrubbed) with INSPECTOR_CONFIGMAP_VALUES=show")


def _is_secret(d: dict[str, Any]) -> bool:
    # any group: a look-alike CRD named Secret is treated as one too (fail closed)
    return d.get("kind") == "Secret" and ("data" in d or "stringData" in d or "metadata" in d)


def _is_configmap(d: dict[str, Any]) -> bool:
    # any group, like Secrets: a look-alike kind is summarised too
    return d.get("kind") == "ConfigMap" and ("data" in d or "binaryData" in d)


def _size(value: Any, binary: bool) -> str:
    if not isinstance(value, str):
        return "[hidden]"
    if HIDDEN.fullmatch(value):
        return value  # summarised already (the renderer sizes items, then renders them)
    if binary:
        try:
            return f"[hidden: {len(base64.b64decode(value, validate=True))} bytes]"
        except (binascii.Error, ValueError):
            return "[hidden]"
    return f"[hidden: {len(value.encode())} bytes]"


def _configmap_summary(out: dict[str, Any]) -> dict[str, Any]:
    """Keys and sizes instead of values: config carries credentials more often than it should."""
    hidden = False
    for field_name, binary in (("data", False), ("binaryData", True)):
        values = out.get(field_name)
        if isinstance(values, dict):
            out[field_name] = {k: _size(v, binary) for k, v in values.items()}
            hidden = hidden or bool(values)
        elif values is not None:
            out[field_name] = "[hidden]"
            hidden = True
    if hidden:
        out["valuesHidden"] = CONFIGMAP_HIDDEN
    return out


def _clean_metadata(meta: dict[str, Any]) -> None:
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        for key in [k for k in annotations if "last-applied-configuration" in k]:
            del annotations[key]
        if not annotations:
            del meta["annotations"]


def _secret_view(d: dict[str, Any], secret_metadata: bool) -> dict[str, Any]:
    meta = d.get("metadata") if isinstance(d.get("metadata"), dict) else {}
    if not secret_metadata:
        return {"apiVersion": "v1", "kind": "Secret",
                "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta},
                "redacted": "Secret contents are never shown; metadata only with include_secret_metadata"}
    view: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": _sanitize(meta, secret_metadata, False)}
    if "type" in d:
        view["type"] = d["type"]
    data = d.get("data")
    if isinstance(data, dict):
        view["dataKeys"] = len(data)
    return view


def _sanitize(node: Any, secret_metadata: bool, configmap_values: bool) -> Any:
    if isinstance(node, list):
        return [_sanitize(x, secret_metadata, configmap_values) for x in node]
    if not isinstance(node, dict):
        # JSON-safe leaves: boto3 hands back datetimes, and structuredContent is JSON
        return node if node is None or isinstance(node, (str, int, float, bool)) else str(node)
    if _is_secret(node):
        return _secret_view(node, secret_metadata)
    # managedFields is dropped below: never walked (it is most of a list row's object)
    out = {k: _sanitize(v, secret_metadata, configmap_values) for k, v in node.items() if k != "managedFields"}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        _clean_metadata(meta)
    vf = out.get("valueFrom")
    if isinstance(vf, dict) and "secretKeyRef" in vf:
        out.pop("value", None)  # an env var fed by a Secret: the reference, never a value
    # Table rows and PartialObjectMetadata carry annotations outside "metadata" keys too
    ann = out.get("annotations")
    if isinstance(ann, dict) and any("last-applied-configuration" in k for k in ann):
        out["annotations"] = {k: v for k, v in ann.items() if "last-applied-configuration" not in k}
    out.pop("managedFields", None)
    if not configmap_values and _is_configmap(out):
        out = _configmap_summary(out)
    return out


def sanitize(obj: Any, *, secret_metadata: bool = False, configmap_values: bool = False) -> Any:
    """A deep, cleaned copy: no managedFields, no last-applied, no Secret data, no Secret-fed values,
    ConfigMap values only as sizes (unless `configmap_values`), and every string scrubbed."""
    return scrub_tree(_sanitize(obj, secret_metadata, configmap_values))


# ---- answers: what tools return ------------------------------------------------------


@dataclass
class Table:
    """Rows of cells (server-side Table, events, api resources...)."""

    columns: list[str]
    rows: list[list[Any]]
    title: str = ""
    notes: list[str] = field(default_factory=list)
    continue_token: str | None = None
    remaining: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: each row's object, when the API sent it: never shown, it tells which cells are credentials
    row_objects: list[dict[str, Any]] = field(default_factory=list)
    #: the rows as cleaned by Renderer._clean_rows, with the shape they were cleaned at (see there)
    cleaned: tuple[tuple[Any, ...], list[list[Any]]] | None = field(default=None, repr=False, compare=False)


@dataclass
class Objects:
    """Whole objects printed as yaml / json / name."""

    objects: list[dict[str, Any]]
    fmt: Literal["yaml", "json", "name"] = "yaml"
    single: bool = False
    notes: list[str] = field(default_factory=list)
    continue_token: str | None = None
    remaining: int | None = None
    secret_metadata: bool = False


@dataclass
class Document:
    """One structured answer (describe, overview, EKS) printed as YAML."""

    data: dict[str, Any]
    title: str = ""
    notes: list[str] = field(default_factory=list)
    secret_metadata: bool = False
    #: False: an answer an agent reads rather than a program parses (a diagnosis) goes out once, as
    #: YAML text that parses to the data (title as a comment, notes as a key), no structuredContent
    structured: bool = True


@dataclass
class Text:
    """Free text (logs): scrubbed by pattern; cut from the front so the newest lines stay."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)
    keep: Literal["head", "tail"] = "tail"
    notes: list[str] = field(default_factory=list)


Answer = Table | Objects | Document | Text


# ---- bounding ------------------------------------------------------------------------


def _jsize(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str))


def _fmt_bytes(n: int) -> str:
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"


def _table_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[str(c) for c in columns]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]


def _more_line(token: str | None, remaining: int | None) -> str | None:
    if not token:
        return None
    rest = f" (about {remaining} more)" if remaining else ""
    return f'More items{rest}: call again with continue="{token}".'


def _truncation_notice(cap: int, shown: int, total: int, token: str | None) -> str:
    how = f'get the rest with continue="{token}"' if token else "narrow the query"
    return (f"[truncated: output capped at {_fmt_bytes(cap)}; showing {shown} of {total} items; {how} "
            f"(or use namespace, label_selector, field_selector, a smaller limit).]")


class Renderer:
    """Owns the cap; `fit` tells a tool how many list items fit, `finish` builds the result."""

    def __init__(self, cap: int, configmap_values: ConfigMapValues = ConfigMapValues.SUMMARY) -> None:
        self.cap = cap
        self.budget = cap - 512  # room for notices
        self.show_configmap_values = configmap_values is ConfigMapValues.SHOW

    def sanitize(self, obj: Any, secret_metadata: bool = False) -> Any:
        return sanitize(obj, secret_metadata=secret_metadata, configmap_values=self.show_configmap_values)

    # -- list sizing --

    @staticmethod
    def _row_sizes(columns: list[str], rows: list[list[Any]]) -> list[int]:
        widths = [len(str(c)) for c in columns]
        for r in rows:
            for i, v in enumerate(r[: len(widths)]):
                widths[i] = max(widths[i], len("" if v is None else str(v)))
        line = sum(widths) + 3 * max(len(widths) - 1, 0) + 1
        return [_jsize(r) + 1 + line + 2 for r in rows]  # text + structured per row

    def _item_sizes(self, answer: Table | Objects) -> list[int]:
        if isinstance(answer, Table):
            # sized as they will be shown ("[REDACTED]" can be longer)
            return self._row_sizes(answer.columns, self._clean_rows(answer))
        if answer.fmt == "name":  # text line + the same string in structured "names"
            return [2 * len(json.dumps(_object_name(o))) + 2 for o in answer.objects]
        sizes = []
        for obj in answer.objects:
            clean = self.sanitize(obj, answer.secret_metadata)
            j = _jsize(clean)
            text = len(json.dumps(self._object_text(clean, answer.fmt)))
            sizes.append(j + text + 2)
        return sizes

    def fit(self, answer: Answer) -> int | None:
        """How many items of a list answer fit in the cap, or None when all do."""
        if not isinstance(answer, (Table, Objects)):
            return None
        return self._fit(self._item_sizes(answer), answer.columns if isinstance(answer, Table) else None)

    def _fit(self, sizes: list[int], columns: list[str] | None) -> int | None:
        total = 0
        base = 1024 + (_jsize(columns) * 2 if columns is not None else 0)
        for i, size in enumerate(sizes):
            total += size
            if base + total > self.budget:
                return i
        return None

    # -- text building --

    @staticmethod
    def _object_text(obj: dict[str, Any], fmt: str) -> str:
        if fmt == "json":
            return json.dumps(obj, separators=(",", ":"), default=str)
        if fmt == "name":
            return _object_name(obj)
        return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=120)

    def finish(self, answer: Answer) -> CallToolResult:
        if isinstance(answer, Table):
            return self._finish_table(answer)
        if isinstance(answer, Objects):
            return self._finish_objects(answer)
        if isinstance(answer, Document):
            return self._finish_document(answer)
        return self._finish_text(answer)

    def _result(self, text: str, structured: dict[str, Any] | None) -> CallToolResult:
        """`structured` None: the answer goes out as text only (its data is in the text)."""
        # The one exit of every answer: every string is scrubbed here, whatever a branch did
        # (idempotent: already-clean strings come out unchanged) ...
        text = scrub_text(text)
        structured = scrub_tree(structured) if structured is not None else None
        # ... and nothing leaves larger than the cap.
        if len(json.dumps(text)) > self.cap:
            text = _cut(text, self.budget, "head") + f"\n[truncated: output capped at {_fmt_bytes(self.cap)}.]"
        if structured is not None and _jsize(structured) > self.cap:
            structured = {"truncated": True, "notice": f"structured output exceeded {_fmt_bytes(self.cap)}; see text"}
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)

    def _finish_table(self, t: Table) -> CallToolResult:
        rows = self._clean_rows(t)
        notes = list(t.notes)
        keep = self._fit(self._row_sizes(t.columns, rows), t.columns)
        token, remaining = t.continue_token, t.remaining
        if keep is not None:
            notes.append(_truncation_notice(self.cap, keep, len(rows), None))
            rows = rows[:keep]
            token = remaining = None  # the API's token resumes after the rows dropped here: it would skip them
        lines = ([t.title] if t.title else []) + (_table_text(t.columns, rows) if rows else ["No resources found."])
        more = _more_line(token, remaining)
        text = "\n".join(lines + notes + ([more] if more else []))
        structured: dict[str, Any] = {"columns": list(t.columns), "rows": rows, **self.sanitize(t.extra)}
        if token:
            structured["continue"] = token
        if remaining is not None:
            structured["remainingItemCount"] = remaining
        if notes:
            structured["notes"] = notes
        return self._result(text, structured)

    def _clean_rows(self, t: Table) -> list[list[Any]]:
        """The rows as shown. Cleaning scrubs every row's object, the costliest step of a list, and
        a list page is sized (fit) before it is finished: the result is kept on the Table, reused
        only while the rows, their objects and the columns are the very lists it was cleaned from."""
        shape = (t.rows, len(t.rows), t.row_objects, len(t.row_objects), t.columns, len(t.columns))
        if t.cleaned is not None and all(x is y if isinstance(x, list) else x == y
                                         for x, y in zip(t.cleaned[0], shape, strict=True)):
            return t.cleaned[1]
        columns = list(t.columns)
        rows = []
        for i, r in enumerate(t.rows):
            swapped = self._row_swaps(t.row_objects[i] if i < len(t.row_objects) else None)
            rows.append([self._clean_cell(c, columns[n] if n < len(columns) else None, swapped)
                         for n, c in enumerate(r)])
        t.cleaned = (shape, rows)
        return rows

    @staticmethod
    def _row_swaps(obj: Any) -> dict[Any, Any]:
        return replaced_values(_sanitize(obj, False, True)) if isinstance(obj, dict) and obj else {}

    def _clean_cell(self, cell: Any, column: str | None, swapped: dict[Any, Any]) -> Any:
        """A cell scrubbed with its column as the key, and like the same value in the row's object:
        a CRD's printer column can point at any field."""
        if isinstance(cell, (str, int, float)) and not isinstance(cell, bool) and cell in swapped:
            return swapped[cell]
        return scrub_tree(_sanitize(cell, False, self.show_configmap_values), column)

    def clean_cell(self, cell: Any, column: str | None, row_object: Any = None) -> Any:
        """What a Table cell will read as (tools sort by this, never by the raw value)."""
        return self._clean_cell(cell, column, self._row_swaps(row_object))

    def _finish_objects(self, a: Objects) -> CallToolResult:
        objs = [self.sanitize(o, a.secret_metadata) for o in a.objects]
        notes = list(a.notes)
        keep = self.fit(Objects(objs, a.fmt, secret_metadata=a.secret_metadata))
        if keep is not None:
            if a.single or keep == 0:
                return self._finish_document(Document(objs[0] if a.single else {"items": objs[:1]}, notes=notes))
            notes.append(_truncation_notice(self.cap, keep, len(objs), None))
            objs = objs[:keep]
            a = dataclasses.replace(a, continue_token=None, remaining=None)  # it would skip the dropped items
        more = _more_line(a.continue_token, a.remaining)
        if a.fmt == "name":
            names = [_object_name(o) for o in objs]
            text = "\n".join(names + notes + ([more] if more else []))
            structured: dict[str, Any] = {"names": names}
        else:
            if a.single and objs:
                body = self._object_text(objs[0], a.fmt)
            elif a.fmt == "json":
                body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}, separators=(",", ":"),
                                  default=str)
            else:
                body = "---\n".join(self._object_text(o, "yaml") for o in objs) if objs else "No resources found.\n"
            text = body.rstrip("\n") + ("\n" + "\n".join(notes) if notes else "") + (f"\n{more}" if more else "")
            structured = objs[0] if a.single and objs else {"items": objs}
        if not a.single:
            if a.continue_token:
                structured["continue"] = a.continue_token
            if a.remaining is not None:
                structured["remainingItemCount"] = a.remaining
        if notes and not a.single:
            structured["notes"] = notes
        return self._result(text, structured)

    def _finish_document(self, d: Document) -> CallToolResult:
        data = self.sanitize(d.data, d.secret_metadata)
        notes = list(d.notes)
        if not d.structured:
            return self._finish_yaml_text(d.title, data, notes)
        body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=120)
        structured = data
        if len(json.dumps(body)) + _jsize(data) > self.budget:
            notes.append(f"[truncated: output capped at {_fmt_bytes(self.cap)}; ask for one part at a time "
                         f"(a single object, a namespace, fewer events).]")
            body = _cut(body, self.budget // 2, "head")
            structured = {"truncated": True, "notes": notes}
        text = ((d.title + "\n") if d.title else "") + body.rstrip("\n") + ("\n" + "\n".join(notes) if notes else "")
        return self._result(text, structured)

    def _finish_yaml_text(self, title: str, data: dict[str, Any], notes: list[str]) -> CallToolResult:
        """Text only, and the text is the data: `# title`, then YAML (notes under `notes`)."""
        head = f"# {' '.join(title.split())}\n" if title else ""
        doc = {**data, "notes": notes} if notes else data
        body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120)
        if len(json.dumps(head + body)) > self.budget:
            notice = (f"[truncated: output capped at {_fmt_bytes(self.cap)}; ask for one part at a time "
                      f"(a single object, a namespace, fewer findings).]")
            body = _cut(body, self.budget - len(json.dumps(head)) - len(notice) - 8, "head") + f"\n# {notice}"
        return self._result(head + body.rstrip("\n"), None)

    def _finish_text(self, t: Text) -> CallToolResult:
        text = scrub_text(t.text)
        notes = list(t.notes)
        data = self.sanitize(t.data) if t.data else {}
        room = self.budget - _jsize(data)  # the lines go out once, in the text (not echoed in structured)
        if len(json.dumps(text)) > room:
            text = _cut(text, room, t.keep)
            where = "oldest" if t.keep == "tail" else "newest"
            notes.append(f"[truncated: output capped at {_fmt_bytes(self.cap)}; the {where} lines were dropped; "
                         f"use tail_lines, since_seconds, limit_bytes or a filter to narrow it.]")
        out = text + ("\n" + "\n".join(notes) if notes else "")
        return self._result(out, {**data, **({"notes": notes} if notes else {})})

    def error(self, message: str) -> CallToolResult:
        line = scrub_text(" ".join(str(message).split()))[:1000] or "error"
        return CallToolResult(content=[TextContent(type="text", text=line)], is_error=True)


def _cut(text: str, budget: int, keep: Literal["head", "tail"]) -> str:
    """Cut at a line boundary so that the JSON-escaped text fits the budget."""
    if len(json.dumps(text)) <= budget:
        return text
    # escaping can at most double/sextuple a char; shrink until it fits
    n = max(budget // 2, 0)
    while n > 0:
        part = text[:n] if keep == "head" else text[-n:]
        if len(json.dumps(part)) <= budget:
            break
        n = int(n * 0.8)
    part = text[:n] if keep == "head" else text[-n:]
    if keep == "head" and "\n" in part:
        part = part[: part.rfind("\n")]
    elif keep == "tail" and "\n" in part:
        part = part[part.find("\n") + 1:]
    return part


def _object_name(obj: dict[str, Any]) -> str:
    kind = str(obj.get("kind", "")).lower()
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    name = (obj.get("metadata") or {}).get("name", "")
    return f"{kind}.{group}/{name}" if group else f"{kind}/{name}"
