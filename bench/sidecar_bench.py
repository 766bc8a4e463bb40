"""Sidecar benchmark: direct vs nginx vs the gateway vs the tailnet, in one run, as ratios.

What runs (all real, on the lab's headscale, like tests/sidecar/test_tailnet.py):
- sidecar `us`: the default pair. The image's entrypoint `mcp-tailnet-sidecar run` (Tailscale's
  containerboot, tailscaled in userspace mode, serve, the gateway) as uid 65532 (as the images and
  manifests run it; tests/sidecar/test_nonroot.py), so the gateway listens on the loopback alias
  127.0.0.2:9080 and serve proxies there; the stock MCP server (`mcp_tailnet_lab.stock_mcp_server`,
  SDK defaults) on 127.0.0.1:8080 of the same network namespace: the pod / ECS task. Beside them:
  a second gateway as root on a unix socket, and Debian's nginx on 127.0.0.5:8081
  (bench/native_load.py: `proxy_buffering off`, upstream keepalive, Host rewritten).
- sidecar `tun`: kernel TUN mode (root, unix socket), its own stock server.
- client nodes: `cli-us` (userspace; the driver reaches the tailnet through its HTTP proxy) and
  `cli-tun` (TUN; clients run in its namespace and resolve MagicDNS names through 100.100.100.100).
Policy and audit are on everywhere: a policy file allowing the two tools called, audit at info.

Phases (--phases):
  native  wrk (C, closed loop, kept-alive connections; bench/mcp_tools_call.lua) with stateless
          2026-07-28 `tools/call` requests at 1 and --concurrency connections: direct, nginx, the
          non-root gateway on TCP, the tailnet (wrk in cli-tun -> `us` by MagicDNS name -> serve ->
          gateway -> server), and the root gateway's unix socket with bench/raw_load.py (wrk has no
          unix sockets) against the same generator on the direct path. CPU per call of each part
          from /proc; TCP connections accepted in the pod per 1,000 calls.
  sdk     the `mcp` SDK client (bench/sidecar_client.py, Streamable HTTP sessions) on the same
          paths plus the userspace client node's proxy and the TUN sidecar.
Rounds interleave the paths (rotating order), so load from the rest of this shared machine
lands on all of them alike; ratios against direct are paired per round.

Then idle SSE sessions (bench/sidecar_sse_hold.py) through one freshly started sidecar per
route (--sse-routes: `gateway` in the pod, `tailnet` from cli-tun to `us`, `tailnet-tun` to the
TUN sidecar, `ROUTE+KEY=VALUE` with a variable in the sidecar's environment), opened in bounded
batches up to the target, with the RSS of the sidecar's processes, tailscaled's goroutines, the
namespace's kernel TCP memory, and a tailscaled heap profile (kept with --keep).

    .venv/bin/python bench/sidecar_bench.py [--phases native,sdk] [--native-rounds 5]
        [--native-seconds 5] [--rounds 4] [--calls 100] [--concurrency 8] [--sse-target 2000]
        [--sse-routes gateway,tailnet,tailnet+GOMEMLIMIT=96MiB,tailnet-tun] [--keep] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_tailnet_lab.headscale import Headscale
from mcp_tailnet_lab.netns import LabNetwork, Namespace
from mcp_tailnet_lab.paths import binary
from mcp_tailnet_lab.sidecar_run import STOCK_PORT, sidecar_run_env
from mcp_tailnet_lab.tailnet import Tailnet, TailnetNode
from native_load import LoadResult, Nginx, passive_opens, raw_argv, wrk_argv, wrk_env, wrk_version

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the lab's way to run the sidecar as uid 65532 lives with the tests
from tests.sidecar.conftest import NONROOT_UID, nonroot_sidecar_argv  # noqa: E402
DOC = REPO / "docs" / "benchmarks.md"
START, END = "<!-- sidecar-bench:start -->", "<!-- sidecar-bench:end -->"
SIDECAR = str(Path(sys.executable).parent / "mcp-tailnet-sidecar")
CLIENT = str(REPO / "bench" / "sidecar_client.py")
HOLDER = str(REPO / "bench" / "sidecar_sse_hold.py")
ALT_PORT = 9080  # the non-root default of SIDECAR_GATEWAY_LISTEN
NGINX_LISTEN = "127.0.0.5:8081"  # a loopback alias: userspace tailscaled forwards only to 127.0.0.1
MIB = 1024 * 1024
# Policy and audit stay on while measuring: a policy file that allows the tools the bench
# calls (everything else denied), and the gateway's audit lines at info level (its default).
POLICY = {"rules": [{"principals": ["*"], "tools": ["add", "echo"]}]}
# The lab's headscale policy is allow-all, so a sidecar in front of a server on 127.0.0.1 is
# not ready until the exposure is accepted (README "The tailnet policy to use"); the bench
# measures speed and memory, not the policy, so it accepts it explicitly.
# 2,000 idle SSE sessions from ONE client node are 2,000 concurrent streams of one tailnet source,
# past the gateway's per-source limit (SIDECAR_MAX_CONCURRENT_PER_SOURCE, 64 by default: 429
# beyond it); the bench raises it so the memory of 2,000 sessions can be measured at all.
BENCH_SIDECAR_ENV = {"SIDECAR_ACCEPT_UPSTREAM_EXPOSURE": "true", "SIDECAR_MAX_CONCURRENT_PER_SOURCE": "4096"}


class BenchError(RuntimeError):
    """A part of the benchmark could not run; the message names it."""


# ---- machine load ----------------------------------------------------------------------


class LoadSampler:
    """1-minute load average and whole-machine CPU busy share while the benchmark runs."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.loads: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cpu0 = self._cpu()

    @staticmethod
    def _cpu() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.loads.append(float(Path("/proc/loadavg").read_text().split()[0]))

    def __enter__(self) -> LoadSampler:
        self.loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        busy1, total1 = self._cpu()
        self.busy = (busy1 - self._cpu0[0]) / max(1, total1 - self._cpu0[1])

    def describe(self) -> str:
        loads = self.loads or [0.0]
        return (f"1-min load average {min(loads):.1f} to {max(loads):.1f} (median {statistics.median(loads):.1f}) "
                f"on {os.cpu_count()} cores; CPU busy {self.busy:.0%} over the run (all processes, ours included)")


# ---- processes -------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (by walking /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of these processes (fields 14 and 15 of /proc/PID/stat)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICK


def comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return "?"


def stop_proc(proc: subprocess.Popen[Any] | None, timeout: float = 60) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Worker:
    """A bench worker process spoken to in JSON lines, every answer waited for with a bound."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self._lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"worker {self.name}: no answer within {timeout:.0f} s; log: {self._tail()}") from None
        if not line:
            raise BenchError(f"worker {self.name} exited ({self.proc.poll()}); log: {self._tail()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise BenchError(f"worker {self.name}: {reply.get('error')}; log: {self._tail()}")
        return reply

    def ask(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        return self.read(timeout)

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-6:])[-1500:]
        return "(no log)"

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"op": "quit"}\n')
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            stop_proc(self.proc, 10)


def start_worker(name: str, argv: list[str], where: Namespace | TailnetNode | None, workdir: Path,
                 ready_timeout: float = 120) -> Worker:
    log = workdir / f"worker-{name}.log"
    kw: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    with log.open("wb") as err:
        full = [sys.executable, *argv]
        proc = where.popen(full, stderr=err, **kw) if where is not None else subprocess.Popen(full, stderr=err, **kw)
    worker = Worker(name, proc, log)
    try:
        worker.read(ready_timeout)
    except BaseException:
        stop_proc(proc, 5)
        raise
    return worker


# ---- the sidecar: containerboot + tailscaled + gateway, next to a stock server -----------


@dataclass
class Sidecar:
    """`mcp-tailnet-sidecar run` in a namespace of its own, as the image runs it."""

    name: str
    userspace: bool
    ns: Namespace
    headscale: Headscale
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    nonroot: bool = False  # as uid 65532, as the images and manifests run it: gateway on 127.0.0.2:9080
    proc: subprocess.Popen[bytes] | None = None
    stock: subprocess.Popen[bytes] | None = None
    dns_name: str = ""
    target: str = ""  # where serve sends requests: "unix:/path" or "http://host:port"
    authkey: str = ""

    @property
    def health_socket(self) -> Path:
        return self.workdir / "health.sock"

    def env(self) -> dict[str, str]:
        # non-root: the venv's bin under /root is out of reach, so PATH is the system's
        path = "/usr/sbin:/usr/bin:/sbin:/bin" if self.nonroot else None
        return sidecar_run_env(self.workdir, login_server=self.headscale.url, hostname=self.name,
                               authkey=self.authkey, path=path, TS_USERSPACE="true" if self.userspace else "false",
                               **self.extra_env)

    def start(self, timeout: float = 180) -> None:
        (self.workdir / "state").mkdir(parents=True, exist_ok=True)
        if self.nonroot:  # its own directories, as tests/sidecar/test_nonroot.py sets them up
            for d in (self.workdir, self.workdir / "state", self.workdir / "serve"):
                d.mkdir(parents=True, exist_ok=True)
                os.chown(d, NONROOT_UID, NONROOT_UID)
        if not self.authkey:
            # not ephemeral: a restart of the sidecar keeps its node (and its name)
            self.authkey = self.headscale.preauth_key("lab", ephemeral=False)
        stock_log = (self.workdir / "stock.log").open("ab")
        self.stock = self.ns.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port",
                                    str(STOCK_PORT)], stdout=stock_log, stderr=stock_log)
        log = (self.workdir / "sidecar.log").open("ab")
        argv = nonroot_sidecar_argv("run") if self.nonroot else [SIDECAR, "run"]
        self.proc = self.ns.popen(argv, env=self.env(), stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"sidecar {self.name} exited with {self.proc.returncode}: {self._tail()}")
            r = subprocess.run([SIDECAR, "probe", "ready", "--socket", str(self.health_socket)],
                               capture_output=True, timeout=30)
            if r.returncode == 0:
                break
            time.sleep(1)
        else:
            raise BenchError(f"sidecar {self.name} not ready within {timeout:.0f} s: {self._tail()}")
        serve = json.loads((self.workdir / "serve" / "serve.json").read_text())
        hostport = next(h for h in serve["Web"] if h.endswith(":80"))
        self.dns_name = hostport.rsplit(":", 1)[0]
        self.target = serve["Web"][hostport]["Handlers"]["/"]["Proxy"]

    def gateway_route(self) -> tuple[str, list[str]]:
        """(base URL, worker args) to reach the gateway the way serve does."""
        if self.target.startswith("unix:"):
            return f"http://{self.dns_name}", ["--uds", self.target[len("unix:"):]]
        base = self.target.rstrip("/")
        if "://" not in base:
            base = "http://" + base
        return base, ["--host-header", self.dns_name]

    def memory(self) -> dict[str, int]:
        """RSS (KiB) of the sidecar's processes by name, summed: what its container holds."""
        out: dict[str, int] = {}
        if self.proc is None:
            return out
        for pid in tree(self.proc.pid):
            name = comm(pid)
            name = "gateway" if pid == self.proc.pid else name
            out[name] = out.get(name, 0) + rss_kib(pid)
        return out

    def pids(self, part: str) -> list[int]:
        """pids of one part of the sidecar: "gateway" (the entrypoint's Python) or "tailscaled"
        (tailscaled and containerboot)."""
        if self.proc is None:
            return []
        if part == "gateway":
            return [self.proc.pid]
        return [p for p in tree(self.proc.pid) if p != self.proc.pid]

    def tailscale(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The tailscale CLI against this sidecar's tailscaled (root reaches the non-root socket too)."""
        return subprocess.run([str(binary("tailscale")), f"--socket={self.workdir / 'ts.sock'}", *args],
                              capture_output=True, text=True, timeout=timeout)

    def goroutines(self) -> int:
        """tailscaled's goroutine count: each forwarded or served connection holds some."""
        out = self.tailscale("debug", "daemon-goroutines").stdout
        return sum(1 for line in out.splitlines() if line.startswith("goroutine "))

    def tcp_kernel_kib(self) -> int:
        """Kernel TCP buffer memory in the sidecar's namespace (sockstat `mem`, pages): TUN mode
        keeps its per-connection buffers here, outside every process's RSS."""
        for line in self.ns.exec(["cat", "/proc/net/sockstat"]).stdout.splitlines():
            if line.startswith("TCP:"):
                f = line.split()
                return int(f[f.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        return 0

    def stock_pids(self) -> list[int]:
        return tree(self.stock.pid) if self.stock else []

    def stock_rss(self) -> int:
        return sum(rss_kib(p) for p in tree(self.stock.pid)) if self.stock else 0

    def stop(self) -> None:
        stop_proc(self.proc, 60)
        stop_proc(self.stock, 15)
        self.proc = self.stock = None

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            text = (self.workdir / "sidecar.log").read_text(errors="replace")
            return " | ".join(text.splitlines()[-8:]).replace(self.authkey, "[redacted]")[-2000:]
        return "(no log)"


@dataclass
class AltGateway:
    """A second gateway (`mcp-tailnet-sidecar gateway`) on the listener kind the sidecar does not
    use, in front of the same server, so both kinds (root: unix socket; non-root: a TCP port on
    a loopback alias) are timed in one run. It has no tailscaled: its name comes from
    SIDECAR_ALLOWED_HOSTS, as in tests/sidecar."""

    ns: Namespace
    workdir: Path
    dns_name: str
    listen: str  # SIDECAR_GATEWAY_LISTEN value
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir),
               "SIDECAR_UPSTREAM_URL": f"http://127.0.0.1:{STOCK_PORT}",
               "SIDECAR_GATEWAY_LISTEN": self.listen,
               "SIDECAR_GATEWAY_SOCKET": str(self.workdir / "gw.sock"),
               "SIDECAR_HEALTH_SOCKET": str(self.workdir / "health.sock"),
               "SIDECAR_ALLOWED_HOSTS": self.dns_name,
               "TS_SOCKET": str(self.workdir / "no-tailscaled.sock"),
               **self.extra_env}
        log = (self.workdir / "gateway.log").open("ab")
        self.proc = self.ns.popen([SIDECAR, "gateway"], env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = (self.workdir / "gateway.log").read_text(errors="replace")[-1500:]
                raise BenchError(f"gateway ({self.listen}) exited with {self.proc.returncode}: {text}")
            r = subprocess.run([SIDECAR, "probe", "alive", "--socket", str(self.workdir / "health.sock")],
                               capture_output=True, timeout=30)
            if r.returncode == 0:
                return
            time.sleep(0.5)
        raise BenchError(f"gateway ({self.listen}) not alive within {timeout:.0f} s")

    def route(self) -> tuple[str, list[str]]:
        if self.listen.startswith("unix"):
            return f"http://{self.dns_name}", ["--uds", str(self.workdir / "gw.sock")]
        return f"http://{self.listen.removeprefix('tcp:')}", ["--host-header", self.dns_name]

    def stop(self) -> None:
        stop_proc(self.proc, 30)
        self.proc = None


# ---- latency and throughput ------------------------------------------------------------


@dataclass
class Path_:
    key: str
    label: str
    worker: Worker
    seq_lat: list[float] = field(default_factory=list)
    round_p50: list[float] = field(default_factory=list)
    round_seq_rate: list[float] = field(default_factory=list)
    round_conc_rate: list[float] = field(default_factory=list)
    conc_lat: list[float] = field(default_factory=list)
    # process groups whose CPU time is charged to this path while it runs: name -> pids
    parts: dict[str, Callable[[], list[int]]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # seconds, summed over the timed rounds
    calls_timed: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed calls by error

    def cpu_snapshot(self) -> dict[str, float]:
        return {name: cpu_seconds(pids()) for name, pids in self.parts.items()}

    def timed(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        before = self.cpu_snapshot()
        reply = self.worker.ask(cmd, timeout)
        after = self.cpu_snapshot()
        for name in after:
            self.cpu[name] = self.cpu.get(name, 0.0) + after[name] - before[name]
        self.calls_timed += len(reply["lat"]) + sum(reply["errors"].values())
        for k, v in reply["errors"].items():
            self.errors[k] = self.errors.get(k, 0) + v
        return reply


def percentile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def measure(paths: list[Path_], rounds: int, calls: int, concurrency: int) -> None:
    timeout = 600.0
    # warm-up: caches, connections, lazily imported code; discarded
    for p in paths:
        p.worker.ask({"op": "calls", "n": max(20, calls // 5), "sessions": 1}, timeout)
        p.worker.ask({"op": "calls", "n": max(20, calls // 5), "sessions": concurrency}, timeout)
    for r in range(rounds):
        order = paths[r % len(paths):] + paths[:r % len(paths)]
        if r % 2:
            order.reverse()
        for p in order:
            reply = p.timed({"op": "calls", "n": calls, "sessions": 1}, timeout)
            p.seq_lat += reply["lat"]
            p.round_p50.append(statistics.median(reply["lat"]))
            p.round_seq_rate.append(len(reply["lat"]) / reply["wall"])
        for p in reversed(order):
            reply = p.timed({"op": "calls", "n": calls * 2, "sessions": concurrency}, timeout)
            p.conc_lat += reply["lat"]
            p.round_conc_rate.append(len(reply["lat"]) / reply["wall"])
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{p.key} p50 {p.round_p50[-1] * 1000:.1f} ms {p.round_seq_rate[-1]:.0f}/s "
            f"x{concurrency} {p.round_conc_rate[-1]:.0f}/s" for p in paths), flush=True)


# ---- native closed-loop load (wrk) -----------------------------------------------------------


def run_generator(where: Namespace | TailnetNode, argv: list[str], env: dict[str, str] | None,
                  timeout: float) -> tuple[LoadResult, float]:
    """Run wrk or raw_load.py to its end; (its result, its own CPU seconds from wait4)."""
    proc = where.popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)  # `ip netns exec` execs: this is the generator
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
    if proc.returncode != 0:
        raise BenchError(f"load generator {argv[0]} exited with {proc.returncode}: {out[-800:]}")
    return LoadResult.parse(out), usage.ru_utime + usage.ru_stime


@dataclass
class NativePath:
    """One path timed by a native closed-loop generator at 1 and N kept-alive connections."""

    key: str
    label: str
    where: Namespace | TailnetNode  # where the generator runs
    argv: Callable[[int, float], list[str]]  # (connections, seconds) -> generator argv
    env: dict[str, str] | None
    baseline: str  # the key of the path its ratios are paired with (same generator, same round)
    pod: Namespace  # the pod's namespace: connections accepted there are counted
    parts: dict[str, Callable[[], list[int]]] = field(default_factory=dict)
    runs: dict[int, list[LoadResult]] = field(default_factory=dict)  # connections -> one result per round

    @property
    def generator(self) -> str:
        return "wrk" if self.argv(1, 1)[0].endswith("wrk") else "raw_load.py"

    def once(self, connections: int, seconds: float) -> LoadResult:
        before = {name: cpu_seconds(pids()) for name, pids in self.parts.items()}
        opens = passive_opens(self.pod)
        result, own = run_generator(self.where, self.argv(connections, seconds), self.env, seconds + 60)
        result.passive_opens = passive_opens(self.pod) - opens
        result.cpu = {name: cpu_seconds(pids()) - before[name] for name, pids in self.parts.items()}
        result.cpu["generator"] = own
        return result


def measure_native(paths: list[NativePath], rounds: int, seconds: float, connections: Sequence[int]) -> None:
    """Interleaved rounds (rotating, alternating order), every path at every connection count."""
    for p in paths:  # warm-up: connections, caches, lazily imported code; discarded
        for c in connections:
            p.once(c, min(2.0, seconds))
    for r in range(rounds):
        order = paths[r % len(paths):] + paths[:r % len(paths)]
        if r % 2:
            order.reverse()
        for c in connections:
            for p in (order if c == connections[0] else list(reversed(order))):
                p.runs.setdefault(c, []).append(p.once(c, seconds))
        print(f"native round {r + 1}/{rounds}: " + "; ".join(
            f"{p.key} " + " ".join(f"c{c} p50 {p.runs[c][-1].p50_ms:.2f} ms {p.runs[c][-1].rate:.0f}/s"
                                   for c in connections) for p in paths), flush=True)


@dataclass
class NativeRow:
    """A path's figures at one connection count, paired per round with its baseline."""

    path: NativePath
    connections: int
    p50_ms: float
    p99_ms: float
    rate: float
    added_ms: float | None  # median of per-round p50 differences against the baseline
    ratio: float | None  # median of per-round throughput ratios
    cpu_ms: dict[str, float]  # part -> CPU ms per call, over every round
    opens_per_1000: float
    failed: int
    requests: int
    first_bad: str


def native_rows(paths: list[NativePath]) -> list[NativeRow]:
    by_key = {p.key: p for p in paths}
    med = statistics.median
    rows = []
    for p in paths:
        base = by_key[p.baseline]
        for c, runs in p.runs.items():
            base_runs = base.runs[c]
            requests = sum(r.requests for r in runs)
            cpu: dict[str, float] = {}
            for r in runs:
                for name, secs in r.cpu.items():
                    cpu[name] = cpu.get(name, 0.0) + secs
            rows.append(NativeRow(
                p, c, med([r.p50_ms for r in runs]), med([r.p99_ms for r in runs]), med([r.rate for r in runs]),
                None if base is p else med([a.p50_ms - b.p50_ms for a, b in zip(runs, base_runs)]),
                None if base is p else med([a.rate / b.rate for a, b in zip(runs, base_runs)]),
                {name: secs * 1000 / max(1, requests) for name, secs in cpu.items()},
                sum(r.passive_opens for r in runs) * 1000 / max(1, requests),
                sum(r.failed for r in runs), requests, next((r.first_bad for r in runs if r.first_bad), "")))
    return rows


# ---- idle SSE sessions -------------------------------------------------------------------


@dataclass
class SseResult:
    route: str
    target: int
    held: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    alive: int = 0
    checked: int = 0
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    steps: list[tuple[int, int]] = field(default_factory=list)  # (sessions, sidecar total KiB)
    stock_before: int = 0
    stock_after: int = 0
    proxy_before: int = 0
    proxy_after: int = 0
    goroutines_before: int = 0
    goroutines_after: int = 0
    kernel_tcp_before: int = 0  # KiB
    kernel_tcp_after: int = 0
    heap_profile: str = ""  # tailscaled's heap profile while the sessions are held (kept with --keep)
    open_secs: float = 0.0
    note: str = ""

    @property
    def total_before(self) -> int:
        return sum(self.before.values())

    @property
    def total_after(self) -> int:
        return sum(self.after.values())

    @property
    def per_session_kib(self) -> float:
        return (self.total_after - self.total_before) / self.held if self.held else float("nan")


def hold_sessions(route: str, sidecar: Sidecar, argv: list[str], where: Namespace | TailnetNode | None,
                  workdir: Path, target: int, step: int, batch: int, idle: float,
                  proxy_node: TailnetNode | None = None) -> SseResult:
    """Open idle SSE sessions in bounded batches up to `target`; RSS before, during, after."""
    res = SseResult(route, target)
    time.sleep(3)  # let the freshly started sidecar settle
    res.before, res.stock_before = sidecar.memory(), sidecar.stock_rss()
    res.goroutines_before, res.kernel_tcp_before = sidecar.goroutines(), sidecar.tcp_kernel_kib()
    if proxy_node is not None:
        res.proxy_before = rss_kib(proxy_node._proc.pid) if proxy_node._proc else 0
    worker = start_worker(f"sse-{route}", [HOLDER, *argv], where, workdir)
    try:
        started = time.monotonic()
        while res.held < target:
            reply = worker.ask({"op": "open", "n": min(step, target - res.held), "batch": batch}, 900)
            res.held, res.failed = reply["open"], res.failed + reply["failed"]
            for k, v in reply["errors"].items():
                res.errors[k] = res.errors.get(k, 0) + v
            res.steps.append((res.held, sum(sidecar.memory().values())))
            print(f"sse {route}: {res.held} open, sidecar {res.steps[-1][1] / 1024:.0f} MiB"
                  + (f", failures: {reply['errors']}" if reply["failed"] else ""), flush=True)
            if reply["failed"]:
                break
        res.open_secs = time.monotonic() - started
        time.sleep(idle)  # idle: keepalives flow, nothing else
        check = worker.ask({"op": "check", "n": 20}, 900)
        res.alive, res.checked = check["alive"], check["of"]
        for k, v in check["errors"].items():
            res.errors[f"check: {k}"] = v
        res.held = worker.ask({"op": "count"}, 60)["open"]
        res.after, res.stock_after = sidecar.memory(), sidecar.stock_rss()
        res.goroutines_after, res.kernel_tcp_after = sidecar.goroutines(), sidecar.tcp_kernel_kib()
        profile = workdir / f"tailscaled-heap-{route.replace('+', '_').replace('=', '-')}.pprof"
        if sidecar.tailscale("debug", f"--mem-profile={profile}").returncode == 0:
            res.heap_profile = str(profile)
        if proxy_node is not None:
            res.proxy_after = rss_kib(proxy_node._proc.pid) if proxy_node._proc else 0
    finally:
        worker.close()
    return res


# ---- the run -------------------------------------------------------------------------------


@contextlib.contextmanager
def lab() -> Iterator[tuple[Headscale, Tailnet]]:
    with LabNetwork() as network, Headscale(network.host_ip) as headscale:
        net = Tailnet(headscale, network)
        try:
            yield headscale, net
        finally:
            net.close()


def sidecar_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--sidecar-env wants KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


@dataclass
class Stopper:
    """Something to stop at the end of the run (a process without a class of its own)."""

    stop: Callable[[], None]


def tailnet_floor_paths(net: Tailnet, client: TailnetNode, workdir: Path, stoppable: list[Any],
                        node_pids: Callable[[TailnetNode], Callable[[], list[int]]]) -> list[NativePath]:
    """What the tailnet costs with a C proxy behind serve: a plain userspace tailscaled node
    (root, not our sidecar) serving nginx -> a stock server in its own namespace, timed from the
    same TUN client against wrk inside that namespace. The floor the gateway's tailnet path is
    compared with: serve, netstack and WireGuard on both ends, and nginx."""
    ng = net.node("mcp-ng")
    log = (workdir / "ng-stock.log").open("ab")
    stock = ng.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(STOCK_PORT)],
                     stdout=log, stderr=log)
    stoppable.append(Stopper(lambda: stop_proc(stock, 15)))
    nginx = Nginx(ng, workdir / "ng-nginx", NGINX_LISTEN, f"127.0.0.1:{STOCK_PORT}")
    stoppable.append(nginx)
    nginx.start()
    deadline = time.monotonic() + 60
    while f"127.0.0.1:{STOCK_PORT} " not in ng.exec(["ss", "-ltnH"]).stdout:
        if stock.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"the stock server in {ng.name} did not listen (exit {stock.poll()})")
        time.sleep(0.5)
    ng.cli("serve", "--bg", "--http=80", f"http://{NGINX_LISTEN}")
    client.wait_for_peers({ng.dns_name})
    nginx_pids: Callable[[], list[int]] = lambda: tree(nginx.proc.pid) if nginx.proc else []  # noqa: E731
    server = {"server": lambda: tree(stock.pid)}
    return [
        NativePath("direct-ng", "direct to the server (in the nginx node)", ng,
                   lambda c, s: wrk_argv(f"http://127.0.0.1:{STOCK_PORT}/mcp", c, s), wrk_env(None), "direct-ng",
                   ng.netns, dict(server)),
        NativePath("tailnet-nginx", "tailnet: TUN client -> serve (userspace, root) -> nginx", client,
                   lambda c, s: wrk_argv(f"http://{ng.dns_name}/mcp", c, s), wrk_env(None), "direct-ng", ng.netns,
                   {"proxy": nginx_pids, "sidecar tailscaled": node_pids(ng), "client tailscaled": node_pids(client),
                    **server}),
    ]


@dataclass
class Results:
    native: list[NativePath] = field(default_factory=list)
    sdk: list[Path_] = field(default_factory=list)
    sse: list[SseResult] = field(default_factory=list)
    target: str = ""
    notes: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="scb-", dir="/tmp"))  # short: unix socket paths
    workdir.chmod(0o755)  # the non-root sidecar (uid 65532) lives below it
    policy = workdir / "policy.json"
    policy.write_text(json.dumps(POLICY))
    policy.chmod(0o644)
    extra = {**BENCH_SIDECAR_ENV, "SIDECAR_POLICY_FILE": str(policy), **sidecar_env(args.sidecar_env)}
    workers: list[Worker] = []
    sidecars: list[Sidecar] = []
    stoppable: list[Any] = []  # alt gateways, nginx
    try:
        with lab() as (headscale, net), LoadSampler() as load:
            try:
                results = _run_in_lab(args, headscale, net, workdir, extra, workers, sidecars, stoppable)
            finally:
                for w in workers:
                    w.close()
                for s in stoppable:
                    s.stop()
                for sc in sidecars:
                    sc.stop()
        return report(args, results, load)
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)


def _run_in_lab(args: argparse.Namespace, headscale: Headscale, net: Tailnet, workdir: Path,
                extra: dict[str, str], workers: list[Worker], sidecars: list[Sidecar],
                stoppable: list[Any]) -> Results:
    res = Results()
    print("starting client nodes and sidecars ...", flush=True)
    cli_us = net.node("cli-us")
    cli_tun = net.node("cli-tun", mode="tun")
    # `us`: the default pair (userspace, uid 65532, gateway on 127.0.0.2:9080); `tun`: kernel mode, root
    for name, userspace, nonroot in (("mcp-us", True, True), ("mcp-tun", False, False)):
        d = workdir / name
        d.mkdir()
        sc = Sidecar(name, userspace, net.outsider(name), headscale, d, extra, nonroot=nonroot)
        sidecars.append(sc)
        sc.start()
    us, tun = sidecars
    for node in (cli_us, cli_tun):
        node.wait_for_peers({us.dns_name, tun.dns_name})
    res.target = us.target
    print(f"sidecars ready: {us.dns_name} (userspace, uid {NONROOT_UID}), {tun.dns_name} (TUN, root); "
          f"serve -> {us.target}", flush=True)

    gw_base, gw_args = us.gateway_route()
    unix = us.target.startswith("unix:")
    alt = AltGateway(us.ns, workdir / "alt-gateway", us.dns_name, f"tcp:127.0.0.2:{ALT_PORT}" if unix else "unix",
                     extra_env={k: v for k, v in extra.items() if k.startswith("SIDECAR_")})
    stoppable.append(alt)
    alt.start()
    alt_base, alt_args = alt.route()
    nginx = Nginx(us.ns, workdir / "nginx", NGINX_LISTEN, f"127.0.0.1:{STOCK_PORT}")
    stoppable.append(nginx)
    nginx.start()

    def node_pids(node: TailnetNode) -> Callable[[], list[int]]:
        return lambda: [node._proc.pid] if node._proc else []

    gateway_pids: Callable[[], list[int]] = lambda: us.pids("gateway")  # noqa: E731
    alt_pids: Callable[[], list[int]] = lambda: [alt.proc.pid] if alt.proc else []  # noqa: E731
    nginx_pids: Callable[[], list[int]] = lambda: tree(nginx.proc.pid) if nginx.proc else []  # noqa: E731
    tcp_gw = (gw_base, gw_args, gateway_pids) if not unix else (alt_base, alt_args, alt_pids)
    unix_gw = (gw_base, gw_args, gateway_pids) if unix else (alt_base, alt_args, alt_pids)
    tcp_gw_label = f"gateway, TCP 127.0.0.2:{ALT_PORT} (non-root, uid {NONROOT_UID})"

    if "native" in args.phases:
        tcp_hostport = tcp_gw[0].removeprefix("http://")
        uds = unix_gw[1][unix_gw[1].index("--uds") + 1]
        py = sys.executable
        server = {"server": us.stock_pids}
        res.native = [
            NativePath("direct", "direct to the server (in the pod)", us.ns,
                       lambda c, s: wrk_argv(f"http://127.0.0.1:{STOCK_PORT}/mcp", c, s), wrk_env(None), "direct",
                       us.ns, dict(server)),
            NativePath("nginx", f"nginx {Nginx.version()} in front", us.ns,
                       lambda c, s: wrk_argv(f"http://{NGINX_LISTEN}/mcp", c, s), wrk_env(None), "direct", us.ns,
                       {"proxy": nginx_pids, **server}),
            NativePath("gateway-tcp", tcp_gw_label, us.ns,
                       lambda c, s: wrk_argv(f"http://{tcp_hostport}/mcp", c, s), wrk_env(us.dns_name), "direct",
                       us.ns, {"proxy": tcp_gw[2], **server}),
            NativePath("tailnet", "tailnet: TUN client -> serve (userspace, non-root) -> gateway TCP", cli_tun,
                       lambda c, s: wrk_argv(f"http://{us.dns_name}/mcp", c, s), wrk_env(None), "direct", us.ns,
                       {"proxy": gateway_pids, "sidecar tailscaled": lambda: us.pids("tailscaled"),
                        "client tailscaled": node_pids(cli_tun), **server}),
            NativePath("direct-raw", "direct to the server (in the pod)", us.ns,
                       lambda c, s: raw_argv(py, f"127.0.0.1:{STOCK_PORT}", f"127.0.0.1:{STOCK_PORT}", c, s), None,
                       "direct-raw", us.ns, dict(server)),
            NativePath("gateway-unix", "gateway, unix socket (root)", us.ns,
                       lambda c, s: raw_argv(py, f"unix:{uds}", us.dns_name, c, s), None, "direct-raw", us.ns,
                       {"proxy": unix_gw[2], **server}),
        ]
        if args.tailnet_floor:
            res.native += tailnet_floor_paths(net, cli_tun, workdir, stoppable, node_pids)
        conns = (1, args.concurrency)
        print(f"native load: {len(res.native)} paths, {args.native_rounds} rounds x {args.native_seconds:g} s "
              f"at {conns[0]} and {conns[1]} connections", flush=True)
        measure_native(res.native, args.native_rounds, args.native_seconds, conns)

    if "sdk" in args.phases:
        specs = [
            ("direct", "direct, loopback", ["--url", f"http://127.0.0.1:{STOCK_PORT}/mcp"], us.ns),
            ("nginx", f"nginx {Nginx.version()} in front", ["--url", f"http://{NGINX_LISTEN}/mcp"], us.ns),
            ("gateway", tcp_gw_label, ["--url", f"{tcp_gw[0]}/mcp", *tcp_gw[1]], us.ns),
            ("gateway-alt", "gateway, unix socket (root)", ["--url", f"{unix_gw[0]}/mcp", *unix_gw[1]], us.ns),
            ("tailnet-us", "tailnet, userspace client (its HTTP proxy) -> userspace non-root sidecar",
             ["--url", f"http://{us.dns_name}/mcp", "--proxy", cli_us.proxy_url], None),
            ("tun-to-us", "tailnet, TUN client -> userspace non-root sidecar",
             ["--url", f"http://{us.dns_name}/mcp"], cli_tun),
            ("tailnet-tun", "tailnet, TUN client -> TUN sidecar (root, unix socket)",
             ["--url", f"http://{tun.dns_name}/mcp"], cli_tun),
        ]
        server_of = {"tailnet-tun": tun}
        client_node = {"tailnet-us": cli_us, "tailnet-tun": cli_tun, "tun-to-us": cli_tun}
        for key, label, argv, where in specs:
            w = start_worker(key, [CLIENT, *argv, "--sessions", str(args.concurrency)], where, workdir)
            workers.append(w)
            sc = server_of.get(key, us)
            parts: dict[str, Callable[[], list[int]]] = {"client": lambda w=w: [w.proc.pid],
                                                         "server": sc.stock_pids}
            if key == "nginx":
                parts["proxy"] = nginx_pids
            elif key == "gateway":
                parts["proxy"] = tcp_gw[2]
            elif key == "gateway-alt":
                parts["proxy"] = unix_gw[2]
            elif key != "direct":
                parts["proxy"] = lambda sc=sc: sc.pids("gateway")
            if key.startswith("t"):
                parts["sidecar tailscaled"] = lambda sc=sc: sc.pids("tailscaled")
                parts["client tailscaled"] = node_pids(client_node[key])
            res.sdk.append(Path_(key, label, w, parts=parts))
        print(f"SDK client: {len(res.sdk)} paths: {args.rounds} rounds x {args.calls} calls (1 client) "
              f"+ {args.calls * 2} calls ({args.concurrency} clients) each", flush=True)
        measure(res.sdk, args.rounds, args.calls, args.concurrency)
        for w in workers:
            w.close()
        workers.clear()
    alt.stop()
    nginx.stop()

    for route in args.sse_routes:
        name, _, env_text = route.partition("+")
        overrides = sidecar_env(env_text.split("+")) if env_text else {}
        sc = tun if name == "tailnet-tun" else us
        for other in sidecars:  # one sidecar at a time: the other's memory and CPU stay out of the figures
            if other is not sc:
                other.stop()
        sc.stop()  # fresh for each route: memory grown by earlier work would hide the cost
        base_env = sc.extra_env
        sc.extra_env = {**base_env, **overrides}
        try:
            sc.start()
        finally:
            sc.extra_env = base_env
        cli_tun.wait_for_peers({sc.dns_name})
        if name == "gateway":
            base, extra_args = sc.gateway_route()
            argv, where = ["--base", base, *extra_args], sc.ns
        elif name in ("tailnet", "tailnet-tun"):
            argv, where = ["--base", f"http://{sc.dns_name}"], cli_tun
        else:
            raise SystemExit(f"--sse-routes: unknown route {name!r} (gateway, tailnet, tailnet-tun, each "
                             "optionally +KEY=VALUE for the sidecar's environment)")
        print(f"idle SSE sessions, route {route}: up to {args.sse_target} ...", flush=True)
        res.sse.append(hold_sessions(route, sc, argv, where, workdir, args.sse_target, args.sse_step,
                                     args.sse_batch, args.sse_idle))
    return res


# ---- the report ------------------------------------------------------------------------------


def report(args: argparse.Namespace, res: Results, load: LoadSampler) -> str:
    command = ".venv/bin/python bench/sidecar_bench.py" + (" " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "")
    lines = [
        "## Sidecar: latency, throughput, idle SSE sessions",
        "",
        f"Produced by `{command}` (as root) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{load.describe()}. mcp {_version('mcp')}, tailscale {_ts_version()}, headscale {_hs_version()}, "
        f"nginx {Nginx.version()}, wrk {wrk_version()}.",
        "",
        "The pod: the image's entrypoint (`mcp-tailnet-sidecar run`: containerboot, userspace tailscaled, serve, "
        f"the gateway) as uid {NONROOT_UID} in a network namespace with the stock MCP server on "
        f"127.0.0.1:{STOCK_PORT}: the default non-root pair, so serve proxies to the gateway's TCP listener "
        f"({res.target}). Policy and audit on: a policy file allowing `add` and `echo` (everything else denied), "
        "audit lines at info level. Beside them in the same namespace: a second gateway as root on a unix "
        f"socket, and nginx on {NGINX_LISTEN} (`proxy_buffering off`, upstream keepalive, Host rewritten to the "
        "server's, one worker, an access-log line per request). Tailnet clients are other nodes on the lab "
        "headscale, calling by MagicDNS name.",
    ]
    if res.native:
        lines += _report_native(args, res.native)
    if res.sdk:
        lines += _report_sdk(args, res.sdk)
    if res.sse:
        lines += _report_sse(args, res.sse)
    return "\n".join(lines) + "\n"


def _report_native(args: argparse.Namespace, paths: list[NativePath]) -> list[str]:
    rows = native_rows(paths)
    parts = ["proxy", "server", "sidecar tailscaled", "client tailscaled", "generator"]
    lines = [
        "",
        "### Native closed loop: wrk, stateless 2026-07-28 `tools/call`",
        "",
        f"wrk (`bench/mcp_tools_call.lua`) on 1 and {args.concurrency} kept-alive connections, each sending its "
        "next call when the last one answered: one POST per call, no session, `Mcp-Method: tools/call`, "
        "`Mcp-Name: add`, `MCP-Protocol-Version: 2026-07-28`, `params._meta` with protocol version, client info "
        "and capabilities; every answer checked for the tool's result. wrk cannot dial a unix socket, so the root "
        "gateway is driven by `bench/raw_load.py` (the same request, one blocking socket per connection) and "
        "compared with the same generator on the direct path. The tailnet floor: a plain userspace tailscaled "
        "node (root, `tailscale serve --http=80` to nginx in front of its own stock server), timed from the same "
        "TUN client against wrk inside that node's namespace: what serve, netstack and WireGuard cost with a C "
        "proxy behind them. "
        f"{args.native_rounds} rounds of {args.native_seconds:g} s per path and connection count, in rotating "
        "order after a discarded warm-up; p50/p99/calls/s are medians over rounds, the columns against direct "
        "are medians of per-round pairs. CPU is user + system time from /proc over every timed run, divided by "
        "the calls; \"proxy\" is the gateway's Python process (or nginx's master + worker). New connections: TCP "
        "connections accepted in the pod's namespace per 1,000 calls (a kept-alive path accepts ~0).",
        "",
        "| path | generator | conns | p50 | p99 | calls/s | p50 added vs direct | throughput vs direct "
        "| CPU ms/call: " + " / ".join(parts) + " | new conns per 1k calls | failed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        cpu = " / ".join(f"{r.cpu_ms[n]:.3f}" if n in r.cpu_ms else "—" for n in parts)
        lines.append(
            f"| {r.path.label} | {r.path.generator} | {r.connections} | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms "
            f"| {r.rate:,.0f} | " + ("baseline | baseline" if r.added_ms is None else
                                   f"{r.added_ms:+.2f} ms | {r.ratio:.0%}")
            + f" | {cpu} | {r.opens_per_1000:.1f} | {r.failed} of {r.requests:,} |")
    lines.append("")
    by = {(r.path.key, r.connections): r for r in rows}
    ng = [by.get(("nginx", c)) for c in (1, args.concurrency)]
    for key in ("gateway-tcp", "gateway-unix", "tailnet"):
        mine = [by.get((key, c)) for c in (1, args.concurrency)]
        if not all(mine) or not all(ng):
            continue
        added = [m.added_ms for m in mine]
        ratio = [m.ratio for m in mine]
        cpu = [m.cpu_ms.get("proxy", 0.0) for m in mine]
        label = mine[0].path.label
        floor = [by.get(("tailnet-nginx", c)) for c in (1, args.concurrency)]
        beside = (f" nginx beside it: {ng[0].added_ms:+.2f} / {ng[1].added_ms:+.2f} ms, {ng[0].ratio:.0%} / "
                  f"{ng[1].ratio:.0%}, {ng[0].cpu_ms.get('proxy', 0):.3f} / {ng[1].cpu_ms.get('proxy', 0):.3f} ms CPU "
                  "per call.")
        if key == "tailnet" and all(floor):
            beside = (f" The same through serve to nginx instead (the floor): {floor[0].added_ms:+.2f} / "
                      f"{floor[1].added_ms:+.2f} ms, {floor[0].ratio:.0%} / {floor[1].ratio:.0%}; that node's "
                      f"tailscaled {floor[0].cpu_ms.get('sidecar tailscaled', 0):.2f} / "
                      f"{floor[1].cpu_ms.get('sidecar tailscaled', 0):.2f} ms CPU per call.")
        lines.append(
            f"- Targets, {label} (1 / {args.concurrency} connections): p50 added < 1 ms: "
            f"**{added[0]:+.2f} / {added[1]:+.2f} ms** ({_verdict(all(a < 1 for a in added))}); throughput >= 80 % "
            f"of direct: **{ratio[0]:.0%} / {ratio[1]:.0%}** ({_verdict(all(x >= 0.8 for x in ratio))}); gateway "
            f"CPU per relayed call <= 1 ms: **{cpu[0]:.2f} / {cpu[1]:.2f} ms** ({_verdict(all(c <= 1 for c in cpu))})."
            + beside)
    for r in rows:
        if r.failed:
            lines.append(f"- {r.path.label}, {r.connections} connections: {r.failed} failed calls; first: "
                         f"`{r.first_bad[:160]}`")
    return lines


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _report_sdk(args: argparse.Namespace, paths: list[Path_]) -> list[str]:
    direct = paths[0]
    med = statistics.median
    lines = [
        "",
        "### The `mcp` SDK client (Streamable HTTP sessions)",
        "",
        "The stock server's `echo` through the `mcp` SDK client, one session per client, closed loop. "
        f"{args.rounds} rounds; each round times every path ({args.calls} calls with 1 client, then "
        f"{args.calls * 2} calls over {args.concurrency} clients) in rotating order; one warm-up pass discarded. "
        "p50/p99 pool every 1-client call; calls/s is the median over rounds; the columns against direct are "
        "medians of per-round pairs. This client costs more CPU per call than any proxy here (its column below), "
        "so these rows show what an SDK user sees, not what the proxy costs: the wrk table does that.",
        "",
        f"| path | p50 | p99 | calls/s, 1 client | calls/s, {args.concurrency} clients | p50 added vs direct "
        f"| throughput vs direct (1 / {args.concurrency} clients) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in paths:
        added = med([a - b for a, b in zip(p.round_p50, direct.round_p50)]) * 1000
        r1 = med([a / b for a, b in zip(p.round_seq_rate, direct.round_seq_rate)])
        rc = med([a / b for a, b in zip(p.round_conc_rate, direct.round_conc_rate)])
        lines.append(
            f"| {p.label} | {percentile(p.seq_lat, 50) * 1000:.2f} ms | {percentile(p.seq_lat, 99) * 1000:.2f} ms "
            f"| {med(p.round_seq_rate):.0f} | {med(p.round_conc_rate):.0f} | "
            + ("baseline | baseline |" if p is direct else f"{added:+.2f} ms | {r1:.0%} / {rc:.0%} |"))

    def per_call(p: Path_, part: str) -> float:
        return p.cpu.get(part, 0.0) / max(1, p.calls_timed) * 1000

    names = ["client", "client tailscaled", "sidecar tailscaled", "proxy", "server"]
    lines += [
        "",
        "CPU time per call (user + system ms from /proc around every timed pass; \"proxy\" is the gateway or "
        "nginx; kernel work in softirq context, e.g. TUN packet handling, is charged to no process):",
        "",
        "| path | " + " | ".join(names) + " | total |",
        "| --- |" + " ---: |" * (len(names) + 1),
    ]
    for p in paths:
        lines.append(f"| {p.label} | " + " | ".join(f"{per_call(p, n):.2f}" if n in p.cpu else "—" for n in names)
                     + f" | {sum(per_call(p, n) for n in p.cpu):.2f} |")
    for p in paths:
        if p.errors:
            lines.append(f"- {p.label}: {sum(p.errors.values())} of {p.calls_timed} timed calls failed (not in the "
                         "figures): " + "; ".join(f"{k} ({v}x)" for k, v in p.errors.items()))
    return lines


def _report_sse(args: argparse.Namespace, sse: list[SseResult]) -> list[str]:
    lines = ["", "### Idle SSE sessions through one sidecar", "",
             f"Legacy SSE transport (`GET /sse`, then `initialize` and `notifications/initialized` on the "
             f"session's message endpoint), opened in batches of {args.sse_batch} up to {args.sse_target}, then "
             f"left idle {args.sse_idle:.0f} s (gateway keepalives every 15 s) before 20 sessions are asked "
             "to call `echo` to show they still work. Routes: `gateway` = a client in the pod straight into the "
             "gateway's listener; `tailnet` = a TUN client node by MagicDNS name through serve of the userspace "
             "non-root sidecar; `tailnet-tun` = the same to the TUN sidecar; `+KEY=VALUE` = that route with the "
             "variable set in the sidecar's environment (containerboot passes it to tailscaled). Only the "
             "measured sidecar runs, started fresh per route. Memory is the resident set (VmRSS) of the sidecar's "
             "processes, what its container holds: the gateway (Python), containerboot and tailscaled; kernel TCP "
             "memory (sockstat, the sidecar's namespace) is shown beside it, since TUN mode keeps its socket "
             "buffers there. Target: 2,000 sessions within 256 MiB.",
             "",
             "| route | sessions held | still answering | sidecar RSS before | after | per session "
             "| gateway / tailscaled / containerboot after | tailscaled goroutines before / after (a floor: the dump stops at 1 MiB) "
             "| kernel TCP memory after | within 256 MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |"]
    for s in sse:
        parts = " / ".join(f"{s.after.get(k, 0) / 1024:.0f}" for k in ("gateway", "tailscaled", "containerboot"))
        lines.append(
            f"| {s.route} | {s.held:,} of {s.target:,} | {s.alive} of {s.checked} | {s.total_before / 1024:.0f} MiB "
            f"| {s.total_after / 1024:.0f} MiB | {s.per_session_kib:.1f} KiB | {parts} MiB "
            f"| {s.goroutines_before:,} / {s.goroutines_after:,} | {s.kernel_tcp_after / 1024:.1f} MiB | "
            f"{'yes' if s.total_after <= 256 * 1024 and s.held >= s.target else '**no**'} |")
    lines.append("")
    for s in sse:
        growth = ", ".join(f"{n:,}: {kib / 1024:.0f} MiB" for n, kib in s.steps)
        ts_growth = (s.after.get("tailscaled", 0) - s.before.get("tailscaled", 0)) / max(1, s.held)
        per_g = (s.goroutines_after - s.goroutines_before) / max(1, s.held)
        lines.append(f"- {s.route}: sidecar RSS while opening: {growth}; opening took {s.open_secs:.0f} s; "
                     f"tailscaled grew {ts_growth:.1f} KiB per session. The stock MCP "
                     f"server (not part of the sidecar) went from {s.stock_before / 1024:.0f} to "
                     f"{s.stock_after / 1024:.0f} MiB.")
        if s.failed or s.errors:
            lines.append(f"  - limit reached: {s.failed} session(s) failed to open; errors: "
                         + "; ".join(f"{k} ({v}x)" for k, v in s.errors.items()))
    return lines


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _ts_version() -> str:
    out = subprocess.run([str(binary("tailscale")), "version"], capture_output=True, text=True).stdout
    return out.split("\n", 1)[0].strip() or "?"


def _hs_version() -> str:
    return binary("headscale").parent.name.removeprefix("headscale-")


def write_doc(section: str) -> None:
    block = f"{START}\n{section}{END}\n"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END) + r"\n?", lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--calls", type=int, default=100, help="calls per path per round with 1 client (x2 for "
                                                                 "the concurrent pass)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sse-target", type=int, default=2000)
    parser.add_argument("--sse-step", type=int, default=250, help="sessions opened between memory samples")
    parser.add_argument("--sse-batch", type=int, default=50, help="sessions opening at once")
    parser.add_argument("--sse-idle", type=float, default=20.0, help="seconds the sessions stay idle at the end")
    parser.add_argument("--sse-routes", default="gateway,tailnet,tailnet+GOMEMLIMIT=96MiB,tailnet-tun",
                        type=lambda s: [r for r in s.split(",") if r],
                        help="idle-SSE routes in order (gateway, tailnet, tailnet-tun; +KEY=VALUE adds sidecar env); "
                             "empty for none")
    parser.add_argument("--phases", default="native,sdk", type=lambda s: set(s.split(",")),
                        help="timing phases: native (wrk), sdk (the mcp SDK client)")
    parser.add_argument("--native-rounds", type=int, default=5)
    parser.add_argument("--no-tailnet-floor", dest="tailnet_floor", action="store_false",
                        help="skip the serve -> nginx node (the tailnet's floor with a C proxy)")
    parser.add_argument("--native-seconds", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--sidecar-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra sidecar settings (e.g. where the gateway listens)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the benchmark needs root (network namespaces, TUN, tailscaled serve to a unix socket)")
    # SIGTERM unwinds like Ctrl-C, so sidecars, nodes, namespaces and headscale are cleaned up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    section = run(args)
    print(section)
    if not args.no_write:
        write_doc(section)
        print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
