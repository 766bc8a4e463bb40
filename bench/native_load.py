"""Native closed-loop load for bench/sidecar_bench.py: wrk, and nginx as the reference proxy.

Why: the `mcp` SDK client costs 3-4 ms of CPU per call, more than the gateway it is meant to
measure, so on a 2-core machine it hides what a proxy adds. wrk (C, Debian's package,
lab/provision.d/15-bench-tools.sh) sends the same pre-built request on kept-alive
connections, each waiting for its answer (closed loop), for a few microseconds of CPU a call.

The request is one stateless MCP 2026-07-28 `tools/call` of the stock server's `add` tool
(REQUEST_BODY, REQUEST_HEADERS: defined here once; bench/mcp_tools_call.lua reads them from
the environment, bench/raw_load.py imports them). nginx (Debian's package) is set up the way a
careful operator would put a C reverse proxy in front of an MCP server: no response buffering
(`proxy_buffering off`, so event streams flow), kept-alive upstream connections, the
upstream's own Host (the stock server answers 421 to a foreign one), one worker process (the
gateway is one process too), an access log line per request (the gateway writes audit lines).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

BENCH = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH / "mcp_tools_call.lua"
RAW_LOAD = BENCH / "raw_load.py"
WRK = "/usr/bin/wrk"
NGINX = "/usr/sbin/nginx"
PROTOCOL = "2026-07-28"

REQUEST_BODY = json.dumps(
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
     "params": {"name": "add", "arguments": {"a": 2, "b": 3},
                "_meta": {"io.modelcontextprotocol/protocolVersion": PROTOCOL,
                          "io.modelcontextprotocol/clientInfo": {"name": "bench-native", "version": "1"},
                          "io.modelcontextprotocol/clientCapabilities": {}}}},
    separators=(",", ":"))
REQUEST_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "Mcp-Method": "tools/call", "Mcp-Name": "add", "MCP-Protocol-Version": PROTOCOL}
# The stock server's answer carries this exactly; the gateway relays the answer's bytes.
EXPECT = '"structuredContent":{"result":5}'
RESULT_PREFIX = "wrk-result "


class Runs(Protocol):
    """Where a command runs: a lab Namespace or TailnetNode (both have popen and exec)."""

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]: ...

    def exec(self, argv: list[str]) -> subprocess.CompletedProcess[str]: ...


def passive_opens(ns: Runs) -> int:
    """TCP connections accepted so far in a namespace (/proc/net/snmp is per network namespace):
    a kept-alive path accepts none per call; a proxy that churns its backend connections does."""
    out = ns.exec(["cat", "/proc/net/snmp"]).stdout
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("Tcp:")]
    return int(rows[1][rows[0].index("PassiveOpens")])


def wrk_env(host: str | None) -> dict[str, str]:
    """The variables bench/mcp_tools_call.lua reads: the request, the answer to expect, the Host."""
    env = {"PATH": "/usr/bin:/bin", "WRK_BODY": REQUEST_BODY, "WRK_EXPECT": EXPECT,
           "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in REQUEST_HEADERS.items())}
    if host:
        env["WRK_HOST"] = host
    return env


@dataclass
class LoadResult:
    """One closed-loop run: what wrk (or raw_load.py) printed, plus the CPU each part spent."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failed: int  # connect/read/write errors, timeouts, and answers that are not a 200 with the result
    first_bad: str = ""
    cpu: dict[str, float] = field(default_factory=dict)  # part -> CPU seconds during the run
    passive_opens: int = 0  # TCP connections accepted in the pod's namespace during the run

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @classmethod
    def parse(cls, stdout: str) -> LoadResult:
        line = next((ln for ln in stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
        if line is None:
            raise RuntimeError(f"no result line in the load generator's output: {stdout[-800:]!r}")
        r = json.loads(line[len(RESULT_PREFIX):])
        # "bad" counts every answer that is not a 200 holding the result (wrk's status_errors too)
        failed = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"] + r["bad"]
        return cls(requests=r["requests"], seconds=r["duration_us"] / 1e6, p50_ms=r["p50_us"] / 1000,
                   p99_ms=r["p99_us"] / 1000, failed=failed, first_bad=r.get("first_bad", ""))


def wrk_argv(url: str, connections: int, seconds: float) -> list[str]:
    threads = min(connections, 2)  # 2 cores: more threads only add switching
    return [WRK, f"-c{connections}", f"-t{threads}", f"-d{seconds:g}s", "--timeout", "10s",
            "-s", str(WRK_SCRIPT), url]


def raw_argv(python: str, target: str, host: str, connections: int, seconds: float) -> list[str]:
    """bench/raw_load.py: the same request over a unix socket, which wrk cannot dial."""
    return [python, str(RAW_LOAD), "--target", target, "--host", host, "--connections", str(connections),
            "--seconds", f"{seconds:g}"]


NGINX_CONF = """\
# bench/native_load.py: nginx in front of the stock MCP server, as the gateway sits in front of it.
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    upstream mcp {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://mcp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {upstream};
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    """Debian's nginx with its own config, pid file and logs, in the bench's namespace."""

    where: Runs
    workdir: Path
    listen: str  # host:port, a loopback alias (out of userspace tailscaled's forwarder's reach)
    upstream: str  # host:port of the stock server
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.workdir, listen=self.listen, upstream=self.upstream))
        log = (self.workdir / "stderr.log").open("ab")
        self.proc = self.where.popen([NGINX, "-p", str(self.workdir), "-c", str(conf), "-e",
                                      str(self.workdir / "error.log")], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}: "
                                   + (self.workdir / "error.log").read_text(errors="replace")[-800:])
            if (self.workdir / "nginx.pid").exists():
                return
            time.sleep(0.2)
        raise RuntimeError(f"nginx did not start within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # nginx: fast shutdown on SIGTERM
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    @staticmethod
    def version() -> str:
        out = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
        return out.rsplit("/", 1)[-1] or "?"


def wrk_version() -> str:
    out = subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    return out.split()[1] if len(out.split()) > 1 else "?"
