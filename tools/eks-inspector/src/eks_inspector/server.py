"""The MCP server: every tool registered read-only, guarded, and rendered by one renderer.

The guard is why the server keeps serving: each call runs in a worker thread under the
per-call timeout, and whatever goes wrong becomes a one-line tool error.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import typing
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from eks_inspector import __version__, caller
from eks_inspector.config import Impersonate
from eks_inspector.clusters import pick, registry_of
from eks_inspector.context import Inspector
from eks_inspector.deadline import call_deadline
from eks_inspector.errors import InspectorError
from eks_inspector.render import Answer
from eks_inspector.tools import cluster, describe, diagnose, eks, events, explain, get, logs, rollout
from eks_inspector.tools.clusters import clusters as list_clusters

log = logging.getLogger("eks_inspector")

PARAMS: dict[str, str] = {
    "resource": "Resource type: kind, plural, short name or plural.group (pods, po, deploy, foos.example.com)",
    "name": "Object name (omit to list)",
    "namespace": "Namespace (default: 'default', or the only allowed namespace)",
    "all_namespaces": "List across all namespaces (the allow-list, when one is set)",
    "label_selector": "Label selector, e.g. app=web,tier!=db",
    "field_selector": "Field selector, e.g. status.phase=Running",
    "output": "table (kubectl's columns), wide, name, yaml or json",
    "limit": "Page size (default 500); pass the returned continue token to get the next page",
    "continue_token": "The continue token from the previous page",
    "sort_by": "Sort this page by a column name (e.g. AGE) or a field path (e.g. metadata.creationTimestamp)",
    "include_secret_metadata": "Show Secret metadata (names, labels, type, key count). Secret data is never shown",
    "events_limit": "How many of the object's newest events to include",
    "container": "Container name (default: the pod's default or only container)",
    "tail_lines": "Lines from the end of the log (default 200)",
    "since_seconds": "Only lines newer than this many seconds",
    "previous": "Logs of the previous (crashed) container instance",
    "limit_bytes": "Read at most this many bytes of log from the API server (split across pods)",
    "grep": "Keep only lines containing this text (or matching it, with regex=true)",
    "regex": "Treat grep as a regular expression",
    "max_pods": "For a workload, read at most this many of its pods",
    "warnings_only": "Only Warning events",
    "what": "nodes or pods",
    "containers": "Per-container usage",
    "api_group": "Only this API group ('' for core)",
    "namespaced": "Only namespaced (true) or cluster-scoped (false) resources",
    "refresh": "Refresh the discovery cache first",
    "cluster": "Which configured cluster to ask (the clusters tool lists them; default: 'default')",
    "nodegroup": "Node group name (omit to list)",
    "addon": "Add-on name (omit to list)",
    "principal_arn": "IAM principal ARN of an access entry (omit to list)",
    "insight_id": "Insight id (omit to list)",
    "log_lines": "Last log lines of each failing container (previous instance when it restarted); 0 reads none",
    "max_findings": "How many ranked findings to return",
    "path": "RESOURCE[.FIELD...], e.g. deployment, deployment.spec.strategy, pods.spec.containers.env",
    "api_version": "The resource's group/version when several serve it (e.g. apps/v1)",
}

READ_ONLY = dict(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
#: The wrapper's own parameter for the SDK's request context (never a tool argument).
CONTEXT_PARAM = "mcp_request_context"


def caller_of(ins: Inspector, ctx: Context | None) -> caller.Caller | None:
    """The tailnet caller of this tool call, from the HTTP request that carried it (the POST
    to /mcp or to /messages/): None when the inspector acts as itself; a refusal (InspectorError)
    when it acts as the caller and the request names none."""
    if ins.settings.impersonate is not Impersonate.CALLER:
        return None
    request = ctx.request_context.request if ctx is not None and ctx.request_context is not None else None
    headers = getattr(request, "headers", None)
    if headers is None:
        raise InspectorError(caller.REFUSED_NO_IDENTITY)
    return caller.from_headers(headers)


def _cluster_param(ins: Inspector) -> inspect.Parameter:
    """Every tool's `cluster`: a configured name only (never a context, endpoint or role)."""
    names = registry_of(ins).names
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return inspect.Parameter("cluster", inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[str | None, Field(description=f"{PARAMS['cluster']}: {shown}")])


def _guarded(ins: Inspector, name: str, fn: Callable[..., Answer], open_world: bool) -> Callable[..., Any]:
    hints = typing.get_type_hints(fn)
    sig = inspect.signature(fn)
    params = []
    for p in list(sig.parameters.values())[1:]:  # the first parameter is the Inspector
        if p.name == "cluster":
            continue  # an EKS tool's own: pick() sets it from the configured cluster
        ann = hints.get(p.name, Any)
        if p.name in PARAMS:
            ann = Annotated[ann, Field(description=PARAMS[p.name])]
        params.append(p.replace(annotation=ann))
    scoped = name not in UNSCOPED
    if scoped:
        params.append(_cluster_param(ins))

    def answer(deadline: float, who: caller.Caller | None, kwargs: dict[str, Any]) -> CallToolResult:
        # The tool and the renderer both run in the worker thread (scrubbing a large answer is
        # CPU work the event loop must not wait for), under the call's deadline, which stops
        # work the caller was given up on (a thread cannot be killed; it must stop itself),
        # and on behalf of the call's caller (kube.py reads it for every request).
        with call_deadline(deadline), caller.acting_for(who):
            target = pick(ins, kwargs, eks_tool=open_world) if scoped else ins
            return ins.renderer.finish(fn(target, **kwargs))

    async def tool(**kwargs: Any) -> CallToolResult:
        started = time.monotonic()
        timeout = ins.settings.call_timeout
        outcome = "ok"
        ctx = kwargs.pop(CONTEXT_PARAM, None)
        asked = kwargs.get("cluster")  # logged only when configured: the caller's text stays out of logs
        known = asked in registry_of(ins).names
        target_name = None if asked is None else (asked if known else "(unknown)")
        who: caller.Caller | None = None
        try:
            try:
                who = caller_of(ins, ctx)
            except InspectorError as exc:
                outcome = "refused"
                return ins.renderer.error(str(exc))
            with anyio.fail_after(timeout):
                return await anyio.to_thread.run_sync(functools.partial(answer, started + timeout, who, kwargs),
                                                      abandon_on_cancel=True)
        except InspectorError as exc:
            outcome = "error"
            return ins.renderer.error(str(exc))
        except TimeoutError:
            outcome = "timeout"
            return ins.renderer.error(f"{name}: no answer within {timeout:g}s (INSPECTOR_CALL_TIMEOUT); "
                                      f"narrow the query or retry")
        except Exception as exc:  # the server must keep serving whatever a tool hits
            outcome = "crash"
            log.error("tool %s failed unexpectedly", name, exc_info=exc)
            return ins.renderer.error(f"{name} failed unexpectedly ({type(exc).__name__}); the server keeps serving")
        finally:
            log.info("tool call", extra={"tool": name, "outcome": outcome,
                                         "duration_ms": round((time.monotonic() - started) * 1000, 1),
                                         **({"caller": who.user} if who else {}),
                                         **({"cluster": target_name} if target_name else {})})

    params.append(inspect.Parameter(CONTEXT_PARAM, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Context))
    tool.__signature__ = sig.replace(parameters=params, return_annotation=CallToolResult)  # type: ignore[attr-defined]
    tool.__name__ = name
    tool.__doc__ = inspect.getdoc(fn)
    tool.__annotations__ = {p.name: p.annotation for p in params} | {"return": CallToolResult}
    return tool


TOOLS: list[tuple[str, Callable[..., Answer], str, str]] = [
    ("api_resources", cluster.api_resources, "API resources",
     "List the resource types the cluster serves (like kubectl api-resources), CRDs included."),
    ("get", get.get, "Get resources",
     "Get one object or a page of a list, any kind incl. CRDs (like kubectl get). Output table/wide/name/yaml/json; "
     "paginate with limit + continue_token."),
    ("describe", describe.describe, "Describe a resource",
     "Describe one object: conditions, owner chain, recent events; pods: container states, restarts, last "
     "termination; deployments: rollout state and replica sets (like kubectl describe)."),
    ("logs", logs.logs, "Container logs",
     "Logs of a pod's container, or of a workload's pods (deployment/NAME), with tail, since, previous, a byte "
     "limit and an optional substring/regex filter."),
    ("events", events.events, "Events",
     "Events, newest first, for a namespace or one object; optionally warnings only."),
    ("top", cluster.top, "Resource usage",
     "CPU and memory of nodes or pods from metrics.k8s.io (like kubectl top)."),
    ("diagnose", diagnose.diagnose, "Diagnose a workload",
     "Why a Deployment, StatefulSet, DaemonSet, Job or Pod (resource + name), or a whole namespace (no resource), "
     "is unhealthy, in one call: ranked findings, root cause first (missing ConfigMap/key/Secret/PVC references by "
     "name, quota/LimitRange refusals, OOM kills, image pull errors, crash loops with exit code and last log "
     "lines, scheduling failures, failing probes, node conditions and taints, stuck rollouts, warning events), "
     "each naming the object it came from."),
    ("rollout", rollout.rollout, "Rollout status and history",
     "A Deployment's, StatefulSet's or DaemonSet's rollout status (as kubectl rollout status) and revision history "
     "(as kubectl rollout history: revision, change-cause, images of each revision)."),
    ("explain", explain.explain, "Explain a resource's fields",
     "Documentation of any kind or field, CRDs included, from the API server's OpenAPI v3 (like kubectl explain "
     "deployment.spec.strategy): type, description, and the fields below it."),
    ("clusters", list_clusters, "Clusters",
     "The clusters this server serves (pass one's name as `cluster` to any tool): where each comes from (kubeconfig "
     "context, or EKS cluster, region and account role), its Kubernetes version, and whether it answers (or why not)."),
    ("cluster_overview", cluster.cluster_overview, "Cluster overview",
     "Version, nodes with capacity and conditions, namespaces, and workloads that are not healthy."),
]

#: Tools about all clusters at once: no `cluster` argument.
UNSCOPED = frozenset({"clusters"})

EKS_TOOLS: list[tuple[str, Callable[..., Answer], str, str]] = [
    ("eks_describe_cluster", eks.describe_cluster, "EKS cluster",
     "The EKS cluster's configuration: version, endpoint access, network, logging, health (AWS API)."),
    ("eks_nodegroups", eks.nodegroups, "EKS node groups", "List or describe the cluster's managed node groups."),
    ("eks_addons", eks.addons, "EKS add-ons", "List or describe the cluster's EKS add-ons."),
    ("eks_access_entries", eks.access_entries, "EKS access entries",
     "List access entries, or describe one with its associated access policies."),
    ("eks_insights", eks.insights, "EKS insights", "List or describe upgrade and configuration insights."),
]


def eks_tools_enabled(ins: Inspector) -> bool:
    mode = ins.settings.eks_tools
    if mode == "off":
        return False
    if mode == "on":
        return True
    regions = [ins.settings.aws_region, *(c.region for c in ins.settings.clusters)]
    return any(regions) and eks.aws_credentials_present()


def build(ins: Inspector) -> MCPServer:
    mcp: MCPServer = MCPServer(
        "eks-inspector",
        title="EKS inspector (read-only)",
        version=__version__,
        instructions="Read-only, kubectl-style inspection of a Kubernetes/EKS cluster. Secrets never leave; "
                     "answers are capped; follow continue tokens for more.",
    )
    registry_of(ins)  # every configured cluster, each built on first use
    tools = TOOLS + (EKS_TOOLS if eks_tools_enabled(ins) else [])
    for name, fn, title, description in tools:
        mcp.add_tool(
            _guarded(ins, name, fn, open_world=name.startswith("eks_")),
            name=name, title=title, description=description,
            annotations=ToolAnnotations(title=title, open_world_hint=False, **READ_ONLY),
        )
    return mcp
