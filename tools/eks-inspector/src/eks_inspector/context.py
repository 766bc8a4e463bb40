"""What every tool needs: settings, the API client, discovery and the renderer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from eks_inspector.config import Settings
from eks_inspector.discovery import Discovery, Resource
from eks_inspector.errors import InspectorError
from eks_inspector.kube import Kube
from eks_inspector.render import Renderer

if TYPE_CHECKING:
    from eks_inspector.clusters import Registry


@dataclass
class Inspector:
    settings: Settings
    kube: Kube
    discovery: Discovery
    renderer: Renderer
    #: every configured cluster (clusters.py); shared by the Inspectors of all of them
    clusters: Registry | None = None
    #: this cluster's boto3 session (its region and configured role); None: the ambient credentials
    aws: Any = None

    def namespace_for(self, resource: Resource | None, namespace: str | None, all_namespaces: bool = False
                      ) -> str | None:
        """The namespace a call targets (None = all / cluster-scoped), checked against the allow-list."""
        if resource is not None and not resource.namespaced:
            return None
        if all_namespaces:
            if namespace:
                raise InspectorError("give either namespace or all_namespaces, not both")
            return None
        ns = namespace or self.default_namespace()
        self.check_namespace(ns)
        return ns

    def namespaces_for(self, namespace: str | None, all_namespaces: bool = False) -> list[str | None]:
        """Namespaces a listing walks: with an allow-list, all_namespaces means each allowed one in turn,
        never a cluster-wide list."""
        if all_namespaces and self.settings.namespaces:
            return list(self.settings.namespaces)
        return [self.namespace_for(None, namespace, all_namespaces)]

    def default_namespace(self) -> str:
        allowed = self.settings.namespaces
        return allowed[0] if len(allowed) == 1 else "default"

    def check_namespace(self, namespace: str) -> None:
        if not self.settings.namespace_allowed(namespace):
            raise InspectorError(
                f'namespace "{namespace}" is outside this server\'s allow-list ({", ".join(self.settings.namespaces)})'
            )


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(value: str | None, now: datetime | None = None) -> str:
    """kubectl's short age (5m, 3h, 2d)."""
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    seconds = int(((now or datetime.now(timezone.utc)) - t).total_seconds())
    if seconds < 0:
        seconds = 0
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def dig(obj: Any, path: str) -> Any:
    """Value at a dotted path (`metadata.name`, `.status.phase`, `{.spec.replicas}`), or None."""
    path = path.strip().removeprefix("{").removesuffix("}").lstrip(".")
    cur = obj
    for part in path.split(".") if path else []:
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur
