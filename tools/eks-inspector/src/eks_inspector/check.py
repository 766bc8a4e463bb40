"""`eks-inspector --check-config` with INSPECTOR_CLUSTERS: ask every cluster for /version, one line each.

A wrong context, a role the server may not assume or an API server it cannot reach shows up
here, before deployment, with its reason, instead of at a caller's first question. Each
cluster is built and asked as the `clusters` tool does (its own client, AWS session and role),
with the inspector's own identity; each gets at most CHECK_TIMEOUT, measured here, so a
cluster that hangs anywhere (STS, DescribeCluster, a TCP connect nobody answers) costs that
cluster's line, not the check: its thread is a daemon and is left behind when the process exits.
"""

from __future__ import annotations

import contextvars
import threading
import time
from dataclasses import dataclass

from eks_inspector import caller
from eks_inspector.clusters import Registry, registry_of
from eks_inspector.context import Inspector
from eks_inspector.deadline import call_deadline
from eks_inspector.errors import InspectorError, Op
from eks_inspector.scrub import scrub_text
from eks_inspector.tools.clusters import MAX_PARALLEL, PROBE_TIMEOUT

#: Longest one cluster may take: building it (kubeconfig, STS, DescribeCluster) and /version.
CHECK_TIMEOUT = 2 * PROBE_TIMEOUT


@dataclass
class Outcome:
    """One cluster's result: its version, or why it could not be asked."""

    name: str
    version: str | None = None
    reason: str = ""

    @property
    def line(self) -> str:
        if self.version is not None:
            return f"cluster {self.name}: reachable, {self.version}"
        return f"cluster {self.name}: NOT reachable: {scrub_text(self.reason)}"


def _probe(registry: Registry, out: Outcome, limit: float) -> None:
    try:
        with caller.as_inspector(), call_deadline(time.monotonic() + limit):
            target = registry.inspector(out.name)
            version = target.kube.get("/version", Op("get", "version"), timeout=PROBE_TIMEOUT)
        out.version = str(version.get("gitVersion") or "version unknown")
    except InspectorError as exc:
        out.reason = " ".join(str(exc).split())[:300]
    except Exception as exc:  # whatever a broken cluster raises is its line, never the check's end
        out.reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def check_clusters(ins: Inspector, limit: float = CHECK_TIMEOUT) -> list[Outcome]:
    """Every served cluster (`default` first), asked in batches of MAX_PARALLEL, each bounded by `limit`."""
    registry = registry_of(ins)
    outcomes = [Outcome(name) for name in registry.names]
    done: list[Outcome] = []
    for start in range(0, len(outcomes), MAX_PARALLEL):
        batch = outcomes[start:start + MAX_PARALLEL]
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(_probe, registry, o, limit),
                                    name=f"check-{o.name}", daemon=True) for o in batch]
        for t in threads:
            t.start()
        until = time.monotonic() + limit + 1.0
        for t, o in zip(threads, batch, strict=True):
            t.join(max(0.0, until - time.monotonic()))
            # a thread still running may yet write to its Outcome: report a fresh one
            done.append(o if not t.is_alive() else Outcome(o.name, reason=f"did not answer within {limit:g}s"))
    return done
