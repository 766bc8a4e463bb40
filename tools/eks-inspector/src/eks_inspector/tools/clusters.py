"""`clusters`: every cluster this server serves, where it comes from, its version, and whether it answers.

Each cluster is asked for /version at once (in parallel, each bounded), so one that hangs
costs the answer a few seconds, not the others' rows; its row says why it did not answer.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eks_inspector.clusters import registry_of
from eks_inspector.clusters_config import DEFAULT_CLUSTER
from eks_inspector.context import Inspector
from eks_inspector.deadline import remaining
from eks_inspector.errors import InspectorError, Op
from eks_inspector.render import Document

#: Longest wait for one cluster's /version (a hung API server must not use the whole call).
PROBE_TIMEOUT = 5.0
MAX_PARALLEL = 8


def _default_source(ins: Inspector) -> dict[str, str]:
    s = ins.settings
    out = {"via": ins.kube.identity}
    if s.eks_cluster:
        out |= {"eksCluster": s.eks_cluster, "region": s.aws_region or ""}
    return out


def _probe(ins: Inspector, name: str) -> dict[str, Any]:
    registry = registry_of(ins)
    spec = registry.spec(name)
    row: dict[str, Any] = {"name": name, "default": name == DEFAULT_CLUSTER,
                           "source": spec.source() if spec is not None else _default_source(ins)}
    try:
        target = registry.inspector(name)
        row["server"] = target.kube.api.configuration.host
        version = target.kube.get("/version", Op("get", "version"),
                                  timeout=remaining(PROBE_TIMEOUT, f"cluster {name}"))
    except InspectorError as exc:
        return row | {"reachable": False, "reason": " ".join(str(exc).split())}
    return row | {"version": version.get("gitVersion"), "reachable": True}


def clusters(ins: Inspector) -> Document:
    """List the clusters this server serves (pass a name as `cluster` to any tool)."""
    names = registry_of(ins).names
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(names))) as pool:
        # each probe carries this call's context: its deadline and caller
        futures = [pool.submit(contextvars.copy_context().run, _probe, ins, n) for n in names]
        rows = [f.result() for f in futures]
    down = [r["name"] for r in rows if not r["reachable"]]
    notes = [f"not answering: {', '.join(down)} (their calls fail; the others are unaffected)"] if down else []
    return Document({"clusters": rows}, title=f"{len(rows)} cluster(s)", notes=notes)
