"""Real processes for the sidecar tests: the stock MCP server and the gateway command.

Everything runs as the real thing would: the stock server is `python -m
mcp_tailnet_lab.stock_mcp_server` (SDK defaults), the gateway is the
`mcp-tailnet-sidecar gateway` command on a unix socket. Sockets live in short /tmp
directories (sun_path is 108 bytes) with a per-run prefix.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_tailnet_lab.gateway_process import (  # noqa: F401 - SIDECAR, TAILNET_HOST re-exported for the tests
    SIDECAR,
    TAILNET_HOST,
    GatewayProc,
    StockServer,
    start_gateway,
    start_stock_server,
    stop,
)
from mcp_tailnet_lab.ports import free_port  # noqa: F401 - re-exported for the tests
from mcp_tailnet_lab.waiting import wait_for  # noqa: F401 - re-exported for the tests

# A stateless 2026-07-28 `tools/call` of the stock server's `add`, as raw bytes and header pairs:
# what the UpstreamClient tests send straight to the stock server.
ADD_CALL = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "add", "arguments": {"a": 2, "b": 3},
                                  "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                                            "io.modelcontextprotocol/clientCapabilities": {}}}}).encode()
ADD_CALL_HEADERS = [(b"content-type", b"application/json"), (b"accept", b"application/json, text/event-stream"),
                    (b"mcp-method", b"tools/call"), (b"mcp-name", b"add"), (b"mcp-protocol-version", b"2026-07-28")]

NONROOT_UID = 65532  # the images' user (images/sidecar/Dockerfile, manifests' runAsUser)
# The dev venv's interpreter lives under /root (mode 0700), out of reach of uid 65532, so
# the non-root sidecar runs on the system's Python 3.11 with the venv's site-packages
# (same packages, same minor version, as in the image).
SYSTEM_PYTHON = "/usr/bin/python3"
_NONROOT_MAIN = ("import site, sys; sys.path.insert(0, {sp!r}); site.addsitedir({sp!r}); "
                 "from mcp_tailnet_sidecar.cli import main; sys.exit(main())")


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


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_run(request):
    """Each test on asyncio's loop and on uvloop's (its transports differ: not asyncio.Transport)."""
    if request.param == "uvloop":
        return pytest.importorskip("uvloop", reason="uvloop is the sidecar's optional `uvloop` extra").run
    return asyncio.run


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def stock_server() -> Iterator[StockServer]:
    server = start_stock_server()
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture
def gateway_factory(short_tmp: Path):
    """Start `mcp-tailnet-sidecar gateway` with extra env; stopped afterwards."""
    made: list[GatewayProc] = []

    def start(upstream: str, **env: str) -> GatewayProc:
        gw = start_gateway(upstream, short_tmp, **env)
        made.append(gw)
        return gw

    yield start
    for gw in made:
        gw.stop()
