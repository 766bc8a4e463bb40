"""`logs`: a pod's container, or the pods of a workload, bounded before they are read.

tailLines, sinceSeconds and limitBytes go to the API server, so a chatty pod never
streams megabytes into this process; the filter runs after the tail, like `| grep`.
With a filter, each pod's log is scrubbed as soon as it is read, before the filter: a
filter that saw the raw text would answer "does the password start with h?" one call
at a time. (The renderer scrubs every answer anyway.)
"""

from __future__ import annotations

from typing import Any

from eks_inspector.context import Inspector
from eks_inspector.errors import InspectorError, Op
from eks_inspector.grep import compile_filter
from eks_inspector.kube import api_path
from eks_inspector.render import Text
from eks_inspector.scrub import scrub_text

WORKLOADS = {
    "deployment": ("apps", "deployments"), "deploy": ("apps", "deployments"), "deployments": ("apps", "deployments"),
    "statefulset": ("apps", "statefulsets"), "sts": ("apps", "statefulsets"),
    "daemonset": ("apps", "daemonsets"), "ds": ("apps", "daemonsets"),
    "replicaset": ("apps", "replicasets"), "rs": ("apps", "replicasets"),
    "job": ("batch", "jobs"),
}
MAX_LIMIT_BYTES = 4 * 1024 * 1024


def _pick_container(pod: dict[str, Any], container: str | None) -> str:
    names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    inits = [c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]
    pod_name = (pod.get("metadata") or {}).get("name")
    if container:
        if container not in names + inits:
            raise InspectorError(f'container "{container}" is not in pod {pod_name}; choose one of: {", ".join(names + inits)}')
        return container
    default = ((pod.get("metadata") or {}).get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    if default in names:
        return default  # type: ignore[return-value]
    if len(names) == 1:
        return names[0]  # type: ignore[return-value]
    raise InspectorError(f"pod {pod_name} has several containers; choose one of: {', '.join(names + inits)}")


def _pods_of(ins: Inspector, kind: str, name: str, ns: str, max_pods: int) -> list[dict[str, Any]]:
    group, plural = WORKLOADS[kind]
    owner = ins.kube.get(api_path(group, "v1", plural, ns, name), Op("get", plural, group, ns, name))
    labels = ((owner.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        raise InspectorError(f"{kind}/{name} has no matchLabels selector to find its pods")
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    doc = ins.kube.get(api_path("", "v1", "pods", ns), Op("list", "pods", "", ns), [("labelSelector", selector)])
    pods = sorted(doc.get("items") or [], key=lambda p: (p.get("metadata") or {}).get("name", ""))
    if not pods:
        raise InspectorError(f"{kind}/{name} has no pods in namespace {ns}")
    return pods[:max_pods]


def logs(
    ins: Inspector,
    name: str,
    namespace: str | None = None,
    container: str | None = None,
    tail_lines: int | None = 200,
    since_seconds: int | None = None,
    previous: bool = False,
    limit_bytes: int = 256 * 1024,
    grep: str | None = None,
    regex: bool = False,
    max_pods: int = 5,
) -> Text:
    ns = ins.namespace_for(None, namespace)
    assert ns is not None
    if tail_lines is not None and not 0 <= tail_lines <= 100_000:
        raise InspectorError("tail_lines must be between 0 and 100000")
    if since_seconds is not None and since_seconds < 1:
        raise InspectorError("since_seconds must be at least 1")
    if not 1 <= limit_bytes <= MAX_LIMIT_BYTES:
        raise InspectorError(f"limit_bytes must be between 1 and {MAX_LIMIT_BYTES}")
    if not 1 <= max_pods <= 20:
        raise InspectorError("max_pods must be between 1 and 20")
    line_filter = compile_filter(grep, regex)
    kind, _, target = name.rpartition("/")
    kind = kind.lower() or "pod"
    if kind in ("pod", "pods", "po"):
        pods = [ins.kube.get(api_path("", "v1", "pods", ns, target), Op("get", "pods", "", ns, target))]
    elif kind in WORKLOADS:
        pods = _pods_of(ins, kind, target, ns, max_pods)
    else:
        raise InspectorError(f"logs takes a pod name or deployment/NAME, statefulset/NAME, daemonset/NAME, "
                             f"replicaset/NAME, job/NAME; not {name!r}")
    per_pod = max(limit_bytes // len(pods), 1)
    read: list[tuple[str, str, list[str]]] = []
    for pod in pods:
        pod_name = (pod.get("metadata") or {}).get("name", "")
        cname = _pick_container(pod, container)
        q: list[tuple[str, str]] = [("container", cname), ("limitBytes", str(per_pod))]
        if tail_lines is not None:
            q.append(("tailLines", str(tail_lines)))
        if since_seconds:
            q.append(("sinceSeconds", str(since_seconds)))
        if previous:
            q.append(("previous", "true"))
        text = ins.kube.get_text(api_path("", "v1", "pods", ns, pod_name, "log"),
                                 Op("get", "pods", "", ns, pod_name, "log"), q)
        # a filter must see only what the caller may see; without one the renderer scrubs
        read.append((pod_name, cname, (scrub_text(text) if line_filter else text).splitlines()))
    if line_filter:  # one filter run over every pod's lines
        flat = [(n, ln) for n, (_, _, lines) in enumerate(read) for ln in lines]
        kept: list[list[str]] = [[] for _ in read]
        for i in line_filter.matches([ln for _, ln in flat]):
            kept[flat[i][0]].append(flat[i][1])
        read = [(p, c, lines) for (p, c, _), lines in zip(read, kept, strict=True)]
    chunks: list[str] = []
    sources = []
    for pod_name, cname, lines in read:
        sources.append({"pod": pod_name, "container": cname, "lines": len(lines)})
        if len(pods) > 1:
            lines = [f"[{pod_name}/{cname}] {ln}" for ln in lines]
        chunks.extend(lines)
    body = "\n".join(chunks)
    notes = [] if chunks else ["(no log lines" + (" matched the filter)" if line_filter else ")")]
    return Text(body, {"namespace": ns, "sources": sources}, keep="tail", notes=notes)
