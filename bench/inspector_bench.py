"""EKS inspector benchmark: the same questions answered completely, and root causes found, by kubectl and MCP servers.

One lab kube-apiserver holds PODS pods in NAMESPACES namespaces plus the broken workloads of
mcp_tailnet_lab.broken_workloads (image pull error, crash loop, OOMKilled, pending on resources
and on a missing PVC, failing readiness, missing ConfigMap key, stuck rollout, quota, Job OOM).
Two parts, each comparing the same work:

1. Complete answers: list every pod (all pages), get one pod (as a table row and as the full
   object), describe one pod (the object and its events). kubectl runs as a fresh process
   (its start is measured apart) and warm: the same HTTP requests it makes (the Table list in
   pages of 500, the pod, its events) over one kept-alive HTTPS connection. The MCP servers
   answer in one warm session each.
2. Troubleshooting: per server a scripted agent (bench/inspector_plans.py) makes fixed calls
   until the root cause is in its answers, which is CHECKED; calls, bytes and time are counted.

Bytes: kubectl's stdout; the warm kubectl equivalent's response bodies; for MCP servers the
tool result as the client receives it (JSON: text, plus structuredContent where sent). The table goes into
its section of docs/benchmarks.md.

    .venv/bin/python bench/inspector_bench.py [--pods 10000] [--namespaces 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import kubernetes.client

from inspector_plans import TARGETS, missing_evidence, plan
from inspector_servers import Peer, Session, label, session
from mcp_tailnet_lab import broken_workloads
from mcp_tailnet_lab.cluster import LocalCluster
from mcp_tailnet_lab.fake_kubelet import node_with_kubelet, running_kubelet

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- inspector-bench:start -->", "<!-- inspector-bench:end -->"
PEERS = (Peer.KUBERNETES_MCP, Peer.EKS_MCP)
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
KUBECTL_CHUNK = 500  # kubectl get's default --chunk-size


class Question:
    LIST = "list every pod (all pages)"
    ROW = "get one pod: table row"
    OBJECT = "get one pod: full object"
    DESCRIBE = "describe one pod (object + events)"


QUESTIONS = (Question.LIST, Question.ROW, Question.OBJECT, Question.DESCRIBE)


# ---- the cluster's content -----------------------------------------------------------


def populate(cluster: LocalCluster, pods: int, namespaces: int) -> list[tuple[str, str]]:
    """Create the namespaces and pods through the API (8 writers); returns (ns, name) pairs."""
    per_ns = pods // namespaces
    targets = [(f"bench-{n:02d}", f"app-{n:02d}-{i:04d}") for n in range(namespaces) for i in range(per_ns)]
    with cluster.api_client() as api:
        core = kubernetes.client.CoreV1Api(api)
        for n in range(namespaces):
            core.create_namespace(kubernetes.client.V1Namespace(
                metadata=kubernetes.client.V1ObjectMeta(name=f"bench-{n:02d}")))

        def create(target: tuple[str, str]) -> None:
            ns, name = target
            created = core.create_namespaced_pod(ns, {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": name.rsplit("-", 1)[0], "tier": "web"},
                             "annotations": {"team": "payments", "revision": "42"}},
                "spec": {"containers": [{
                    "name": "app", "image": "registry.example/payments/web:1.27.3",
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": [{"name": "MODE", "value": "production"},
                            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                  "limits": {"cpu": "500m", "memory": "256Mi"}},
                }]},
            })
            # what a kubelet would report: pods in a real cluster carry status
            body = api.sanitize_for_serialization(created)
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            body["status"] = {
                "phase": "Running", "hostIP": "10.0.1.17", "podIP": "10.0.1.200", "qosClass": "Burstable",
                "podIPs": [{"ip": "10.0.1.200"}], "hostIPs": [{"ip": "10.0.1.17"}], "startTime": now,
                "conditions": [{"type": t, "status": "True", "lastTransitionTime": now} for t in
                               ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                "PodScheduled")],
                "containerStatuses": [{
                    "name": "app", "ready": True, "started": True, "restartCount": 0,
                    "image": "registry.example/payments/web:1.27.3",
                    "imageID": "registry.example/payments/web@sha256:" + "ab" * 32,
                    "containerID": "containerd://" + "cd" * 32,
                    "state": {"running": {"startedAt": now}},
                }],
            }
            core.replace_namespaced_pod_status(name, ns, body)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, targets))
    return targets


# ---- measurement ---------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    size: int
    calls: int = 1
    text: int = 0  # MCP only: the bytes of the text content alone (what a text-reading agent sees)


def median(samples: list[Sample]) -> Sample:
    return sorted(samples, key=lambda x: x.seconds)[len(samples) // 2]


def timed(fn: Callable[[], tuple[int, int]], repeat: int) -> Sample:
    """Median of `repeat` runs of fn() -> (bytes, calls)."""
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        size, calls = fn()
        samples.append(Sample(time.perf_counter() - t, size, calls))
    return median(samples)


def kubectl_cold(cluster: LocalCluster, pod: str, ns: str, repeat: int) -> tuple[dict[str, Sample], Sample]:
    """kubectl as a fresh process per question, and its process start alone (`kubectl version --client`)."""
    def run(*args: str) -> Callable[[], tuple[int, int]]:
        return lambda: (len(cluster.kubectl(*args, timeout=600).stdout.encode()), 1)

    answers = {
        Question.LIST: timed(run("get", "pods", "-A"), repeat),
        Question.ROW: timed(run("get", "pod", pod, "-n", ns), repeat),
        Question.OBJECT: timed(run("get", "pod", pod, "-n", ns, "-o", "yaml"), repeat),
        Question.DESCRIBE: timed(run("describe", "pod", pod, "-n", ns), repeat),
    }
    return answers, timed(run("version", "--client", "-o", "json"), repeat)


def kubectl_warm(cluster: LocalCluster, pod: str, ns: str, repeat: int) -> dict[str, Sample]:
    """The requests kubectl makes for each question, over one kept-alive HTTPS connection (no process start)."""
    with cluster.api_client() as api:
        pool, host = api.rest_client.pool_manager, api.configuration.host

        def get(path: str, accept: str = "application/json", **query: Any) -> bytes:
            url = f"{host}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
            r = pool.request("GET", url, headers={"Accept": accept}, preload_content=True)
            if r.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {r.status}")
            return r.data

        def list_all() -> tuple[int, int]:
            size, calls, token = 0, 0, ""
            for _ in range(100_000):
                body = get("/api/v1/pods", TABLE, limit=KUBECTL_CHUNK, **({"continue": token} if token else {}))
                size, calls = size + len(body), calls + 1
                token = json.loads(body).get("metadata", {}).get("continue") or ""
                if not token:
                    return size, calls
            raise RuntimeError("more than 100000 pages")

        pod_path = f"/api/v1/namespaces/{ns}/pods/{pod}"

        def describe() -> tuple[int, int]:
            events = get(f"/api/v1/namespaces/{ns}/events", fieldSelector=f"involvedObject.name={pod}")
            return len(get(pod_path)) + len(events), 2

        return {
            Question.LIST: timed(list_all, repeat),
            Question.ROW: timed(lambda: (len(get(pod_path, TABLE)), 1), repeat),
            Question.OBJECT: timed(lambda: (len(get(pod_path)), 1), repeat),
            Question.DESCRIBE: timed(describe, repeat),
        }


Calls = list[tuple[str, dict[str, Any]]]


def answers_plans(peer: Peer, pod: str, ns: str) -> dict[str, Calls | None]:
    """Per question, the calls that answer it completely with `peer`'s tools (None: it has no such answer)."""
    if peer is Peer.INSPECTOR:
        return {Question.LIST: None,  # walked page by page: see inspector_list_all
                Question.ROW: [("get", {"resource": "pods", "name": pod, "namespace": ns})],
                Question.OBJECT: [("get", {"resource": "pods", "name": pod, "namespace": ns, "output": "yaml"})],
                Question.DESCRIBE: [("describe", {"resource": "pod", "name": pod, "namespace": ns})]}
    if peer is Peer.KUBERNETES_MCP:
        events = ("events_list", {"namespace": ns, "fieldSelector": f"involvedObject.name={pod}"})
        return {Question.LIST: [("pods_list", {})],
                Question.ROW: [("pods_list_in_namespace", {"namespace": ns, "fieldSelector": f"metadata.name={pod}"})],
                Question.OBJECT: [("pods_get", {"name": pod, "namespace": ns})],
                Question.DESCRIBE: [("pods_get", {"name": pod, "namespace": ns}), events]}
    read = ("manage_k8s_resource", {"operation": "read", "kind": "Pod", "api_version": "v1", "name": pod,
                                    "namespace": ns})
    return {Question.LIST: [("list_k8s_resources", {"kind": "Pod", "api_version": "v1"})],
            Question.ROW: None,  # no table form
            Question.OBJECT: [read],
            Question.DESCRIBE: [read, ("get_k8s_events", {"kind": "Pod", "name": pod, "namespace": ns})]}


async def _walk(s: Session) -> None:
    """eks-inspector's list of every pod: one capped page per call, following the continue token."""
    token = None
    for _ in range(100_000):
        args: dict[str, Any] = {"resource": "pods", "all_namespaces": True}
        if token:
            args["continue_token"] = token
        token = ((await s.call("get", args)).structured_content or {}).get("continue")
        if not token:
            return
    raise RuntimeError("more than 100000 pages")


async def _timed_calls(s: Session, run: Callable[[], Any], repeat: int) -> Sample:
    """Median of `repeat` timed runs after one untimed warm-up run (discovery and connections warm)."""
    samples = []
    for i in range(repeat + 1):
        s.take()
        t = time.perf_counter()
        await run()
        seconds = time.perf_counter() - t
        calls = s.take()
        if i:
            samples.append(Sample(seconds, sum(c.wire_bytes for c in calls), len(calls),
                                  sum(len(c.text.encode()) for c in calls)))
    return median(samples)


@dataclass
class Trouble:
    calls: int
    size: int
    seconds: float
    missing: list[str]
    text: int = 0


async def measure_server(peer: Peer, cluster: LocalCluster, workdir: Path, pod: str, ns: str, broken_ns: str,
                         repeat: int, dump: Path | None) -> tuple[dict[str, Sample | None], dict[str, Trouble], int]:
    """Both parts against one server, in one warm session; also its peak RSS (KiB)."""
    async with session(peer, cluster.kubeconfig, workdir) as s:
        answers: dict[str, Sample | None] = {}
        for question, calls in answers_plans(peer, pod, ns).items():
            if question == Question.LIST and peer is Peer.INSPECTOR:
                answers[question] = await _timed_calls(s, lambda: _walk(s), repeat)
            elif calls is None:
                answers[question] = None
            else:
                async def run(calls: Calls = calls) -> None:
                    for tool, args in calls:
                        await s.call(tool, args)
                answers[question] = await _timed_calls(s, run, repeat)
        trouble: dict[str, Trouble] = {}
        for key in TARGETS:
            runs = []
            for i in range(repeat + 1):  # the first run warms up, untimed
                s.take()
                t = time.perf_counter()
                for tool, args in plan(peer, key, broken_ns):
                    await s.call(tool, args)
                seconds = time.perf_counter() - t
                calls_made = s.take()
                if i:
                    runs.append(Trouble(len(calls_made), sum(c.wire_bytes for c in calls_made), seconds,
                                        missing_evidence(key, [c.text for c in calls_made]),
                                        sum(len(c.text.encode()) for c in calls_made)))
                if dump:
                    out = dump / peer.name.lower()
                    out.mkdir(parents=True, exist_ok=True)
                    (out / f"{key}.txt").write_text("\n\n".join(f"## {c.tool}\n{c.text}" for c in calls_made))
                    (out / f"{key}.json").write_text("\n".join(c.wire for c in calls_made))
            trouble[key] = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
        return answers, trouble, s.peak_rss_kib


async def paired_list(cluster: LocalCluster, workdir: Path, repeat: int) -> list[tuple[float, float]]:
    """(kubectl, eks-inspector) seconds to list every pod, each pair timed back to back: on a shared
    machine the load moves between the columns above (measured minutes apart), not within a pair."""
    pairs = []
    async with session(Peer.INSPECTOR, cluster.kubeconfig, workdir) as s:
        await _walk(s)  # warm: discovery, connections
        for _ in range(repeat):
            t = time.perf_counter()
            await anyio.to_thread.run_sync(lambda: cluster.kubectl("get", "pods", "-A", timeout=600))
            cold = time.perf_counter() - t
            t = time.perf_counter()
            await _walk(s)
            pairs.append((cold, time.perf_counter() - t))
    return pairs


def build_broken(cluster: LocalCluster, node: str) -> str:
    ns = f"broken-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", ns)
    broken_workloads.build(cluster, ns, node)
    return ns


def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="inspector-bench-"))
    print("starting the lab API server ...", flush=True)
    cluster = LocalCluster.start()
    try:
        with running_kubelet(broken_workloads.container_log) as kubelet, node_with_kubelet(cluster, kubelet) as node:
            broken_ns = build_broken(cluster, node)
            t = time.perf_counter()
            targets = populate(cluster, args.pods, args.namespaces)
            print(f"created {len(targets)} pods in {args.namespaces} namespaces in {time.perf_counter() - t:.1f}s",
                  flush=True)
            ns, pod = targets[len(targets) // 2]
            cold, start = kubectl_cold(cluster, pod, ns, args.repeat)
            warm = kubectl_warm(cluster, pod, ns, args.repeat)
            results: dict[Peer, tuple[dict[str, Sample | None], dict[str, Trouble], int]] = {}
            for peer in (Peer.INSPECTOR, *PEERS):
                print(f"measuring {label(peer)} ...", flush=True)
                results[peer] = anyio.run(measure_server, peer, cluster, workdir, pod, ns, broken_ns, args.repeat,
                                          args.dump)
            print("pairing list runs ...", flush=True)
            pairs = anyio.run(paired_list, cluster, workdir, args.repeat)
        return report(args, cluster.version, cold, start, warm, results, pairs)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ---- report --------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 2**20:.2f} MiB"


def _fmt(s: Sample | None) -> str:
    if s is None:
        return "—"
    calls = f" ({s.calls} calls)" if s.calls > 1 else ""
    return f"{s.seconds * 1000:.0f} ms / {_size(s.size)}{calls}"


def _trouble(t: Trouble) -> str:
    mark = "✓" if not t.missing else "✗ missing " + ", ".join(f"`{m}`" for m in t.missing)
    return f"{t.calls} / {_size(t.size)} / {t.seconds * 1000:.0f} ms {mark}"


def totals(trouble: dict[str, Trouble]) -> Trouble:
    return Trouble(sum(t.calls for t in trouble.values()), sum(t.size for t in trouble.values()),
                   sum(t.seconds for t in trouble.values()), [m for t in trouble.values() for m in t.missing],
                   sum(t.text for t in trouble.values()))


def report(args: argparse.Namespace, version: str, cold: dict[str, Sample], start: Sample,
           warm: dict[str, Sample], results: dict[Peer, tuple[dict[str, Sample | None], dict[str, Trouble], int]],
           pairs: list[tuple[float, float]]) -> str:
    servers = list(results)
    load = " / ".join(f"{x:.2f}" for x in _loadavg())
    lines = [
        "## EKS inspector",
        "",
        f"`.venv/bin/python bench/inspector_bench.py --pods {args.pods} --namespaces {args.namespaces} "
        f"--repeat {args.repeat}` (defaults: 10,000 pods, 50 namespaces, 5 runs): one kube-apiserver {version} (lab, etcd on local disk) holding {args.pods:,} pods in "
        f"{args.namespaces} namespaces and the {len(TARGETS)} broken workloads of "
        "`mcp_tailnet_lab.broken_workloads` (statuses written through the status subresource, events as the "
        "controllers write them, the crash loop's previous log served by the lab's fake kubelet); median of "
        f"{args.repeat} runs; 2-core machine shared with other work (load average at the end: {load}). "
        "Every MCP server answers in one warm client session (`mcp` SDK); eks-inspector and "
        "kubernetes-mcp-server over Streamable HTTP on loopback, eks-mcp-server over stdio (its only transport), "
        "in `--auth-mode kubeconfig` (see below). Bytes: kubectl's stdout; the warm kubectl equivalent's "
        "response bodies; an MCP server's tool results as the client receives them (JSON: the text content "
        "plus structuredContent where the server sends it).",
        "",
        "### The same question, answered completely",
        "",
        "| question | kubectl (fresh process) | kubectl's requests, warm | "
        + " | ".join(label(p) for p in servers) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in servers) + " |",
    ]
    for q in QUESTIONS:
        lines.append(f"| {q} | {_fmt(cold[q])} | {_fmt(warm[q])} | "
                     + " | ".join(_fmt(results[p][0][q]) for p in servers) + " |")
    lines += [
        "",
        f"- kubectl's process start alone (`kubectl version --client`): **{start.seconds * 1000:.0f} ms**; each "
        "fresh-process figure includes it. The warm column makes kubectl's own requests (Table in pages of "
        f"{KUBECTL_CHUNK}, the pod, its events) on one kept-alive HTTPS connection and renders nothing.",
        "- list: eks-inspector walks its continue tokens (one capped page per call); kubernetes-mcp-server "
        "answers every pod in one call; eks-mcp-server's `list_k8s_resources` returns names, labels and "
        "annotations only (no status), so it answers less than the others.",
        "- table row: kubernetes-mcp-server's `pods_list_in_namespace` with `metadata.name=`; eks-mcp-server has "
        "no table form. Full object: `get -o yaml`, `pods_get` (YAML), `manage_k8s_resource read` (JSON). "
        "Describe: the peers have no describe tool; their answer is the object plus the pod's events (2 calls).",
        "",
        "### Troubleshooting: calls until the root cause is in hand",
        "",
        "Per server a scripted agent (`bench/inspector_plans.py`, fixed calls, no LLM) is told the broken "
        "workload and makes the calls a competent agent would with that server's tools; the root cause "
        "counts as found only when every pattern of `EVIDENCE` for the scenario occurs in the answers' text "
        "(✓). Cell: calls / bytes / wall time.",
        "",
        "| scenario | " + " | ".join(label(p) for p in servers) + " |",
        "| --- | " + " | ".join("---" for _ in servers) + " |",
    ]
    for key in TARGETS:
        lines.append(f"| {key} | " + " | ".join(_trouble(results[p][1][key]) for p in servers) + " |")
    tot = {p: totals(results[p][1]) for p in servers}
    lines.append("| **total** | " + " | ".join(
        f"**{t.calls} / {_size(t.size)} / {t.seconds * 1000:.0f} ms**" for t in tot.values()) + " |")
    ins = results[Peer.INSPECTOR]
    one_call = sum(1 for t in ins[1].values() if t.calls == 1 and not t.missing)
    found = [p for p in PEERS if p in tot and not tot[p].missing]
    best = min(found, key=lambda p: tot[p].size) if found else None
    lines += ["", "### Targets (issue 16 §3)", ""]
    lines.append(f"- Root cause of every scenario in ONE eks-inspector call: **{one_call} of {len(TARGETS)}** "
                 f"({'met' if one_call == len(TARGETS) else 'MISSED'}).")
    if best:
        ratio = tot[Peer.INSPECTOR].size / tot[best].size
        text_ratio = tot[Peer.INSPECTOR].text / tot[best].text
        lines.append(f"- Total bytes for the scenarios, eks-inspector vs the best peer that found every root cause "
                     f"({label(best)}): **{ratio:.2f}** as received (target ≤ 0.20: "
                     f"{'met' if ratio <= 0.2 else 'MISSED'}); counting the text content alone "
                     f"({_size(tot[Peer.INSPECTOR].text)} vs {_size(tot[best].text)}): {text_ratio:.2f}. eks-inspector's "
                     "`diagnose` answers once, as YAML text that parses to the diagnosis (no structuredContent "
                     "copy; tools/eks-inspector/README.md says what each tool sends); kubernetes-mcp-server adds "
                     "structuredContent to `resources_get` only, eks-mcp-server never.")
    else:
        lines.append("- No peer found every root cause: the bytes target has no comparison.")
    li = results[Peer.INSPECTOR][0][Question.LIST]
    assert li is not None
    ratios = sorted(ins_s / kubectl_s for kubectl_s, ins_s in pairs)
    paired = ratios[len(ratios) // 2]
    lines.append(f"- List every pod over all pages, eks-inspector vs a fresh kubectl process, timed back to back "
                 f"({len(pairs)} pairs; median of the per-pair ratios, each pair under the same load): "
                 f"**{paired:.2f}x** the time (target ≤ 1.00: {'met' if paired <= 1.0 else 'MISSED'}); pairs: "
                 + ", ".join(f"{i * 1000:.0f} / {k * 1000:.0f} ms" for k, i in pairs) + " (eks-inspector / kubectl).")
    for name, k in (("a fresh kubectl process", cold[Question.LIST]), ("kubectl's requests, warm", warm[Question.LIST])):
        r = li.seconds / k.seconds
        lines.append(f"- List every pod over all pages, eks-inspector vs {name}, from the table's columns (measured "
                     f"minutes apart): **{r:.2f}x** the time (target ≤ 1.00: {'met' if r <= 1.0 else 'MISSED'}).")
    lines.append("- Peak RSS during the runs: " + ", ".join(
        f"{label(p)} {results[p][2] / 1024:.0f} MiB" for p in servers if results[p][2]) + ".")
    lines += [
        "- eks-mcp-server runs in `--auth-mode kubeconfig` (its own option), reading the lab kubeconfig. Its "
        "default IAM mode cannot reach the lab, checked against moto in server mode: DescribeCluster there "
        "returns an endpoint moto makes up (`https://<random>.<region>.eks.amazonaws.com/`) and its own CA "
        "(CreateCluster takes neither), so the server's first Kubernetes call fails with a name resolution "
        "error; and the token it would then send, `k8s-aws-v1.` + a presigned STS GetCallerIdentity URL, is "
        "accepted only by an API server running the aws-iam-authenticator webhook: the lab's kube-apiserver "
        "answers it 401 Unauthorized. Its EKS/CloudWatch/IAM tools are not part of this comparison.",
    ]
    return "\n".join(lines) + "\n"


def _loadavg() -> tuple[float, float, float]:
    a, b, c = Path("/proc/loadavg").read_text().split()[:3]
    return float(a), float(b), float(c)


def write_doc(section: str) -> None:
    block = f"{START}\n{section}{END}\n"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END) + r"\n?", lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dump", type=Path, help="write every troubleshooting answer's text under this directory")
    parser.add_argument("--no-write", action="store_true", help="print the tables, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    section = run(args)
    print(section)
    if not args.no_write:
        write_doc(section)
        print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
