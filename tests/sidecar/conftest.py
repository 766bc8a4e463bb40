"""Real processes for the sidecar tests: the stock MCP server and the gateway command.

Everything runs as the real thing would: the stock server is `python -m
mcp_tailnet_lab.stock_mcp_server` (SDK defaults), the gateway is the
`mcp-tailnet-sidecar gateway` command on a unix socket. Sockets live in short /tmp
directories (sun_path is 108 bytes) with a per-run prefix.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

VENV_BIN = Path(sys.executable).parent
SIDECAR = str(VENV_BIN / "mcp-tailnet-sidecar")
NONROOT_UID = 65532  # the images' user (images/sidecar/Dockerfile, manifests' runAsUser)
# The dev venv's interpreter lives under /root (mode 0700), out of reach of uid 65532, so
# the non-root sidecar runs on the system's Python 3.11 with the venv's site-packages
# (same packages, same minor version, as in the image).
SYSTEM_PYTHON = "/usr/bin/python3"
_NONROOT_MAIN = ("import site, sys; sys.path.insert(0, {sp!r}); site.addsitedir({sp!r}); "
                 "from mcp_tailnet_sidecar.cli import main; sys.exit(main())")
TAILNET_HOST = "mcp.tailnet.test"  # the name the gateway is told it has, in tests without tailscaled


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        try:
            if predicate():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def nonroot_sidecar_argv(*args: str) -> list[str]:
    """`mcp-tailnet-sidecar ARGS` as uid/gid 65532, no supplementary groups, no new privileges."""
    site_packages = next(Path(sys.prefix).glob("lib/python3.*/site-packages"))
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() != "True":
        raise AssertionError(f"the non-root sidecar tests need Python 3.11+ at {SYSTEM_PYTHON} "
                             f"(uid {NONROOT_UID} cannot run the venv's interpreter under /root)")
    return ["setpriv", f"--reuid={NONROOT_UID}", f"--regid={NONROOT_UID}", "--clear-groups", "--no-new-privs",
            SYSTEM_PYTHON, "-S", "-c", _NONROOT_MAIN.format(sp=str(site_packages)), *args]


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class StockServer:
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def stock_server() -> Iterator[StockServer]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
                 "the stock MCP server to listen", proc=proc)
        yield StockServer(port, proc)
    finally:
        stop(proc)


@dataclass
class GatewayProc:
    dir: Path
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.dir / "gw.sock"

    @property
    def health_socket(self) -> Path:
        return self.dir / "health.sock"

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url=f"http://{TAILNET_HOST}",
                            **kw)

    def health(self, path: str) -> httpx.Response:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.health_socket))) as c:
            return c.get(f"http://localhost{path}")

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text().splitlines():
            out.append(json.loads(line))  # every line must be JSON: fails loudly otherwise
        return out

    def audit_lines(self) -> list[dict]:
        return [r for r in self.log_lines() if r.get("event") == "tool_call"]

    def stop(self) -> int:
        return stop(self.proc)


@pytest.fixture
def gateway_factory(short_tmp: Path):
    """Start `mcp-tailnet-sidecar gateway` with extra env; stopped afterwards."""
    made: list[GatewayProc] = []

    def start(upstream: str, **env: str) -> GatewayProc:
        d = Path(tempfile.mkdtemp(prefix="g", dir=short_tmp))
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "TS_"))},
            "SIDECAR_UPSTREAM_URL": upstream,
            "SIDECAR_GATEWAY_SOCKET": str(d / "gw.sock"),
            "SIDECAR_HEALTH_SOCKET": str(d / "health.sock"),
            "SIDECAR_ALLOWED_HOSTS": TAILNET_HOST,
            "TS_SOCKET": str(d / "no-tailscaled.sock"),  # no tailscaled here: names come from the env
            "SIDECAR_DRAIN_TIMEOUT": "10",
            **env,
        }
        log_path = d / "gateway.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen([SIDECAR, "gateway"], env=full_env, stdout=log, stderr=log)
        log.close()
        gw = GatewayProc(d, proc, log_path, full_env)
        made.append(gw)
        wait_for(lambda: gw.health("/healthz").status_code == 200, "the gateway health socket", proc=proc)
        wait_for(gw.socket.exists, "the gateway socket", proc=proc)
        return gw

    yield start
    for gw in made:
        gw.stop()
