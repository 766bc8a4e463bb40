"""Soak: N clients making tool calls plus M idle SSE streams, through the tailnet, for a
bounded number of minutes, sampling the sidecar's memory.

Everything is real and local: the lab headscale, the image entrypoint
(`mcp-tailnet-sidecar run`: containerboot, tailscaled, serve, gateway) in its own network
namespace with the stock MCP server beside it, and K userspace client nodes whose HTTP
proxies carry the load over WireGuard to the sidecar's MagicDNS name.

It is a benchmark, not a test: it reports what it held (calls made and failed, latency,
streams kept and dropped, memory of the sidecar's process tree over time) and exits 0
when the target held (zero failed calls, zero dropped streams, memory flat), 1 otherwise.

    sudo .venv/bin/python bench/load_soak.py --clients 500 --streams 2000 --minutes 5

Clients speak raw JSON-RPC over Streamable HTTP so that the driver, which shares the machine,
stays cheap: stateless MCP 2026-07-28 `tools/call` requests (no session; routing headers and
`params._meta` as the protocol wants them), in a loop with a think time, each answer checked.
No session means any worker of the upstream can answer any call, so `--upstream-workers N`
runs the stock server as N uvicorn worker processes: the single-process stock server fails
under this load on its own, and the question here is whether the SIDECAR holds it. The
gateway runs with a tool policy and its audit lines on (info level), as deployed; its
per-source limit (SIDECAR_MAX_CONCURRENT_PER_SOURCE, 64) is raised, since a few client nodes
carry all the load here, and 1,000 streams from one node are that node's by design refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mcp_tailnet_lab.headscale import Headscale
from mcp_tailnet_lab.netns import LabNetwork
from mcp_tailnet_lab.sidecar_run import STOCK_PORT, sidecar_run_env
from mcp_tailnet_lab.ports import free_port
from mcp_tailnet_lab.tailnet import Tailnet
from native_load import passive_opens

SIDECAR = str(Path(sys.executable).parent / "mcp-tailnet-sidecar")
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PROTOCOL = "2026-07-28"
POLICY = {"rules": [{"principals": ["*"], "tools": ["add"]}]}
# a few client nodes carry every stream and client here (see the module docstring)
GATEWAY_ENV = {"SIDECAR_MAX_CONCURRENT_PER_SOURCE": "8192", "SIDECAR_LOG_LEVEL": "info"}


def upstream_argv(port: int, workers: int) -> list[str]:
    """The stock MCP server on 127.0.0.1:port: one process, or `workers` uvicorn workers."""
    if workers <= 1:
        return [sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(port)]
    return [sys.executable, "-m", "uvicorn", "--factory", "mcp_tailnet_lab.stock_mcp_server:build_app",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning"]


def call_request(i: int, a: int, b: int) -> tuple[dict, dict]:
    """(headers, body) of one stateless 2026-07-28 tools/call of `add`."""
    headers = {**ACCEPT, "Mcp-Method": "tools/call", "Mcp-Name": "add", "MCP-Protocol-Version": PROTOCOL}
    body = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": a, "b": b},
                       "_meta": {"io.modelcontextprotocol/protocolVersion": PROTOCOL,
                                 "io.modelcontextprotocol/clientInfo": {"name": "soak", "version": "1"},
                                 "io.modelcontextprotocol/clientCapabilities": {}}}}
    return headers, body


# -- measurements -------------------------------------------------------------------------------

@dataclass
class Tally:
    calls_ok: int = 0
    calls_failed: int = 0
    sessions_ok: int = 0
    sessions_failed: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    streams_open: int = 0
    streams_opened: int = 0
    streams_failed_to_open: int = 0
    streams_dropped: int = 0
    keepalives: int = 0

    def fail(self, kind: str, what: str) -> None:
        key = f"{kind}: {what}"[:160]
        self.failures[key] = self.failures.get(key, 0) + 1


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants (from /proc/*/stat parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def fds_by_name(root: int) -> dict[str, int]:
    """Open file descriptors of each process in the tree (a connection leak shows here first)."""
    out: dict[str, int] = {}
    for pid in tree_pids(root):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            out[name] = out.get(name, 0) + len(list(Path(f"/proc/{pid}/fd").iterdir()))
        except OSError:
            continue
    return out


def cpu_by_name(root: int) -> dict[str, float]:
    """CPU seconds (user + system) of each process in the tree so far, keyed by command name:
    at the end of a soak, which part of the chain did the work."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in tree_pids(root):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = round(out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick, 1)
    return out


def rss_by_name(root: int) -> dict[str, int]:
    """RSS in KiB of each process in the tree, keyed by its command name."""
    out: dict[str, int] = {}
    for pid in tree_pids(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        name = next(line.split()[1] for line in status.splitlines() if line.startswith("Name:"))
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        out[name] = out.get(name, 0) + rss
    return out


# -- load -------------------------------------------------------------------------------------------

def sse_answer(text: str) -> dict | None:
    for line in text.splitlines():
        if line.startswith("data:"):
            return json.loads(line[5:])
    return json.loads(text) if text.strip().startswith("{") else None


async def tool_client(http: httpx.AsyncClient, url: str, until: float, think: float, tally: Tally) -> None:
    """One MCP client: stateless tools/call every `think` seconds (jittered) until `until`."""
    tally.sessions_ok += 1  # no handshake in 2026-07-28: a client is "started" when its loop runs
    i = 0
    await asyncio.sleep(random.uniform(0, think))
    while time.monotonic() < until:
        i += 1
        a, b = random.randint(0, 10**6), random.randint(0, 10**6)
        headers, body = call_request(i, a, b)
        started = time.monotonic()
        try:
            r = await http.post(f"{url}/mcp", headers=headers, json=body)
            answer = sse_answer(r.text) if r.status_code == 200 else None
            if answer is None or answer.get("result", {}).get("structuredContent", {}).get("result") != a + b:
                tally.calls_failed += 1
                tally.fail("call", f"HTTP {r.status_code} {r.text[:100]!r}")
            else:
                tally.calls_ok += 1
                tally.latencies.append(time.monotonic() - started)
        except httpx.HTTPError as exc:
            tally.calls_failed += 1
            tally.fail("call", repr(exc))
        await asyncio.sleep(think * random.uniform(0.5, 1.5))


async def idle_stream(http: httpx.AsyncClient, url: str, until: float, tally: Tally) -> None:
    """One legacy SSE session held open and idle; a drop before `until` counts."""
    try:
        async with http.stream("GET", f"{url}/sse", headers={"Accept": "text/event-stream"}) as r:
            if r.status_code != 200:
                tally.streams_failed_to_open += 1
                tally.fail("stream open", f"HTTP {r.status_code}")
                return
            tally.streams_opened += 1
            tally.streams_open += 1
            try:
                async for chunk in r.aiter_raw():
                    tally.keepalives += chunk.count(b": keepalive")
                    if time.monotonic() >= until:
                        return
                if time.monotonic() < until:
                    tally.streams_dropped += 1
                    tally.fail("stream", "ended early")
            finally:
                tally.streams_open -= 1
    except httpx.HTTPError as exc:
        if time.monotonic() < until:
            tally.streams_dropped += 1
            tally.fail("stream", repr(exc))


async def drive(urls: list[tuple[str, str]], args: argparse.Namespace, sidecar_pid: int, log) -> dict:
    """urls: (how, base url) per client node; how is a proxy URL or `uds:/path` (the gateway's socket)."""
    tally = Tally()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=60)
    timeout = httpx.Timeout(60, read=args.minutes * 60 + 120)

    def client(how: str) -> httpx.AsyncClient:
        if how.startswith("uds:"):
            return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=how[4:], limits=limits), timeout=timeout)
        if how:
            return httpx.AsyncClient(proxy=how, limits=limits, timeout=timeout)
        return httpx.AsyncClient(limits=limits, timeout=timeout)
    # httpcore scans its whole pool for every request it places (O(connections)), so one client
    # holding 1,000+ connections makes the driver, not the sidecar, the bottleneck: several small
    # pools per node instead, each task bound to one of them.
    n = args.streams + args.clients
    per_node = max(1, -(-n // (len(urls) * args.pool_size)))
    routes = [u for u in urls for _ in range(per_node)]
    clients = [client(how) for how, _ in routes]
    samples: list[dict] = []
    tasks: list[asyncio.Task] = []
    ramp_end = time.monotonic() + args.ramp
    until = ramp_end + args.minutes * 60

    async def sampler() -> None:
        t0 = time.monotonic()
        while time.monotonic() < until:
            rss = rss_by_name(sidecar_pid)
            samples.append({"t": round(time.monotonic() - t0, 1), "rss_kib": rss, "total_kib": sum(rss.values()),
                            "fds": fds_by_name(sidecar_pid),
                            "streams_open": tally.streams_open, "calls_ok": tally.calls_ok,
                            "calls_failed": tally.calls_failed})
            log(f"t={samples[-1]['t']:>6}s rss={samples[-1]['total_kib'] // 1024} MiB {rss} "
                f"fds={samples[-1]['fds']} streams={tally.streams_open} calls ok={tally.calls_ok} "
                f"failed={tally.calls_failed}")
            await asyncio.sleep(args.sample)

    sampler_task = asyncio.create_task(sampler())
    # ramp: streams and clients spread over the ramp time, round robin over the client nodes
    order = ["s"] * args.streams + ["c"] * args.clients
    random.Random(1).shuffle(order)
    for i, kind in enumerate(order):
        http, (_, url) = clients[i % len(clients)], routes[i % len(routes)]
        if kind == "s":
            tasks.append(asyncio.create_task(idle_stream(http, url, until, tally)))
        else:
            tasks.append(asyncio.create_task(tool_client(http, url, until, args.think, tally)))
        await asyncio.sleep(args.ramp / n)
    await asyncio.gather(*tasks)
    await sampler_task
    for c in clients:
        await c.aclose()

    lat = sorted(tally.latencies)
    steady = [s["total_kib"] for s in samples if s["t"] >= args.ramp]
    quarter = max(1, len(steady) // 4)
    first, last = statistics.median(steady[:quarter] or [0]), statistics.median(steady[-quarter:] or [0])
    return {
        "clients": args.clients, "streams": args.streams, "client_nodes": len(urls), "minutes": args.minutes,
        "ramp_s": args.ramp, "think_s": args.think,
        "sessions_ok": tally.sessions_ok, "sessions_failed": tally.sessions_failed,
        "calls_ok": tally.calls_ok, "calls_failed": tally.calls_failed,
        "calls_per_s": round(tally.calls_ok / (args.minutes * 60 + args.ramp), 1),
        "latency_ms": {"p50": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
                       "p95": round(lat[int(len(lat) * 0.95)] * 1000, 1) if lat else None,
                       "p99": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
                       "max": round(lat[-1] * 1000, 1) if lat else None},
        "streams_opened": tally.streams_opened, "streams_failed_to_open": tally.streams_failed_to_open,
        "streams_dropped": tally.streams_dropped, "keepalives_seen": tally.keepalives,
        "rss_mib": {"steady_first_quarter": round(first / 1024, 1), "steady_last_quarter": round(last / 1024, 1),
                    "growth_pct": round((last - first) / first * 100, 1) if first else None,
                    "max": round(max((s["total_kib"] for s in samples), default=0) / 1024, 1),
                    "by_process_at_end": {k: round(v / 1024, 1) for k, v in (samples[-1]["rss_kib"] if samples else {}).items()}},
        "rss_mib_by_process": {  # first and last quarter of the soak, and the last third alone
            name: {"first_quarter": round(statistics.median(v[:quarter]) / 1024, 1),
                   "last_quarter": round(statistics.median(v[-quarter:]) / 1024, 1),
                   "last_third_growth_pct": round((v[-1] - v[-max(1, len(v) // 3)]) / v[-max(1, len(v) // 3)] * 100, 1)}
            for name in (samples[-1]["rss_kib"] if samples else {})
            if (v := [s["rss_kib"].get(name, 0) for s in samples if s["t"] >= args.ramp]) and all(v)},
        "failures": tally.failures,
        "samples": samples,
    }


# -- setup ----------------------------------------------------------------------------------------------

def policy_file(workdir: Path) -> Path:
    path = workdir / "policy.json"
    path.write_text(json.dumps(POLICY))
    return path


def start_sidecar(ns, headscale: Headscale, workdir: Path, hostname: str, keepalive: str) -> subprocess.Popen:
    # the lab's headscale policy is allow-all: accept the upstream's exposure or it is never ready
    env = sidecar_run_env(workdir, login_server=headscale.url, hostname=hostname, authkey=headscale.preauth_key("lab"),
                          SIDECAR_KEEPALIVE_INTERVAL=keepalive, SIDECAR_POLICY_FILE=str(policy_file(workdir)),
                          SIDECAR_ACCEPT_UPSTREAM_EXPOSURE="true", **GATEWAY_ENV)
    log = (workdir / "sidecar.log").open("ab")
    return ns.popen([SIDECAR, "run"], env=env, stdout=log, stderr=log)


def wait_ready(workdir: Path, proc: subprocess.Popen, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the sidecar exited with {proc.returncode}; see {workdir / 'sidecar.log'}")
        r = subprocess.run([SIDECAR, "probe", "ready", "--socket", str(workdir / "health.sock")],
                           capture_output=True, timeout=30)
        if r.returncode == 0:
            serve = json.loads((workdir / "serve" / "serve.json").read_text())
            return next(h for h in serve["Web"] if h.endswith(":80"))[:-3]
        time.sleep(1)
    raise SystemExit(f"the sidecar was not ready within {timeout} s; see {workdir / 'sidecar.log'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=500, help="concurrent MCP clients making tool calls")
    p.add_argument("--streams", type=int, default=2000, help="idle legacy SSE streams held open")
    p.add_argument("--minutes", type=float, default=5.0, help="soak length after the ramp")
    p.add_argument("--ramp", type=float, default=60.0, help="seconds to open all clients and streams")
    p.add_argument("--think", type=float, default=5.0, help="mean seconds between one client's calls")
    p.add_argument("--client-nodes", type=int, default=2, help="userspace tailnet nodes carrying the load")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between memory samples")
    p.add_argument("--keepalive", default="15", help="SIDECAR_KEEPALIVE_INTERVAL of the sidecar")
    p.add_argument("--pool-size", type=int, default=50, help="tasks sharing one HTTP client (connection pool)")
    p.add_argument("--upstream-workers", type=int, default=1, help="uvicorn worker processes of the stock server")
    p.add_argument("--out", type=Path, help="write the JSON result here too")
    p.add_argument("--max-growth-pct", type=float, default=10.0, help="memory counts as flat below this growth")
    p.add_argument("--via", choices=["tailnet", "gateway", "upstream"], default="tailnet",
                   help="tailnet: the real pairing (default); gateway: its unix socket, no tailnet; upstream: the "
                        "MCP server alone (RSS then is the server's)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces for the lab tailnet)")

    def log(msg: str) -> None:
        print(f"[soak] {msg}", file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
    if args.via != "tailnet":
        return finish(local_run(args, workdir, log), args, workdir, log)
    network = LabNetwork().start()
    procs: list[subprocess.Popen] = []
    try:
        headscale = Headscale(network.host_ip).start()
        tailnet = Tailnet(headscale, network)
        try:
            ns = tailnet.outsider("soaksrv")
            stock = ns.popen(upstream_argv(STOCK_PORT, args.upstream_workers),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(stock)
            sidecar = start_sidecar(ns, headscale, workdir, f"soak-{uuid.uuid4().hex[:6]}", args.keepalive)
            procs.append(sidecar)
            name = wait_ready(workdir, sidecar)
            log(f"sidecar ready as {name}")
            nodes = [tailnet.node(f"soakcli{i}") for i in range(args.client_nodes)]
            for node in nodes:
                node.wait_for_peers({name}, timeout=120)
            urls = [(node.proxy_url, f"http://{name}") for node in nodes]
            opens = passive_opens(ns)
            result = asyncio.run(drive(urls, args, sidecar.pid, log))
            # serve's backend pool keeps 2 idle connections per host (Go's default): under load
            # most calls open a new connection to the gateway; this counts them
            result["tcp_connections_accepted_in_pod"] = passive_opens(ns) - opens
            result["stock_server_rss_mib"] = round(rss_by_name(stock.pid).get("python", 0) / 1024, 1) or None
            result["cpu_s"] = {"sidecar": cpu_by_name(sidecar.pid), "upstream": sum(cpu_by_name(stock.pid).values()),
                               "client nodes": sum(sum(cpu_by_name(n._proc.pid).values()) for n in nodes if n._proc),
                               "driver": round(time.process_time(), 1)}
            result["sidecar_alive_at_end"] = sidecar.poll() is None
            result["client_node_rss_mib"] = {n.name: round(sum(rss_by_name(n._proc.pid).values()) / 1024, 1)
                                             for n in nodes if n._proc is not None}
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            tailnet.close()
            headscale.close()
    finally:
        network.close()
    return finish(result, args, workdir, log)


def local_run(args: argparse.Namespace, workdir: Path, log) -> dict:
    """The same load without the tailnet: on the gateway's unix socket, or on the upstream
    alone; to tell which part of the chain limits what the tailnet run holds."""
    port = free_port()
    stock = subprocess.Popen(upstream_argv(port, args.upstream_workers),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [stock]
    try:
        time.sleep(3)
        if args.via == "upstream":
            result = asyncio.run(drive([("", f"http://127.0.0.1:{port}")], args, stock.pid, log))
        else:
            env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "TS_"))},
                   "SIDECAR_UPSTREAM_URL": f"http://127.0.0.1:{port}", "SIDECAR_GATEWAY_SOCKET": str(workdir / "gw.sock"),
                   "SIDECAR_HEALTH_SOCKET": str(workdir / "health.sock"), "SIDECAR_ALLOWED_HOSTS": "mcp.soak.test",
                   "TS_SOCKET": str(workdir / "none.sock"), "SIDECAR_KEEPALIVE_INTERVAL": args.keepalive,
                   "SIDECAR_POLICY_FILE": str(policy_file(workdir)), **GATEWAY_ENV}
            log_fh = (workdir / "gateway.log").open("ab")
            gateway = subprocess.Popen([SIDECAR, "gateway"], env=env, stdout=log_fh, stderr=log_fh)
            procs.append(gateway)
            time.sleep(3)
            result = asyncio.run(drive([(f"uds:{workdir / 'gw.sock'}", "http://mcp.soak.test")], args, gateway.pid, log))
            result["sidecar_alive_at_end"] = gateway.poll() is None
            result["cpu_s"] = {"gateway": sum(cpu_by_name(gateway.pid).values()),
                               "upstream": sum(cpu_by_name(stock.pid).values()), "driver": round(time.process_time(), 1)}
        result["stock_server_rss_mib"] = round(rss_by_name(stock.pid).get("python", 0) / 1024, 1) or None
        result.setdefault("sidecar_alive_at_end", stock.poll() is None)
        return result
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def finish(result: dict, args: argparse.Namespace, workdir: Path, log) -> int:
    result["via"] = args.via
    result["upstream_workers"] = args.upstream_workers
    logs = [workdir / "sidecar.log", workdir / "gateway.log"]
    result["audit_lines"] = sum(text.count('"event": "tool_call"') for f in logs if f.exists()
                                for text in [f.read_text(errors="replace")])
    held = (result["calls_failed"] == 0 and result["sessions_failed"] == 0 and result["streams_dropped"] == 0
            and result["streams_failed_to_open"] == 0 and result["streams_opened"] == args.streams
            and result["sidecar_alive_at_end"]
            and (result["rss_mib"]["growth_pct"] or 0) < args.max_growth_pct)
    result["held"] = held
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"workdir {workdir} (sidecar log inside)")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
