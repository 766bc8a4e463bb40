"""Which resource types the cluster serves, and what a kind or short name means.

Uses aggregated discovery (one request each for /api and /apis, served from the API
server's cache, so a broken aggregated API shows as stale instead of hanging a call),
with a TTL. A name that does not resolve triggers one early refresh, so a CRD created a
moment ago is found without waiting for the TTL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, TypeVar

from eks_inspector.caller import as_inspector
from eks_inspector.errors import InspectorError, Op
from eks_inspector.kube import ACCEPT_DISCOVERY, ACCEPT_JSON, Kube

T = TypeVar("T")

#: After a miss, do not refresh again sooner than this (a typo must not hammer discovery).
MISS_REFRESH_INTERVAL = 2.0


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    singular: str = ""
    categories: tuple[str, ...] = ()
    preferred: bool = True

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.plural, "shortNames": list(self.short_names), "apiVersion": self.group_version,
            "namespaced": self.namespaced, "kind": self.kind, "verbs": list(self.verbs),
        }


@dataclass
class Catalog:
    resources: list[Resource] = field(default_factory=list)
    stale_groups: list[str] = field(default_factory=list)
    fetched_at: float = 0.0


def _from_aggregated(doc: dict[str, Any], catalog: Catalog) -> None:
    for group in doc.get("items") or []:
        gname = (group.get("metadata") or {}).get("name", "") or ""
        for index, ver in enumerate(group.get("versions") or []):
            version = ver.get("version", "")
            if ver.get("freshness") == "Stale":
                catalog.stale_groups.append(f"{gname}/{version}" if gname else version)
            for r in ver.get("resources") or []:
                kind = (r.get("responseKind") or {}).get("kind", "")
                catalog.resources.append(Resource(
                    group=gname, version=version, plural=r.get("resource", ""), kind=kind,
                    namespaced=r.get("scope") == "Namespaced", verbs=tuple(r.get("verbs") or ()),
                    short_names=tuple(r.get("shortNames") or ()), singular=r.get("singularResource", "") or "",
                    categories=tuple(r.get("categories") or ()), preferred=index == 0,
                ))


def _legacy(kube: Kube, catalog: Catalog, timeout: float) -> None:
    """Fallback for API servers without aggregated discovery: one request per group version."""
    op = Op("get", "discovery")
    targets: list[tuple[str, str, bool]] = [("", v, i == 0) for i, v in
                                            enumerate(kube.get("/api", op, timeout=timeout).get("versions") or [])]
    for g in kube.get("/apis", op, timeout=timeout).get("groups") or []:
        preferred = (g.get("preferredVersion") or {}).get("version")
        for v in g.get("versions") or []:
            targets.append((g["name"], v["version"], v["version"] == preferred))
    for gname, version, preferred in targets:
        path = f"/api/{version}" if not gname else f"/apis/{gname}/{version}"
        try:
            doc = kube.get(path, op, timeout=timeout)
        except InspectorError:
            catalog.stale_groups.append(f"{gname}/{version}" if gname else version)
            continue
        for r in doc.get("resources") or []:
            if "/" in r.get("name", ""):
                continue
            catalog.resources.append(Resource(
                group=gname, version=version, plural=r["name"], kind=r.get("kind", ""),
                namespaced=bool(r.get("namespaced")), verbs=tuple(r.get("verbs") or ()),
                short_names=tuple(r.get("shortNames") or ()), singular=r.get("singularName", "") or "",
                categories=tuple(r.get("categories") or ()), preferred=preferred,
            ))


class Discovery:
    """Cached discovery with TTL and kubectl-like name resolution."""

    def __init__(self, kube: Kube, ttl: float, timeout: float | None = None) -> None:
        self.kube = kube
        self.ttl = ttl
        self.timeout = min(timeout or kube.timeout, 10.0)
        self._lock = threading.Lock()
        self._catalog = Catalog()
        self._last_refresh = 0.0

    def catalog(self, force: bool = False) -> Catalog:
        with self._lock:
            age = time.monotonic() - self._catalog.fetched_at
            if force or not self._catalog.resources or age > self.ttl:
                self._catalog = self._fetch()
            return self._catalog

    def _fetch(self) -> Catalog:
        # One cache for every caller, so it is filled with the inspector's own identity: what
        # the cluster serves is the same for all (system:discovery), and no caller's view leaks.
        with as_inspector():
            return self._fetch_catalog()

    def _fetch_catalog(self) -> Catalog:
        catalog = Catalog()
        op = Op("get", "discovery")
        core = self.kube.get("/api", op, accept=ACCEPT_DISCOVERY, timeout=self.timeout)
        if core.get("kind") != "APIGroupDiscoveryList":
            _legacy(self.kube, catalog, self.timeout)
        else:
            _from_aggregated(core, catalog)
            _from_aggregated(self.kube.get("/apis", op, accept=ACCEPT_DISCOVERY, timeout=self.timeout), catalog)
        catalog.fetched_at = time.monotonic()
        self._last_refresh = catalog.fetched_at
        return catalog

    def resolve(self, name: str, force: bool = False) -> Resource:
        """Map `pods`, `po`, `Pod`, `deployments.apps`, `deploy.v1.apps`, `foos.example.com` to one type."""
        spec = name.strip()
        if not spec or "/" in spec or " " in spec:
            raise InspectorError(f"{name!r} is not a resource type (use a kind, plural or short name, e.g. pods)")
        found = self._match(self.catalog(force=force), spec)
        if found is None and time.monotonic() - self._last_refresh > MISS_REFRESH_INTERVAL:
            found = self._match(self.catalog(force=True), spec)
        if found is None:
            raise InspectorError(
                f'the server doesn\'t have a resource type "{spec}" (see the api_resources tool for the list)'
            )
        return found

    @staticmethod
    def _match(catalog: Catalog, spec: str) -> Resource | None:
        lower = spec.lower()
        head, _, rest = lower.partition(".")
        candidates: list[tuple[str | None, str | None]] = [(None, None)] if not rest else []
        if rest:
            # resource.version.group or resource.group (kubectl's order of tries)
            ver, _, grp = rest.partition(".")
            if grp:
                candidates.append((ver, grp))
            candidates.append((None, rest))
        for version, group in candidates:
            hits = [
                r for r in catalog.resources
                if (group is None or r.group == group)
                and (version is None or r.version == version)
                and (version is not None or r.preferred)
                and head in (r.plural, r.singular, r.kind.lower(), *(s.lower() for s in r.short_names))
            ]
            if hits:
                exact_plural = [r for r in hits if r.plural == head]
                return (exact_plural or hits)[0]
        # a kind given with its exact case but unusual plural (e.g. "Endpoints")
        return None

    def run(self, name: str, fn: Callable[[Resource], T]) -> T:
        """Resolve `name` and run `fn`; if the server says the type is gone, refresh once and retry."""
        r = self.resolve(name)
        try:
            return fn(r)
        except InspectorError as exc:
            if not exc.type_missing:
                raise
        fresh = self.resolve(name, force=True)
        if fresh == r:
            raise InspectorError(f'the server doesn\'t have a resource type "{name}" any more')
        return fn(fresh)

    def kinds_for_owner(self, api_version: str, kind: str) -> Resource | None:
        group, _, version = api_version.rpartition("/")
        for r in self.catalog().resources:
            if r.group == group and r.version == version and r.kind == kind:
                return r
        return None

    def has_group(self, group: str) -> bool:
        return any(r.group == group for r in self.catalog().resources)


__all__ = ["Discovery", "Resource", "Catalog", "ACCEPT_JSON"]
