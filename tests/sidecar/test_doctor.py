"""`doctor` names the step that fails and what to do; all green against a live server."""

from __future__ import annotations

import io
import socket
import subprocess

import pytest

from mcp_tailnet_sidecar.doctor import Doctor

from .conftest import SIDECAR, free_port


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIDECAR, "doctor", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", ["/mcp", "/sse"])
def test_all_steps_pass_against_a_live_server(stock_server, path):
    r = doctor("--url", f"http://127.0.0.1:{stock_server.port}{path}")
    assert r.returncode == 0, r.stdout + r.stderr
    steps = [line.split(":")[0] for line in r.stdout.splitlines() if not line.startswith(" ")]
    assert steps == ["ok   dns", "ok   tcp", "ok   bypass", "ok   http", "ok   handshake", "ok   tools"]
    assert "3 tool(s): echo, add, sleep" in r.stdout


def test_unresolvable_name_fails_at_dns():
    r = doctor("--url", "http://no-such-node.invalid/mcp")
    assert r.returncode == 1
    assert r.stdout.startswith("FAIL dns") and "what to do:" in r.stdout and "tailscale status" in r.stdout


def test_closed_port_fails_at_tcp():
    r = doctor("--url", f"http://127.0.0.1:{free_port()}/mcp", "--timeout", "3")
    assert r.returncode == 1
    assert "FAIL tcp" in r.stdout and "tailscale ping" in r.stdout


def test_http_failure_is_explained(stock_server):
    # through a "proxy" that is really the MCP server, the request arrives in absolute form for a
    # path the server has no route for: a 404 at the HTTP step, with the serve/path hint. (uvicorn
    # parses an absolute-form target to its path with httptools, to the whole URL with h11.)
    r = doctor("--url", "http://some-node/no-such-path", "--proxy", f"http://127.0.0.1:{stock_server.port}")
    assert r.returncode == 1
    assert "ok   dns: resolved by the proxy" in r.stdout and "ok   tcp" in r.stdout
    assert "FAIL http: HTTP 404" in r.stdout and "serve applied" in r.stdout


def _doctor(url: str, bypass_port: int) -> tuple[int, str]:
    out = io.StringIO()
    code = Doctor(url, timeout=5, out=out, bypass_port=bypass_port).run()
    return code, out.getvalue()


def test_bypass_reports_a_closed_mcp_server_port(stock_server):
    code, out = _doctor(f"http://127.0.0.1:{stock_server.port}/mcp", free_port())
    assert code == 0, out
    assert "ok   bypass: port" in out and "is closed to this machine" in out, out


def test_bypass_warns_when_the_mcp_server_port_opens_past_serve(stock_server):
    """Something answers on the node's unserved port: what userspace forwarding to 127.0.0.1
    gives a peer when the policy opens every port. A warning with the rule to use, not a failure."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        code, out = _doctor(f"http://127.0.0.1:{stock_server.port}/mcp", listener.getsockname()[1])
    assert code == 0, out  # the client's path works; the warning is about everyone else's
    assert "WARN bypass: port" in out and "past serve and the gateway" in out, out
    assert '"dst": ["tag:mcp:80,443"]' in out and "what to do:" in out, out
    assert "ok   tools" in out
