"""EKS inspector benchmark: kubectl vs eks-inspector vs a peer MCP server, one API server, one run.

The lab's real kube-apiserver is filled with PODS pods in NAMESPACES namespaces; then the
same three questions (list all pods, get one pod, describe one pod) are asked of
`kubectl`, of eks-inspector and of containers/kubernetes-mcp-server (the npm package's
prebuilt binary), both MCP servers over Streamable HTTP through the same SDK client.
Bytes are what the client receives for the answer (the CallToolResult as JSON; kubectl's
stdout). The table goes into its own section of docs/benchmarks.md.

    .venv/bin/python bench/inspector_bench.py [--pods 10000] [--namespaces 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import kubernetes.client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from mcp_tailnet_lab.cluster import LocalCluster
from mcp_tailnet_lab.paths import cache_dir

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- inspector-bench:start -->", "<!-- inspector-bench:end -->"
PEER_PACKAGE = "kubernetes-mcp-server-linux-amd64"
PEER_VERSION = "0.0.67"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


# ---- processes -----------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    peak_rss_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample_rss(self) -> None:
        """Peak resident set of the server (VmHWM) while a measurement runs."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def inspector(kubeconfig: Path, workdir: Path) -> Iterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSPECTOR_", "AWS_"))}
    env.update({"INSPECTOR_PORT": str(port), "INSPECTOR_KUBECONFIG": str(kubeconfig), "INSPECTOR_EKS_TOOLS": "off",
                "INSPECTOR_TRANSPORTS": "streamable-http", "INSPECTOR_LOG_LEVEL": "WARNING"})
    log = workdir / "inspector.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "eks_inspector"], env=env, stdout=out, stderr=out)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield Server("eks-inspector", f"http://127.0.0.1:{port}/mcp", proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def peer_binary() -> Path:
    """containers/kubernetes-mcp-server from its npm package (the binary ships inside it)."""
    root = cache_dir() / "bench" / f"kubernetes-mcp-server-{PEER_VERSION}"
    binary = root / "node_modules" / PEER_PACKAGE / "bin" / PEER_PACKAGE
    if not binary.exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(root),
                        f"{PEER_PACKAGE}@{PEER_VERSION}"], check=True)
    return binary


@contextlib.contextmanager
def peer(kubeconfig: Path, workdir: Path) -> Iterator[Server]:
    port = free_port()
    log = workdir / "peer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(peer_binary()), "--port", str(port), "--kubeconfig", str(kubeconfig),
                                 "--read-only", "--toolsets", "core", "--cluster-provider", "kubeconfig"],
                                stdout=out, stderr=out)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield Server(f"kubernetes-mcp-server {PEER_VERSION}", f"http://127.0.0.1:{port}/mcp", proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---- measurement ---------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    size: int
    calls: int = 1
    note: str = ""


def median(samples: list[Sample]) -> Sample:
    s = sorted(samples, key=lambda x: x.seconds)[len(samples) // 2]
    return s


def kubectl(cluster: LocalCluster, *args: str) -> Sample:
    t = time.perf_counter()
    out = cluster.kubectl(*args, timeout=600).stdout
    return Sample(time.perf_counter() - t, len(out.encode()))


def mcp_calls(server: Server, plan: Callable[[Callable[[str, dict[str, Any]], Any]], Any], repeat: int
              ) -> list[Sample]:
    """Run `plan(call)` `repeat` times in one MCP session; each run is one Sample."""

    async def run() -> list[Sample]:
        samples = []
        async with streamable_http_client(server.url, max_sse_event_size=None) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                for _ in range(repeat):
                    sizes: list[int] = []

                    async def call(tool: str, args: dict[str, Any]) -> Any:
                        result = await session.call_tool(tool, args)
                        if result.is_error:
                            raise SystemExit(f"{server.name} {tool}: {result.content[0].text[:300]}")
                        sizes.append(len(result.model_dump_json(by_alias=True, exclude_none=True)))
                        server.sample_rss()
                        return result

                    t = time.perf_counter()
                    await plan(call)
                    samples.append(Sample(time.perf_counter() - t, sum(sizes), len(sizes)))
        return samples

    return anyio.run(run)


def inspector_list_all(call: Callable[..., Any]) -> Any:
    async def walk() -> None:
        token = None
        while True:
            args: dict[str, Any] = {"resource": "pods", "all_namespaces": True}
            if token:
                args["continue_token"] = token
            result = await call("get", args)
            token = (result.structured_content or {}).get("continue")
            if not token:
                return

    return walk()


def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="inspector-bench-"))
    print("starting the lab API server ...", flush=True)
    cluster = LocalCluster.start()
    try:
        t = time.perf_counter()
        targets = populate(cluster, args.pods, args.namespaces)
        print(f"created {len(targets)} pods in {args.namespaces} namespaces in {time.perf_counter() - t:.1f}s",
              flush=True)
        ns, pod = targets[len(targets) // 2]
        r = args.repeat
        rows: dict[str, dict[str, Sample]] = {}
        rows["kubectl"] = {
            "list": median([kubectl(cluster, "get", "pods", "-A") for _ in range(r)]),
            "get": median([kubectl(cluster, "get", "pod", pod, "-n", ns) for _ in range(r)]),
            "describe": median([kubectl(cluster, "describe", "pod", pod, "-n", ns) for _ in range(r)]),
        }
        rss: dict[str, int] = {}
        with inspector(cluster.kubeconfig, workdir) as ins:
            first = median(mcp_calls(ins, lambda c: c("get", {"resource": "pods", "all_namespaces": True}), r))
            walk = median(mcp_calls(ins, inspector_list_all, r))
            rows["eks-inspector"] = {
                "list": first, "list-all": walk,
                "get": median(mcp_calls(ins, lambda c: c("get", {"resource": "pods", "name": pod, "namespace": ns}),
                                        r)),
                "describe": median(mcp_calls(ins, lambda c: c("describe", {"resource": "pod", "name": pod,
                                                                           "namespace": ns}), r)),
            }
            rss["eks-inspector"] = ins.peak_rss_kib
        peer_name = ""
        try:
            with peer(cluster.kubeconfig, workdir) as p:
                peer_name = p.name
                rows[p.name] = {
                    "list": median(mcp_calls(p, lambda c: c("pods_list", {}), r)),
                    "get": median(mcp_calls(p, lambda c: c("pods_get", {"name": pod, "namespace": ns}), r)),
                    "describe": median(mcp_calls(p, lambda c: c("pods_get", {"name": pod, "namespace": ns}), r)),
                }
                rss[p.name] = p.peak_rss_kib
        except (subprocess.CalledProcessError, OSError, SystemExit) as exc:
            print(f"peer MCP server unavailable: {exc}", flush=True)
        return report(args, cluster.version, rows, rss, peer_name)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _fmt(s: Sample | None) -> str:
    if s is None:
        return "—"
    size = f"{s.size / 1024:.1f} KiB" if s.size < 1024 * 1024 else f"{s.size / 2**20:.2f} MiB"
    calls = f" ({s.calls} calls)" if s.calls > 1 else ""
    return f"{s.seconds * 1000:.0f} ms / {size}{calls}"


def report(args: argparse.Namespace, version: str, rows: dict[str, dict[str, Sample]], rss: dict[str, int],
           peer_name: str) -> str:
    k, i = rows["kubectl"], rows["eks-inspector"]
    p = rows.get(peer_name, {})
    lines = [
        "## EKS inspector",
        "",
        f"`bench/inspector_bench.py`: one kube-apiserver {version} (lab, etcd on local disk) holding "
        f"{args.pods:,} pods in {args.namespaces} namespaces; median of {args.repeat} runs; "
        "2-core machine shared with other work. Bytes: kubectl's stdout; for MCP servers the "
        "tool result as the client receives it (JSON, text + structuredContent). Pods carry a kubelet-like "
        "status (written through the status subresource; no kubelet runs). Both MCP servers over "
        "Streamable HTTP on loopback, through the same `mcp` SDK client session.",
        "",
        "| question | kubectl | eks-inspector | " + (peer_name or "peer (not run)") + " |",
        "| --- | --- | --- | --- |",
        f"| list all pods: first answer | {_fmt(k['list'])} (all pods) | {_fmt(i['list'])} | {_fmt(p.get('list'))} |",
        f"| list all pods: every page | {_fmt(k['list'])} | {_fmt(i['list-all'])} | {_fmt(p.get('list'))} |",
        f"| get one pod | {_fmt(k['get'])} | {_fmt(i['get'])} | {_fmt(p.get('get'))} |",
        f"| describe one pod | {_fmt(k['describe'])} | {_fmt(i['describe'])} | "
        f"{_fmt(p.get('describe'))} (pods_get: it has no describe) |",
        "",
    ]
    ratio = i["list-all"].seconds / k["list"].seconds
    lines.append(f"- List every pod, eks-inspector (all pages) vs kubectl: **{ratio:.2f}x** the time (target ≤ 1.2x).")
    if p:
        for q, label in (("list", "list all pods (one answer)"), ("get", "get one pod"),
                         ("describe", "describe one pod")):
            lines.append(f"- {label}: the peer's answer is **{p[q].size / i[q].size:.1f}x** the size of "
                         f"eks-inspector's (target ≥ 5x).")
    lines.append(f"- eks-inspector peak RSS during the runs: **{rss.get('eks-inspector', 0) / 1024:.0f} MiB** "
                 f"(target < 150 MiB)" + (f"; the peer: {rss[peer_name] / 1024:.0f} MiB." if peer_name in rss else "."))
    if p:
        lines.append("- describe: the peer has no describe tool; its nearest answer (pods_get, the object as YAML) "
                     "is compared. eks-inspector's describe carries more (owner chain, container states, events), "
                     "so compare that row with care.")
    lines.append("- Reading the table: eks-inspector answers a list with one capped page (64 KiB by default) and a "
                 "continue token, so \"first answer\" is what an agent receives; \"every page\" walks all tokens. "
                 "The peer returns every pod in one answer.")
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    section = run(args)
    print(section)
    if not args.no_write:
        write_doc(section)
        print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
