"""Tool errors a person can act on: one line, never a stack trace.

The API server's own Status messages are long and name the caller; an agent needs the
verb and resource that were refused, so RBAC gaps read as a missing permission.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eks_inspector.caller import Caller


class InspectorError(Exception):
    """A failure the caller should see as a tool error (message is shown verbatim).

    `type_missing` marks a 404 for the resource type itself (not an object), which means
    the discovery cache is stale (e.g. a CRD was deleted or replaced).
    """

    def __init__(self, message: str, *, status: int | None = None, type_missing: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.type_missing = type_missing


@dataclass(frozen=True)
class Op:
    """What a request tried to do, so a failure can say it in kubectl's words."""

    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @property
    def qualified(self) -> str:
        res = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{res}/{self.subresource}" if self.subresource else res

    @property
    def where(self) -> str:
        return f' in namespace "{self.namespace}"' if self.namespace else " (cluster-wide)"


def _status_message(body: bytes | str | None) -> str:
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        doc = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    if isinstance(doc, dict):
        return " ".join(str(doc.get("message", "")).split())[:300]
    return ""


def _is_status(body: bytes | str | None) -> bool:
    try:
        doc = json.loads(body or b"")
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("kind") == "Status"


#: The API server's refusal of the impersonation itself (our ServiceAccount may not act as them).
_IMPERSONATE_DENIED = re.compile(r'^(\w+) "([^"]*)" is forbidden: .* cannot impersonate resource "(\w+)"')


def _forbidden_caller(message: str, op: Op, who: Caller) -> InspectorError:
    """A 403 in impersonation mode: say who was refused what, in the caller's words."""
    denied = _IMPERSONATE_DENIED.match(message)
    if denied:
        kind, name = denied.group(3), denied.group(2)
        return InspectorError(
            f"forbidden: this server may not act as {who.describe()}: its own identity may not impersonate "
            f"{kind} \"{name}\" (the operator lists the tailnet names it may act as; docs/access-kubernetes.md)",
            status=403)
    target = f' "{op.name}"' if op.name else ""
    resource = f"{op.qualified}{target}"
    groups = f", groups {', '.join(who.groups)}" if who.groups else ""
    return InspectorError(
        f"forbidden: {who.describe()} may not {op.verb} {resource}{op.where} (Kubernetes RBAC, as user "
        f"\"{who.user}\"{groups}); ask a cluster admin for a RoleBinding, or ask for something else",
        status=403)


def from_status(status: int, body: bytes | str | None, op: Op, who: Caller | None = None) -> InspectorError:
    """Turn an HTTP error from the API server into one actionable line (`who`: the caller the
    request impersonated, if any)."""
    message = _status_message(body)
    if status == 403 and who is not None:
        return _forbidden_caller(message, op, who)
    if status == 403:
        m = re.search(r'User "([^"]+)"', message)
        who = f" (as {m.group(1)})" if m else ""
        target = f' "{op.name}"' if op.name else ""
        return InspectorError(
            f"forbidden: RBAC denies verb \"{op.verb}\" on resource \"{op.qualified}\"{target}{op.where}{who}; "
            f"grant {op.verb} on {op.qualified} to this server's identity or ask for something else"
        )
    if status == 401:
        return InspectorError("unauthorized: the API server rejected this server's credentials (expired or revoked token)")
    if status == 404:
        # a missing object gets a Status document; a type the server no longer serves gets "404 page not found"
        type_missing = not _is_status(body)
        if op.name and not type_missing:
            return InspectorError(f'{op.qualified} "{op.name}" not found{op.where}', status=404)
        return InspectorError(f"{op.qualified}: not found{op.where} ({message or 'the API server does not serve it'})",
                              status=404, type_missing=type_missing)
    if status == 410:
        return InspectorError(
            "the continue token has expired (the list changed too much or is too old); start again without continue"
        )
    if status == 400:
        return InspectorError(f"bad request for {op.verb} {op.qualified}: {message or 'rejected by the API server'}")
    if status == 429:
        return InspectorError("the API server is throttling requests (429); retry shortly")
    if status in (502, 503, 504):
        return InspectorError(
            f"{op.qualified} is unavailable ({status}): {message or 'its API service does not answer'}"
        )
    return InspectorError(f"{op.verb} {op.qualified} failed ({status}): {message or 'no details'}")
