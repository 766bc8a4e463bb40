"""`diagnose`: the findings an SRE collects by hand for a broken workload, ranked, in one call.

The root cause of "why is this not running" is spread over several objects: the pod's
container states, the scheduler's and kubelet's events, the ReplicaSet's FailedCreate
events, the ConfigMaps and claims the pod refers to, the node it runs on. This reads
each once (one list per kind, events once per namespace, a bounded number of log reads)
and ranks what it found so the most specific cause comes first: a missing reference
explains a config error, a quota refusal explains a workload without pods, an OOM kill
explains a crash loop, and all of them explain "replicas unavailable".

Only names ever leave: a ConfigMap is read to learn its keys, never to show a value;
Secrets are not read at all (the inspector's role has no Secrets), so a missing Secret
is reported from what the kubelet said about it. Every finding goes through the one
renderer like any answer (scrubbed, capped); the list is bounded before that.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eks_inspector.context import Inspector, age
from eks_inspector.errors import InspectorError, Op
from eks_inspector.kube import api_path
from eks_inspector.render import Document
from eks_inspector.scrub import scrub_text
from eks_inspector.tools.describe import event_time

T = TypeVar("T")

MAX_FINDINGS = 100
MAX_LOG_LINES = 200
#: Containers whose logs one call reads at most (each read is one proxied request to a kubelet).
MAX_LOG_READS = 3
LOG_BYTES = 16 * 1024
#: Objects one call lists per kind; a namespace with more is diagnosed on the first page.
LIST_LIMIT = 500
EVENT_PAGES = 2
MAX_EVENT_FINDINGS = 10
MESSAGE_CHARS = 600

IMAGE_PULL = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                        "RegistryUnavailable", "SignatureValidationFailed"})
CONTAINER_CONFIG = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError",
                              "PreCreateHookError", "PreStartHookError", "PostStartHookError"})
NODE_PRESSURE = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")


class Rank(enum.IntEnum):
    """How directly a finding explains the failure: lower comes first."""

    MISSING_REFERENCE = 10  # a ConfigMap, key, Secret or claim the pod needs does not exist
    CLAIM_UNBOUND = 15
    CREATE_REFUSED = 20  # quota / LimitRange / admission refused the controller's pods
    NODE_NOT_READY = 25
    OOM_KILLED = 30
    IMAGE_PULL = 31
    CONTAINER_CONFIG = 32
    CRASH_LOOP = 33
    JOB_FAILED = 35
    UNSCHEDULABLE = 40
    PROBE_FAILING = 45
    NODE_PRESSURE = 50
    TAINTS = 52
    ROLLOUT_STUCK = 55
    UNAVAILABLE = 60
    ROLLOUT_IN_PROGRESS = 62
    RESTARTS = 65
    NOT_READY = 70
    WARNING_EVENT = 80


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass
class Finding:
    rank: Rank
    obj: str  # Kind/name, the object the finding came from
    reason: str
    message: str
    container: str | None = None
    logs: list[str] | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"object": self.obj, "reason": self.reason,
                             "severity": str(Severity.ERROR if self.rank < Rank.ROLLOUT_STUCK else Severity.WARNING),
                             "message": _clip(self.message)}
        if self.container:
            d["container"] = self.container
        d.update(self.detail)
        if self.logs is not None:
            d["lastLogLines"] = self.logs
        return d

    def line(self) -> str:
        """Names the top finding; its message is findings[0]'s, not repeated (answers are read by the byte)."""
        where = f" (container {self.container})" if self.container else ""
        return _clip(f"{self.obj}{where}: {self.reason}", 300)


def _clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- what a workload kind means ---------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    group: str
    plural: str
    kind: str


WORKLOAD_KINDS = {
    "Deployment": Kind("apps", "deployments", "Deployment"),
    "StatefulSet": Kind("apps", "statefulsets", "StatefulSet"),
    "DaemonSet": Kind("apps", "daemonsets", "DaemonSet"),
    "Job": Kind("batch", "jobs", "Job"),
}


def label_selector(selector: dict[str, Any] | None) -> str:
    """A LabelSelector object as the query string the API server takes."""
    parts = [f"{k}={v}" for k, v in ((selector or {}).get("matchLabels") or {}).items()]
    for e in (selector or {}).get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _controller_uid(obj: dict[str, Any]) -> str | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), None)
    return ref.get("uid") if ref else None


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


def _label(obj: dict[str, Any], kind: str | None = None) -> str:
    return f"{kind or obj.get('kind', '?')}/{_name(obj)}"


# ---- one call's reads -----------------------------------------------------------------


class Diagnosis:
    """One call's state: what was read (each at most once) and what was found."""

    def __init__(self, ins: Inspector, ns: str, log_lines: int) -> None:
        self.ins = ins
        self.ns = ns
        self.log_lines = log_lines
        self.findings: list[Finding] = []
        self.notes: list[str] = []
        self.scope: set[str] = set()  # uids whose warning events belong to this diagnosis
        self.used_events: set[str] = set()
        self._events: list[dict[str, Any]] | None = None
        self._configmaps: dict[str, dict[str, Any] | None] = {}
        self._claims: dict[str, dict[str, Any] | None] = {}
        self._nodes: dict[str, dict[str, Any]] | None = None
        self._logs_read = 0
        #: (group, plural) -> every object of the namespace, read once by a namespace diagnosis
        self.full_lists: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._seen: set[tuple[str, str, str]] = set()

    # -- reading --

    def optional(self, what: str, fn: Callable[[], T], default: T) -> T:
        """A part that may fail (RBAC, an old API) without failing the call: it becomes a note."""
        try:
            return fn()
        except InspectorError as exc:
            note = f"{what}: {exc}"
            if note not in self.notes:
                self.notes.append(note)
            return default

    def get(self, group: str, plural: str, name: str) -> dict[str, Any]:
        return self.ins.kube.get(api_path(group, "v1", plural, self.ns, name), Op("get", plural, group, self.ns, name))

    def list(self, group: str, plural: str, selector: str | None = None, namespaced: bool = True
             ) -> list[dict[str, Any]]:
        ns = self.ns if namespaced else None
        q = [("limit", str(LIST_LIMIT))] + ([("labelSelector", selector)] if selector else [])
        doc = self.ins.kube.get(api_path(group, "v1", plural, ns), Op("list", plural, group, ns), q)
        note = f"{plural}: more than {LIST_LIMIT}; diagnosed the first {LIST_LIMIT}"
        if (doc.get("metadata") or {}).get("continue") and note not in self.notes:
            self.notes.append(note)
        return list(doc.get("items") or [])

    def owned(self, group: str, plural: str, selector: str, owners: set[str]) -> list[dict[str, Any]]:
        """The objects of a kind controlled by one of `owners`: from the namespace-wide list when
        one was read (a namespace diagnosis lists each kind once), else narrowed by the selector."""
        if (group, plural) in self.full_lists:
            items = self.full_lists[(group, plural)]
        else:
            items = self.optional(plural, lambda: self.list(group, plural, selector), []) if selector else []
        return [i for i in items if _controller_uid(i) in owners]

    def events(self) -> list[dict[str, Any]]:
        """The namespace's Warning events, newest first (read once)."""
        if self._events is None:
            items: list[dict[str, Any]] = []

            def read() -> None:
                cont = None
                for _ in range(EVENT_PAGES):
                    q = [("fieldSelector", "type=Warning"), ("limit", str(LIST_LIMIT))]
                    if cont:
                        q.append(("continue", cont))
                    doc = self.ins.kube.get(f"/api/v1/namespaces/{self.ns}/events",
                                            Op("list", "events", "", self.ns), q)
                    items.extend(doc.get("items") or [])
                    cont = (doc.get("metadata") or {}).get("continue")
                    if not cont:
                        break

            self.optional("events", read, None)
            self._events = sorted(items, key=event_time, reverse=True)
        return self._events

    def events_of(self, obj: dict[str, Any], reasons: Iterable[str] | None = None) -> list[dict[str, Any]]:
        uid, name, kind = _uid(obj), _name(obj), obj.get("kind")
        wanted = set(reasons) if reasons is not None else None
        out = []
        for e in self.events():
            io = e.get("involvedObject") or {}
            if not (io.get("uid") == uid or (not io.get("uid") and io.get("name") == name and io.get("kind") == kind)):
                continue
            if wanted is None or e.get("reason") in wanted:
                out.append(e)
        return out

    def use(self, event: dict[str, Any]) -> str:
        """An event's message, marked as shown (it is not repeated among the leftover warnings)."""
        self.used_events.add(_uid(event))
        count = event.get("count") or (event.get("series") or {}).get("count") or 1
        seen = f" (x{count}, last {age(event_time(event))} ago)" if count > 1 else f" ({age(event_time(event))} ago)"
        return _clip(str(event.get("message", ""))) + seen

    def configmap(self, name: str) -> dict[str, Any] | None:
        """The ConfigMap's keys (never its values), or None when it does not exist."""
        if name not in self._configmaps:
            def read() -> dict[str, Any] | None:
                try:
                    cm = self.get("", "configmaps", name)
                except InspectorError as exc:
                    if exc.status == 404:
                        return None
                    raise
                return {"keys": set(cm.get("data") or {}) | set(cm.get("binaryData") or {})}

            self._configmaps[name] = self.optional("configmaps", read, {"keys": None})
        return self._configmaps[name]

    def claim(self, name: str) -> dict[str, Any] | None:
        if name not in self._claims:
            def read() -> dict[str, Any] | None:
                try:
                    return self.get("", "persistentvolumeclaims", name)
                except InspectorError as exc:
                    if exc.status == 404:
                        return None
                    raise

            self._claims[name] = self.optional("persistentvolumeclaims", read, {"unknown": True})
        return self._claims[name]

    def nodes(self) -> dict[str, dict[str, Any]]:
        if self._nodes is None:
            items = self.optional("nodes", lambda: self.list("", "nodes", namespaced=False), [])
            self._nodes = {_name(n): n for n in items}
        return self._nodes

    def logs(self, pod: dict[str, Any], container: str, previous: bool) -> list[str] | str:
        if self.log_lines == 0:
            return "not read (log_lines=0)"
        if self._logs_read >= MAX_LOG_READS:
            return f"not read (at most {MAX_LOG_READS} containers' logs per call; diagnose the pod itself)"
        self._logs_read += 1
        q = [("container", container), ("tailLines", str(self.log_lines)), ("limitBytes", str(LOG_BYTES))]
        if previous:
            q.append(("previous", "true"))
        name = _name(pod)
        try:
            text = self.ins.kube.get_text(api_path("", "v1", "pods", self.ns, name, "log"),
                                          Op("get", "pods", "", self.ns, name, "log"), q)
        except InspectorError as exc:
            return f"not readable: {exc}"
        # scrubbed as one text before it is cut into lines: a PEM block spans lines, and each line
        # alone would not look like one (the renderer scrubs each line again at its exit)
        return scrub_text(text).splitlines()[-self.log_lines:]

    # -- finding --

    def add(self, finding: Finding) -> None:
        key = (finding.obj, finding.reason, finding.container or finding.message)
        if key not in self._seen:
            self._seen.add(key)
            self.findings.append(finding)

    def ranked(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: f.rank)  # stable: discovery order within a rank


# ---- pods ---------------------------------------------------------------------------------


def _probe_events(d: Diagnosis, pod: dict[str, Any], container: str) -> list[dict[str, Any]]:
    out = []
    for e in d.events_of(pod, ("Unhealthy",)):
        path = str((e.get("involvedObject") or {}).get("fieldPath", ""))
        if not path or f"{{{container}}}" in path:
            out.append(e)
    return out


def _termination(t: dict[str, Any]) -> str:
    parts = [str(t.get("reason") or "Terminated")]
    if t.get("exitCode") is not None:
        parts.append(f"exit code {t['exitCode']}")
    if t.get("signal"):
        parts.append(f"signal {t['signal']}")
    text = ", ".join(parts)
    if t.get("finishedAt"):
        text += f", {age(t['finishedAt'])} ago"
    if t.get("message"):
        text += f": {t['message']}"
    return text


def _limit(spec: dict[str, Any], container: str, resource: str) -> str | None:
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == container:
            return ((c.get("resources") or {}).get("limits") or {}).get(resource)
    return None


def _container_findings(d: Diagnosis, pod: dict[str, Any], status: dict[str, Any]) -> None:
    obj = _label(pod, "Pod")
    spec = pod.get("spec") or {}
    cname = str(status.get("name"))
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    restarts = int(status.get("restartCount") or 0)
    wreason = str(waiting.get("reason") or "")
    image = status.get("image") or next((c.get("image") for c in spec.get("containers") or []
                                         if c.get("name") == cname), None)
    if terminated.get("reason") == "OOMKilled" or last.get("reason") == "OOMKilled":
        t = terminated if terminated.get("reason") == "OOMKilled" else last
        limit = _limit(spec, cname, "memory")
        msg = (f"killed for exceeding its memory limit ({_termination(t)}); memory limit "
               f"{limit or 'not set (the node ran out)'}; {restarts} restarts")
        if wreason:
            msg += f"; now {wreason}"
        d.add(Finding(Rank.OOM_KILLED, obj, "OOMKilled", msg, cname,
                      _as_lines(d.logs(pod, cname, previous=restarts > 0 and not terminated)),
                      {"memoryLimit": limit} if limit else {}))
        return
    if wreason in IMAGE_PULL:
        why = str(waiting.get("message") or wreason)
        pulls = [e for e in d.events_of(pod, ("Failed", "ErrImagePull", "BackOff"))
                 if "image" in str(e.get("message", "")).lower() or "pull" in str(e.get("message", "")).lower()]
        # the registry's answer ("Failed to pull ...: not found") says why; a BackOff only that it waits
        pulls.sort(key=lambda e: e.get("reason") == "BackOff")
        if pulls:  # the kubelet's own words ("Back-off pulling image X") then add nothing
            why = d.use(pulls[0])
            for e in pulls[1:]:
                d.use(e)
        d.add(Finding(Rank.IMAGE_PULL, obj, wreason, f"image {image!r} cannot be pulled: {why}", cname))
        return
    if wreason in CONTAINER_CONFIG:
        d.add(Finding(Rank.CONTAINER_CONFIG, obj, wreason, str(waiting.get("message") or wreason), cname))
        return
    if wreason == "CrashLoopBackOff" or (terminated and terminated.get("exitCode") not in (0, None)):
        t = last or terminated
        msg = f"{restarts} restarts; last termination: {_termination(t) if t else 'unknown'}"
        if wreason:
            msg = f"back-off restarting the container; {msg}"
        d.add(Finding(Rank.CRASH_LOOP, obj, "CrashLoopBackOff" if wreason else "ContainerFailed", msg, cname,
                      _as_lines(d.logs(pod, cname, previous=bool(last) and not terminated)),
                      {"exitCode": t.get("exitCode")} if t else {}))
        for e in d.events_of(pod, ("BackOff",)):
            d.use(e)
        return
    probes = _probe_events(d, pod, cname)
    if probes:
        kind = "Liveness" if "liveness" in str(probes[0].get("message", "")).lower() else "Readiness"
        d.add(Finding(Rank.PROBE_FAILING, obj, f"{kind}ProbeFailed", d.use(probes[0]), cname))
        for e in probes[1:]:
            d.use(e)
        return
    if state.get("running") and status.get("ready") is False:
        probe = next((c.get("readinessProbe") for c in spec.get("containers") or [] if c.get("name") == cname), None)
        why = "its readiness probe has not passed" if probe else "it has not reported ready"
        d.add(Finding(Rank.NOT_READY, obj, "ContainerNotReady", f"running but not ready: {why}", cname))
    elif wreason:
        d.add(Finding(Rank.NOT_READY, obj, wreason, str(waiting.get("message") or "waiting"), cname))
    if restarts and last and not wreason:
        d.add(Finding(Rank.RESTARTS, obj, "Restarted", f"{restarts} restarts; last termination: {_termination(last)}",
                      cname))


def _as_lines(logs: list[str] | str) -> list[str]:
    return logs if isinstance(logs, list) else [f"(logs {logs})"]


_SECRET_MISSING = re.compile(r'secrets? "([^"]{1,253})" not found')
_SECRET_KEY = re.compile(r"couldn't find key (\S{1,253}) in Secret [^/\s]{1,253}/(\S{1,253})")
_CM_MISSING = re.compile(r'configmaps? "([^"]{1,253})" not found')
_CLAIM_MISSING = re.compile(r'persistentvolumeclaims? "([^"]{1,253})" not found')


def _secret_findings(d: Diagnosis, pod: dict[str, Any], messages: list[tuple[str, str | None]]) -> None:
    """Secrets are never read: what the kubelet said about a missing one is the evidence."""
    obj = _label(pod, "Pod")
    for message, container in messages:
        for m in _SECRET_KEY.finditer(message):
            d.add(Finding(Rank.MISSING_REFERENCE, obj, "MissingSecretKey",
                          f'Secret "{m.group(2).rstrip(".,")}" has no key "{m.group(1)}" (as the kubelet reports)',
                          container, detail={"secretName": m.group(2).rstrip(".,")}))
        for m in _SECRET_MISSING.finditer(message):
            d.add(Finding(Rank.MISSING_REFERENCE, obj, "MissingSecret",
                          f'Secret "{m.group(1)}" does not exist (as the kubelet reports)', container,
                          detail={"secretName": m.group(1)}))


def _reference_findings(d: Diagnosis, owner: str, spec: dict[str, Any]) -> None:
    """ConfigMaps, their keys and claims the pod spec needs (optional references excluded)."""
    needs_cm: dict[str, list[tuple[str | None, str | None]]] = {}  # name -> [(container, key)]
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    for c in containers:
        cname = c.get("name")
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
            if ref and not ref.get("optional"):
                needs_cm.setdefault(ref.get("name", ""), []).append((cname, ref.get("key")))
        for src in c.get("envFrom") or []:
            ref = src.get("configMapRef")
            if ref and not ref.get("optional"):
                needs_cm.setdefault(ref.get("name", ""), []).append((cname, None))
    claims: list[str] = []
    for v in spec.get("volumes") or []:
        sources = [v.get("configMap")] if v.get("configMap") else []
        sources += [s.get("configMap") for s in (v.get("projected") or {}).get("sources") or [] if s.get("configMap")]
        for ref in sources:
            if ref.get("optional"):
                continue
            keys = [i.get("key") for i in ref.get("items") or []] or [None]
            for key in keys:
                needs_cm.setdefault(ref.get("name", ""), []).append((None, key))
        if v.get("persistentVolumeClaim"):
            claims.append(v["persistentVolumeClaim"].get("claimName", ""))
    for name, uses in needs_cm.items():
        if not name:
            continue
        cm = d.configmap(name)
        if cm is None:
            users = sorted({c for c, _ in uses if c})
            d.add(Finding(Rank.MISSING_REFERENCE, owner, "MissingConfigMap",
                          f'ConfigMap "{name}" does not exist' + (f" (used by {', '.join(users)})" if users else
                                                                   " (mounted as a volume)"),
                          detail={"configMapName": name}))
            continue
        if cm.get("keys") is None:
            continue  # not readable: noted once already
        for container, key in uses:
            if key and key not in cm["keys"]:
                d.add(Finding(Rank.MISSING_REFERENCE, owner, "MissingConfigMapKey",
                              f'ConfigMap "{name}" has no key "{key}"' + (f" (referenced by container {container})"
                                                                          if container else " (a volume item)"),
                              container, detail={"configMapName": name, "missingKey": key}))
    for name in claims:
        if not name:
            continue
        pvc = d.claim(name)
        if pvc is None:
            d.add(Finding(Rank.MISSING_REFERENCE, owner, "MissingPersistentVolumeClaim",
                          f'PersistentVolumeClaim "{name}" does not exist; the pod cannot be scheduled until it does',
                          detail={"claimName": name}))
        elif (pvc.get("status") or {}).get("phase") == "Pending":
            events = d.events_of(pvc)
            why = f"; event: {d.use(events[0])}" if events else ""
            sc = (pvc.get("spec") or {}).get("storageClassName")
            d.add(Finding(Rank.CLAIM_UNBOUND, f"PersistentVolumeClaim/{name}", "ClaimPending",
                          f"not bound to a volume (storage class {sc or '<default>'}){why}"))
            d.scope.add(_uid(pvc))


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t.get("key") == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _node_findings(d: Diagnosis, pod: dict[str, Any], pending: bool) -> None:
    nodes = d.nodes()
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name and node_name in nodes:
        node = nodes[node_name]
        conds = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
        ready = conds.get("Ready") or {}
        if ready.get("status") != "True":
            d.add(Finding(Rank.NODE_NOT_READY, f"Node/{node_name}", "NodeNotReady",
                          f"Ready={ready.get('status', 'Unknown')}: {ready.get('message') or ready.get('reason') or 'no report'}"
                          f"; hosts pod {_name(pod)}"))
        for t in NODE_PRESSURE:
            c = conds.get(t) or {}
            if c.get("status") == "True":
                d.add(Finding(Rank.NODE_PRESSURE, f"Node/{node_name}", t, c.get("message") or c.get("reason") or t))
    if pending and not node_name and nodes:
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        blocked: dict[str, int] = {}
        cordoned = 0
        for n in nodes.values():
            if (n.get("spec") or {}).get("unschedulable"):
                cordoned += 1
            for taint in (n.get("spec") or {}).get("taints") or []:
                if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(taint, tolerations):
                    label = f"{taint.get('key')}{'=' + taint['value'] if taint.get('value') else ''}:{taint.get('effect')}"
                    blocked[label] = blocked.get(label, 0) + 1
        if blocked:
            parts = ", ".join(f"{k} on {v} node(s)" for k, v in sorted(blocked.items()))
            d.add(Finding(Rank.TAINTS, _label(pod, "Pod"), "UntoleratedTaints",
                          f"of {len(nodes)} nodes, taints the pod does not tolerate: {parts}"))
        if cordoned:
            d.add(Finding(Rank.TAINTS, _label(pod, "Pod"), "NodesCordoned",
                          f"{cordoned} of {len(nodes)} nodes are cordoned (unschedulable)"))


def diagnose_pod(d: Diagnosis, pod: dict[str, Any]) -> None:
    d.scope.add(_uid(pod))
    obj = _label(pod, "Pod")
    spec, st = pod.get("spec") or {}, pod.get("status") or {}
    phase = st.get("phase") or "Pending"
    conds = {c.get("type"): c for c in st.get("conditions") or []}
    _reference_findings(d, obj, spec)
    messages: list[tuple[str, str | None]] = []
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        w = (cs.get("state") or {}).get("waiting") or {}
        if w.get("message"):
            messages.append((str(w["message"]), cs.get("name")))
    for e in d.events_of(pod, ("FailedMount", "Failed", "FailedAttachVolume")):
        messages.append((str(e.get("message", "")), None))
        if _SECRET_MISSING.search(str(e.get("message", ""))) or _SECRET_KEY.search(str(e.get("message", ""))):
            d.use(e)
    _secret_findings(d, pod, messages)
    scheduled = conds.get("PodScheduled") or {}
    pending = phase == "Pending" and not spec.get("nodeName")
    if pending:
        failed = d.events_of(pod, ("FailedScheduling",))
        msg = str(scheduled.get("message") or "")
        if failed:
            said = d.use(failed[0])
            msg = said if not msg or said.startswith(_clip(msg)) else f"{msg}; event: {said}"
        for e in failed[1:]:
            d.use(e)
        if scheduled.get("status") == "False" or failed:
            d.add(Finding(Rank.UNSCHEDULABLE, obj, str(scheduled.get("reason") or "FailedScheduling"),
                          msg or "the scheduler cannot place the pod"))
        else:
            d.add(Finding(Rank.NOT_READY, obj, "Pending", "not scheduled yet and no scheduler report"))
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        before = len(d.findings)
        _container_findings(d, pod, cs)
        if len(d.findings) > before:  # explained: the kubelet's events about it say nothing new
            for e in d.events_of(pod, ("Failed", "BackOff")):
                if f"{{{cs.get('name')}}}" in str((e.get("involvedObject") or {}).get("fieldPath", "")):
                    d.use(e)
    if phase == "Failed" and not any(f.obj == obj and f.container for f in d.findings):
        d.add(Finding(Rank.CRASH_LOOP, obj, str(st.get("reason") or "PodFailed"),
                      str(st.get("message") or "the pod failed")))
    d.optional("nodes", lambda: _node_findings(d, pod, pending), None)


# ---- workloads ---------------------------------------------------------------------------


def _refusal(message: str) -> str:
    """What refused a controller's pod: a ResourceQuota, a LimitRange, or something else (admission)."""
    low = message.lower()
    if "exceeded quota" in low or "failed quota" in low or "must specify limits" in low:
        return "QuotaExceeded"
    if "limitrange" in low or re.search(r"(maximum|minimum) \S+ usage per (container|pod)", low):
        return "LimitRangeRefused"
    return "FailedCreate"


def _create_refusals(d: Diagnosis, owner: dict[str, Any], kind: str) -> None:
    """FailedCreate: quota, LimitRange or admission refused the controller's pods (events first, then
    the ReplicaFailure condition when no event is left to say it)."""
    label = _label(owner, kind)
    events = d.events_of(owner, ("FailedCreate",))
    for e in events:
        d.add(Finding(Rank.CREATE_REFUSED, label, _refusal(str(e.get("message", ""))), d.use(e)))
    if events:
        return
    for c in (owner.get("status") or {}).get("conditions") or []:
        if c.get("type") == "ReplicaFailure" and c.get("status") == "True":
            msg = str(c.get("message") or c.get("reason") or "")
            d.add(Finding(Rank.CREATE_REFUSED, label, _refusal(msg), msg))


def _deployment(d: Diagnosis, dep: dict[str, Any]) -> list[dict[str, Any]]:
    """Findings on the Deployment and its ReplicaSets; returns its pods."""
    obj = _label(dep, "Deployment")
    spec, st, meta = dep.get("spec") or {}, dep.get("status") or {}, dep.get("metadata") or {}
    desired = spec.get("replicas", 1)
    for c in st.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            d.add(Finding(Rank.ROLLOUT_STUCK, obj, "ProgressDeadlineExceeded",
                          f"{c.get('message') or 'rollout stuck'} (progressDeadlineSeconds "
                          f"{spec.get('progressDeadlineSeconds', 600)})"))
    available = st.get("availableReplicas", 0)
    if desired and available < desired:
        d.add(Finding(Rank.UNAVAILABLE, obj, "ReplicasUnavailable",
                      f"{desired - available} of {desired} replicas unavailable (updated {st.get('updatedReplicas', 0)}, "
                      f"ready {st.get('readyReplicas', 0)}, revision "
                      f"{(meta.get('annotations') or {}).get('deployment.kubernetes.io/revision', '?')})"))
    selector = label_selector(spec.get("selector"))
    sets = d.owned("apps", "replicasets", selector, {_uid(dep)})
    uids = {_uid(rs) for rs in sets}
    for rs in sets:
        d.scope.add(_uid(rs))
        _create_refusals(d, rs, "ReplicaSet")
    if not any(f.rank == Rank.CREATE_REFUSED and f.obj.startswith("ReplicaSet/") for f in d.findings):
        _create_refusals(d, dep, "Deployment")  # its ReplicaFailure mirrors what a ReplicaSet said
    return d.owned("", "pods", selector, uids)


def _other_workload(d: Diagnosis, w: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    obj = _label(w, kind)
    spec, st = w.get("spec") or {}, w.get("status") or {}
    if kind == "StatefulSet":
        desired, ready = spec.get("replicas", 1), st.get("readyReplicas", 0)
        if desired and ready < desired:
            d.add(Finding(Rank.UNAVAILABLE, obj, "ReplicasUnavailable", f"{desired - ready} of {desired} replicas not ready"
                          f" (current {st.get('currentReplicas', 0)}, updated {st.get('updatedReplicas', 0)})"))
        if st.get("updateRevision") and st.get("updateRevision") != st.get("currentRevision"):
            d.add(Finding(Rank.ROLLOUT_IN_PROGRESS, obj, "RolloutInProgress",
                          f"{st.get('updatedReplicas', 0)} of {desired} pods at revision {st.get('updateRevision')}"))
    elif kind == "DaemonSet":
        desired, ready = st.get("desiredNumberScheduled", 0), st.get("numberReady", 0)
        if ready < desired:
            d.add(Finding(Rank.UNAVAILABLE, obj, "PodsUnavailable", f"{desired - ready} of {desired} pods not ready"
                          f" ({st.get('numberUnavailable', 0)} unavailable, {st.get('numberMisscheduled', 0)} misscheduled)"))
        if st.get("updatedNumberScheduled", desired) < desired:
            d.add(Finding(Rank.ROLLOUT_IN_PROGRESS, obj, "RolloutInProgress",
                          f"{st.get('updatedNumberScheduled', 0)} of {desired} pods updated"))
    elif kind == "Job":
        for c in st.get("conditions") or []:
            if c.get("type") == "Failed" and c.get("status") == "True":
                d.add(Finding(Rank.JOB_FAILED, obj, str(c.get("reason") or "JobFailed"),
                              f"{c.get('message') or 'the job failed'} ({st.get('failed', 0)} failed pods, "
                              f"backoffLimit {spec.get('backoffLimit', 6)})"))
    _create_refusals(d, w, kind)
    return d.owned("", "pods", label_selector(spec.get("selector")), {_uid(w)})


def diagnose_workload(d: Diagnosis, w: dict[str, Any], kind: str) -> None:
    d.scope.add(_uid(w))
    pods = _deployment(d, w) if kind == "Deployment" else _other_workload(d, w, kind)
    template = ((w.get("spec") or {}).get("template") or {}).get("spec") or {}
    if not pods:  # nothing to look at but the template: check what it refers to
        _reference_findings(d, _label(w, kind), template)
    for p in pods:
        diagnose_pod(d, p)


def _leftover_events(d: Diagnosis, namespace_wide: bool) -> None:
    shown: set[tuple[str, str]] = set()
    for e in d.events():
        if len(shown) >= MAX_EVENT_FINDINGS:
            break
        io = e.get("involvedObject") or {}
        if _uid(e) in d.used_events or not (namespace_wide or io.get("uid") in d.scope):
            continue
        key = (f"{io.get('kind')}/{io.get('name')}", str(e.get("reason")))
        if key in shown:
            continue
        shown.add(key)
        d.add(Finding(Rank.WARNING_EVENT, key[0], key[1], d.use(e)))


# ---- the tool ----------------------------------------------------------------------------


def diagnose(ins: Inspector, resource: str | None = None, name: str | None = None, namespace: str | None = None,
             log_lines: int = 20, max_findings: int = 20) -> Document:
    """Why a workload (Deployment, StatefulSet, DaemonSet, Job, Pod) or a whole namespace is unhealthy."""
    if not 0 <= log_lines <= MAX_LOG_LINES:
        raise InspectorError(f"log_lines must be between 0 and {MAX_LOG_LINES}")
    if not 1 <= max_findings <= MAX_FINDINGS:
        raise InspectorError(f"max_findings must be between 1 and {MAX_FINDINGS}")
    if name and "/" in name and not resource:
        resource, _, name = name.partition("/")
    kind = None
    if resource:
        r = ins.discovery.resolve(resource)
        if r.kind == "Namespace" and r.group == "":
            namespace, name = (name or namespace), None
        elif r.kind == "Pod" and r.group == "":
            kind = "Pod"
        elif r.kind in WORKLOAD_KINDS and r.group == WORKLOAD_KINDS[r.kind].group:
            kind = r.kind
        else:
            raise InspectorError(f"diagnose takes a Deployment, StatefulSet, DaemonSet, Job, Pod or Namespace, "
                                 f"not {r.kind}")
        if kind and not name:
            raise InspectorError(f"name the {kind} to diagnose (or omit resource to diagnose the namespace)")
    elif name:
        raise InspectorError("give resource with name (e.g. resource=deployment, name=web), or neither for the "
                             "whole namespace")
    ns = ins.namespace_for(None, namespace)
    assert ns is not None
    d = Diagnosis(ins, ns, log_lines)
    workload = None
    if kind == "Pod":
        assert name
        target = f"pod/{name}"
        diagnose_pod(d, d.get("", "pods", name))
    elif kind:
        assert name
        k = WORKLOAD_KINDS[kind]
        target = f"{kind.lower()}/{name}"
        w = d.get(k.group, k.plural, name)
        w.setdefault("kind", kind)
        workload = _label(w, kind)
        diagnose_workload(d, w, kind)
    else:
        target = f"namespace/{ns}"
        _namespace(d)
    _leftover_events(d, namespace_wide=kind is None)
    ranked = d.ranked()
    if workload and any(f.rank < Rank.ROLLOUT_STUCK for f in ranked):
        # the workload's own "N replicas unavailable" is the symptom the caller came with; an error
        # finding says why, so it goes (a stuck rollout, with no error below it, keeps it)
        ranked = [f for f in ranked if not (f.rank == Rank.UNAVAILABLE and f.obj == workload)]
    out: dict[str, Any] = {"target": target, "namespace": ns}
    if ranked:
        out["rootCause"] = ranked[0].line()
        out["findings"] = [f.as_dict() for f in ranked[:max_findings]]
        if len(ranked) > max_findings:
            d.notes.append(f"showing the top {max_findings} of {len(ranked)} findings; raise max_findings for more")
    else:
        out["rootCause"] = None
        out["findings"] = []
        d.notes.append("no problems found: every replica is available, no container is failing and there are "
                       "no recent warning events")
    return Document(out, title=f"Diagnosis of {target}", notes=d.notes, structured=False)  # read, not parsed: once


def _namespace(d: Diagnosis) -> None:
    """Every workload and pod of the namespace; healthy ones cost one list entry each."""
    seen_pods: set[str] = set()
    for group, plural in (("", "pods"), ("apps", "replicasets")):
        d.full_lists[(group, plural)] = d.optional(plural, lambda g=group, p=plural: d.list(g, p), [])
    for kind, k in WORKLOAD_KINDS.items():
        for w in d.optional(k.plural, lambda k=k: d.list(k.group, k.plural), []):
            w.setdefault("kind", kind)
            d.scope.add(_uid(w))
            before = len(d.findings)
            pods = _deployment(d, w) if kind == "Deployment" else _other_workload(d, w, kind)
            if len(d.findings) == before and all(_healthy(p) for p in pods):
                seen_pods.update(_uid(p) for p in pods)
                continue
            if not pods:
                _reference_findings(d, _label(w, kind), ((w.get("spec") or {}).get("template") or {}).get("spec") or {})
            for p in pods:
                seen_pods.add(_uid(p))
                diagnose_pod(d, p)
    for p in d.full_lists[("", "pods")]:
        if _uid(p) not in seen_pods and not _healthy(p):
            diagnose_pod(d, p)


def _healthy(pod: dict[str, Any]) -> bool:
    st = pod.get("status") or {}
    if st.get("phase") == "Succeeded":
        return True
    statuses = st.get("containerStatuses") or []
    return (st.get("phase") == "Running" and bool(statuses)
            and all(s.get("ready") and not s.get("restartCount") for s in statuses))
