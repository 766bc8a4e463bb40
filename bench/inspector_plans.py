"""Scripted troubleshooting agents: per server, the fixed calls a competent agent makes until it has the root cause.

Each scenario of mcp_tailnet_lab.broken_workloads is a workload an SRE is told is broken
("deployment/crashy in namespace N"). A plan is the list of calls an agent who knows
Kubernetes makes with that server's tools, in order, stopping as soon as the root cause is
in its answers: no LLM, no guessing, the same every run. The plans are generous to the
peers: no exploratory calls, the pod's name taken as read from the list the agent just got.

"Root cause in hand" is checked, not assumed: every pattern of EVIDENCE must occur in the
text of the plan's answers (what the agent reads), whatever the server's wording.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from mcp_tailnet_lab.broken_workloads import SCENARIOS
from inspector_servers import Peer


class Step(str, Enum):
    WORKLOAD = "read the workload (status, conditions, selector)"
    PODS = "list the workload's pods by its selector"
    POD = "read the failing pod"
    POD_EVENTS = "events of the failing pod"
    PREVIOUS_LOG = "log of the failing container's previous instance"
    REPLICASET_EVENTS = "events of the workload's ReplicaSet"


@dataclass(frozen=True)
class Target:
    """What the agent is told and what it learns on the way (the names the lab builder creates)."""

    kind: str  # Deployment, StatefulSet, Job
    name: str
    selector: str
    pod: str
    replicaset: str = ""


TARGETS: dict[str, Target] = {
    "image-pull": Target("Deployment", "imgpull", "app=imgpull", "imgpull-1a2b-xxxxx"),
    "crash-loop": Target("Deployment", "crashy", "app=crashy", "crashy-3c4d-xxxxx"),
    "oom": Target("Deployment", "hungry", "app=hungry", "hungry-5e6f-xxxxx"),
    "pending-resources": Target("Deployment", "huge", "app=huge", "huge-7a8b-xxxxx"),
    "pending-pvc": Target("StatefulSet", "db", "app=db", "db-0"),
    "readiness": Target("Deployment", "notready", "app=notready", "notready-9c0d-xxxxx"),
    "configmap-key": Target("Deployment", "cfg", "app=cfg", "cfg-e1f2-xxxxx"),
    "stuck-rollout": Target("Deployment", "stuck", "app=stuck", "stuck-v2-0"),
    "quota": Target("Deployment", "greedy", "app=greedy", "", replicaset="greedy-0a0b"),
    "job-oom": Target("Job", "batch", "job-name=batch", "batch-xxxxx"),
}

# The root cause, as patterns any correct answer contains (the kubelet's, scheduler's and
# controllers' own words, or the numbers they report), whether the server quotes them in
# YAML (folded lines, undone before matching) or JSON (escaped quotes: \\?").
EVIDENCE: dict[str, tuple[str, ...]] = {
    "image-pull": (r"registry\.example/missing:9", r"not found"),
    "crash-loop": (r"connect: connection refused",),  # the previous instance's last log line
    "oom": (r"OOMKilled", r"64Mi"),
    "pending-resources": (r"Insufficient cpu",),
    "pending-pvc": (r'persistentvolumeclaim \\?"data-db-0\\?" not found',),
    "readiness": (r"Readiness probe failed", r"statuscode: 503"),
    "configmap-key": (r"app-settings", r"couldn't find key DB_HOST|no key \\?\"DB_HOST"),
    "stuck-rollout": (r"ProgressDeadlineExceeded", r'\\?"stuck-v2\\?" has timed out progressing'),
    "quota": (r"exceeded quota:\s+compute",),
    "job-oom": (r"OOMKilled", r"137"),
}

S = Step
# The peers' plans. kubernetes-mcp-server's pod list is a table with each pod's STATUS
# (ImagePullBackOff, CrashLoopBackOff, Pending...), so the agent picks the next call from it;
# eks-mcp-server's list_k8s_resources returns names, labels and annotations only, so its
# agent reads the pod before it knows which call comes next.
PLANS: dict[Peer, dict[str, tuple[Step, ...]]] = {
    Peer.KUBERNETES_MCP: {
        "image-pull": (S.WORKLOAD, S.PODS, S.POD_EVENTS),
        "crash-loop": (S.WORKLOAD, S.PODS, S.PREVIOUS_LOG),
        "oom": (S.WORKLOAD, S.PODS, S.POD),
        "pending-resources": (S.WORKLOAD, S.PODS, S.POD),
        "pending-pvc": (S.WORKLOAD, S.PODS, S.POD),
        "readiness": (S.WORKLOAD, S.PODS, S.POD_EVENTS),
        "configmap-key": (S.WORKLOAD, S.PODS, S.POD),
        "stuck-rollout": (S.WORKLOAD,),
        "quota": (S.WORKLOAD, S.PODS, S.REPLICASET_EVENTS),
        "job-oom": (S.WORKLOAD, S.PODS, S.POD),
    },
    Peer.EKS_MCP: {
        "image-pull": (S.WORKLOAD, S.PODS, S.POD, S.POD_EVENTS),
        "crash-loop": (S.WORKLOAD, S.PODS, S.POD, S.PREVIOUS_LOG),
        "oom": (S.WORKLOAD, S.PODS, S.POD),
        "pending-resources": (S.WORKLOAD, S.PODS, S.POD),
        "pending-pvc": (S.WORKLOAD, S.PODS, S.POD),
        "readiness": (S.WORKLOAD, S.PODS, S.POD, S.POD_EVENTS),
        "configmap-key": (S.WORKLOAD, S.PODS, S.POD),
        "stuck-rollout": (S.WORKLOAD,),
        "quota": (S.WORKLOAD, S.PODS, S.REPLICASET_EVENTS),
        "job-oom": (S.WORKLOAD, S.PODS, S.POD),
    },
}

API_VERSION = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1", "Pod": "v1",
               "ReplicaSet": "apps/v1"}


def _kubernetes_mcp(step: Step, t: Target, ns: str) -> tuple[str, dict[str, Any]]:
    def events(name: str) -> tuple[str, dict[str, Any]]:
        return "events_list", {"namespace": ns, "fieldSelector": f"involvedObject.name={name}"}

    return {
        S.WORKLOAD: lambda: ("resources_get", {"apiVersion": API_VERSION[t.kind], "kind": t.kind, "name": t.name,
                                               "namespace": ns}),
        S.PODS: lambda: ("pods_list_in_namespace", {"namespace": ns, "labelSelector": t.selector}),
        S.POD: lambda: ("pods_get", {"namespace": ns, "name": t.pod}),
        S.POD_EVENTS: lambda: events(t.pod),
        S.PREVIOUS_LOG: lambda: ("pods_log", {"namespace": ns, "name": t.pod, "previous": True}),
        S.REPLICASET_EVENTS: lambda: events(t.replicaset),
    }[step]()


def _eks_mcp(step: Step, t: Target, ns: str) -> tuple[str, dict[str, Any]]:
    def read(kind: str, name: str) -> tuple[str, dict[str, Any]]:
        return "manage_k8s_resource", {"operation": "read", "kind": kind, "api_version": API_VERSION[kind],
                                       "name": name, "namespace": ns}

    return {
        S.WORKLOAD: lambda: read(t.kind, t.name),
        S.PODS: lambda: ("list_k8s_resources", {"kind": "Pod", "api_version": "v1", "namespace": ns,
                                                "label_selector": t.selector}),
        S.POD: lambda: read("Pod", t.pod),
        S.POD_EVENTS: lambda: ("get_k8s_events", {"kind": "Pod", "name": t.pod, "namespace": ns}),
        S.PREVIOUS_LOG: lambda: ("get_pod_logs", {"namespace": ns, "pod_name": t.pod, "previous": True}),
        S.REPLICASET_EVENTS: lambda: ("get_k8s_events", {"kind": "ReplicaSet", "name": t.replicaset,
                                                         "namespace": ns}),
    }[step]()


CALLS: Mapping[Peer, Callable[[Step, Target, str], tuple[str, dict[str, Any]]]] = {
    Peer.KUBERNETES_MCP: _kubernetes_mcp, Peer.EKS_MCP: _eks_mcp}


def plan(peer: Peer, key: str, ns: str) -> list[tuple[str, dict[str, Any]]]:
    """The (tool, arguments) calls `peer`'s agent makes for scenario `key` in namespace `ns`."""
    if peer is Peer.INSPECTOR:
        scenario = next(s for s in SCENARIOS if s.key == key)
        return [("diagnose", {"resource": scenario.resource, "name": scenario.name, "namespace": ns})]
    return [CALLS[peer](step, TARGETS[key], ns) for step in PLANS[peer][key]]


def _unfolded(text: str) -> str:
    """The text with YAML's line folding undone: a folded or escaped line break reads as one space."""
    text = re.sub(r"\\\n\s*(\\ )?", lambda m: " " if m.group(1) else "", text)  # "...\<newline>  \ ..."
    return re.sub(r"\s+", " ", text)


def missing_evidence(key: str, texts: list[str]) -> list[str]:
    """The EVIDENCE patterns of `key` that no answer contains ([] means the root cause is in hand)."""
    body = "\n".join(_unfolded(t) for t in texts)
    return [p for p in EVIDENCE[key] if not re.search(p, body)]
