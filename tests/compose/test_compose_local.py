"""The local compose variant, real images, real headscale: reachable by hostname over the
tailnet, from nowhere else, under a stable name.

The client is the stack's own: a tailscale container in userspace mode and, in its
network namespace, the sidecar image's `mcp-tailnet-sidecar doctor` (handshake, tools,
one tool call) through that node's HTTP proxy, by MagicDNS name. Answers are checked
for a per-run marker that only a real call through the inspector to the cluster can
return.
"""

from __future__ import annotations

import json
import secrets

import pytest

from mcp_tailnet_lab import demo
from mcp_tailnet_lab.pods import LABEL_RUN
from mcp_tailnet_lab.waiting import wait_for

from .conftest import BASE_DOMAIN, EXAMPLE, SERVER, SHIPPED_POLICY, SHOP, Stack

pytestmark = pytest.mark.slow


def _steps(out: str) -> list[str]:
    return [line.split(":")[0].strip() for line in out.splitlines() if line[:4] in ("ok  ", "FAIL", "WARN")]


def _call_excerpt(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("ok   call:")]
    assert lines, f"no successful call in the doctor's report:\n{out}"
    return lines[-1]


def test_up_wait_returned_only_after_the_client_called_a_tool_by_hostname(local_stack: Stack):
    report = local_stack.project.logs("doctor")
    assert "ok   handshake: MCP protocol" in report and "server eks-inspector" in report, report
    call = _call_excerpt(report)
    assert f"web-{local_stack.marker}" in call and f"api-{local_stack.marker}" in call, call
    assert local_stack.container("doctor").attrs["State"]["Health"]["Status"] == "healthy"


@pytest.mark.parametrize("host", [SERVER, f"{SERVER}.{BASE_DOMAIN}"])
@pytest.mark.parametrize("path", ["/mcp", "/sse"])
def test_inspector_by_hostname_over_both_transports(local_stack: Stack, host: str, path: str):
    r = local_stack.doctor(f"http://{host}{path}", "get", {"resource": "deployments", "namespace": SHOP})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert _steps(out) == ["ok   dns", "ok   tcp", "ok   bypass", "ok   http", "ok   whoami", "ok   handshake",
                           "ok   tools", "ok   call"], out
    # the sidecar says who it saw: the client's tagged node, as tailscale serve verified it
    whoami = next(line for line in out.splitlines() if line.startswith("ok   whoami:"))
    assert "tag:mcp-client" in whoami and "every tool allowed" in whoami, whoami
    tools = next(line for line in out.splitlines() if line.startswith("ok   tools:"))
    for name in ("get", "describe", "logs", "events"):
        assert name in tools, tools
    call = _call_excerpt(out)
    assert f"web-{local_stack.marker}" in call and f"api-{local_stack.marker}" in call, call


@pytest.mark.parametrize("path", ["/mcp", "/sse"])
def test_stock_sdk_server_with_default_settings_behind_the_sidecar_image(local_stack: Stack, path: str):
    """The example pairing: an unchanged `mcp` SDK server (DNS-rebinding protection on)."""
    token = secrets.token_hex(8)
    r = local_stack.doctor(f"http://{EXAMPLE}{path}", "echo", {"text": token})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "server stock-mcp-server" in out and "3 tool(s): echo, add, sleep" in out, out
    assert _call_excerpt(out) == f"ok   call: echo -> {token}"


def test_no_container_publishes_a_host_port(local_stack: Stack):
    containers = local_stack.project.containers(local_stack.client)
    services = {c.labels["com.docker.compose.service"] for c in containers}
    assert {"netns", "sidecar", "inspector", "example-netns", "example-sidecar", "example-server",
            "headscale", "tailnet-client", "doctor"} <= services, services
    for c in containers:
        assert demo.published_ports(c) == {}, f"{c.name} publishes {demo.published_ports(c)}"
        assert not c.attrs["HostConfig"].get("PublishAllPorts"), c.name
        assert c.attrs["HostConfig"]["NetworkMode"] != "host", c.name


_PEER_SCRIPT = """
import json, socket, sys
out = {}
for port in json.loads(sys.argv[2]):
    try:
        socket.create_connection((sys.argv[1], port), timeout=3).close(); out[port] = "connected"
    except ConnectionRefusedError:
        out[port] = "refused"
    except OSError as exc:
        out[port] = "error: %s" % (exc.strerror or exc)
print(json.dumps(out))
"""


def _from_peer(stack: Stack, address: str, ports: list[int]) -> dict[int, str]:
    """Connect attempts from a fresh container on the stack's docker network (not on the tailnet)."""
    image = stack.images["doctor"]  # any image of ours with python3
    container = stack.client.containers.run(
        image, entrypoint=["python3", "-c", _PEER_SCRIPT], command=[address, json.dumps(ports)],
        network=stack.network, detach=True, labels={LABEL_RUN: stack.run_id},
    )
    try:
        code = container.wait(timeout=120)["StatusCode"]
        logs = container.logs().decode(errors="replace")
        assert code == 0, f"peer container failed: {logs}"
        return {int(k): v for k, v in json.loads(logs.strip().splitlines()[-1]).items()}
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("pair", ["inspector", "example"])
def test_nothing_outside_the_tailnet_can_connect_to_any_port_of_the_pair(local_stack: Stack, pair: str):
    netns_service, server_service = {"inspector": ("netns", "inspector"),
                                     "example": ("example-netns", "example-server")}[pair]
    netns = local_stack.container(netns_service)
    listeners = demo.netns_listeners(netns)
    # What the namespace really listens on: the MCP server on loopback (ours on its alias,
    # the stock example on 127.0.0.1), and tailscaled's peer API, which userspace mode binds
    # on every interface.
    server_address = {"inspector": "127.0.0.3", "example": "127.0.0.1"}[pair]
    assert any(item.address == server_address and item.port == 8080 for item in listeners), listeners
    wildcard = [item for item in listeners if item.address in ("0.0.0.0", "::")]
    assert wildcard, f"expected tailscaled's peer API on a wildcard address, found {listeners}"
    address = demo.container_ip(netns, local_stack.network)
    ports = sorted({item.port for item in listeners} | {80, 443})

    # Inside the namespace those listeners answer (the list is real, the processes are up) ...
    server = local_stack.container(server_service)
    for item in wildcard:
        check = server.exec_run(["python3", "-c", f"import socket; socket.create_connection(('{address}', {item.port}), 3)"])
        assert check.exit_code == 0, f"{item} does not answer inside the namespace: {check.output!r}"

    # ... from a container on the same docker network and from this host, not one does.
    from_peer = _from_peer(local_stack, address, ports)
    from_host = {port: demo.try_connect(address, port) for port in ports}
    assert set(from_peer) == set(ports)
    reached = {f"peer:{p}": r for p, r in from_peer.items() if r == "connected"}
    reached |= {f"host:{p}": r for p, r in from_host.items() if r == "connected"}
    assert not reached, f"reachable from outside the tailnet: {reached} (listening: {listeners})"
    assert all(r == "refused" for r in list(from_peer.values()) + list(from_host.values())), (from_peer, from_host)


# From the tailnet client's namespace (the doctor shares it): a CONNECT tunnel through the
# client's HTTP proxy to <ip>:<port>, then one request whose Host is the attacker's choice.
_TUNNEL = """
import socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
c = socket.create_connection(("127.0.0.1", 1055), 10); c.settimeout(30)
c.sendall(("CONNECT %s:%d HTTP/1.1\\r\\nHost: %s:%d\\r\\n\\r\\n" % (ip, port, ip, port)).encode())
head = c.recv(4096)
if not head.startswith(b"HTTP/1.1 200"):
    print("refused " + head.split(b"\\r\\n", 1)[0].decode(errors="replace")); sys.exit()
c.sendall(b"GET /not-mcp HTTP/1.1\\r\\nHost: 127.0.0.1:8080\\r\\nConnection: close\\r\\n\\r\\n")
data = b""
while chunk := c.recv(4096):
    data += chunk
print("answered " + data.split(b"\\r\\n", 1)[0].decode(errors="replace") if data else "connected-no-answer")
"""
ALLOW_ALL = {"tagOwners": {"tag:mcp": [], "tag:mcp-client": []},
             "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}


def _tunnel(stack: Stack, ip: str, port: int) -> str:
    out = stack.container("doctor").exec_run(["python3", "-c", _TUNNEL, ip, str(port)])
    assert out.exit_code == 0, out.output
    return out.output.decode().strip()


def _tailnet_ip(stack: Stack, sidecar: str) -> str:
    out = stack.container(sidecar).exec_run(["tailscale", "--socket=/tmp/tailscaled.sock", "ip", "-4"])
    assert out.exit_code == 0, out.output
    return out.output.decode().strip()


def _readiness(stack: Stack, sidecar: str) -> tuple[int, dict]:
    out = stack.container(sidecar).exec_run(["mcp-tailnet-sidecar", "probe", "ready"], demux=True)
    text = b"".join(part or b"" for part in out.output).decode()
    body = json.loads(text[text.index("{"):])  # "ready: ok {...}" / "ready: NOT ok {...}"
    return out.exit_code, body["checks"]


def test_under_allow_all_the_inspector_stays_out_of_reach_and_the_example_is_not_ready(local_stack: Stack):
    """Issue 12 §1 with the compose pairs: under a policy that opens every port, a tailnet peer
    reaches the stock example server on 127.0.0.1:8080 past the gateway (the forwarder's target),
    and its sidecar says so (not ready, naming the grant); the inspector, on its loopback alias,
    is refused on the same port and its sidecar stays ready. The shipped policy then closes both."""
    inspector_ip, example_ip = _tailnet_ip(local_stack, "sidecar"), _tailnet_ip(local_stack, "example-sidecar")

    def until(what: str, check) -> None:  # noqa: ANN001
        wait_for(check, what, 90, interval=2.0)

    def bypass_answers() -> str | None:
        answer = _tunnel(local_stack, example_ip, 8080)
        return answer if answer.startswith("answered") else None

    local_stack.set_policy(ALLOW_ALL)
    try:
        until("the example sidecar to see the open port", lambda: _readiness(local_stack, "example-sidecar")[0] == 1)
        code, checks = _readiness(local_stack, "example-sidecar")
        detail = checks["exposure"]["detail"]
        assert not checks["exposure"]["ok"] and all(checks[n]["ok"] for n in ("tailnet", "serve", "upstream")), checks
        assert "port 8080" in detail and '"dst": ["tag:mcp:80"]' in detail, detail
        code, checks = _readiness(local_stack, "sidecar")
        assert code == 0 and "loopback alias" in checks["exposure"]["detail"], checks
        # the same tunnel: the stock server on 127.0.0.1 answers, the inspector on 127.0.0.3 does not
        until("the tunnel to reach the example's 127.0.0.1:8080", bypass_answers)
        assert bypass_answers().startswith("answered HTTP/1.1")
        assert _tunnel(local_stack, inspector_ip, 8080).startswith("refused"), "the inspector was reached"
        # the doctor, from the same client, says the same
        example = local_stack.doctor(f"http://{EXAMPLE}/mcp", "echo", {"text": "hi"})
        assert "WARN bypass: port 8080" in example.stdout and "tag:mcp:80,443" in example.stdout, example.stdout
        ours = local_stack.doctor(f"http://{SERVER}/mcp", "get", {"resource": "namespaces"})
        assert "ok   bypass: port 8080" in ours.stdout, ours.stdout
    finally:
        local_stack.set_policy(json.loads(SHIPPED_POLICY.read_text()))
    until("the example sidecar to be ready again", lambda: _readiness(local_stack, "example-sidecar")[0] == 0)
    code, checks = _readiness(local_stack, "example-sidecar")
    assert checks["exposure"]["ok"] and "port 8080 is closed to peers" in checks["exposure"]["detail"], checks


def test_the_auth_key_never_appears_in_logs_or_container_config(local_stack: Stack):
    key_file = local_stack.container("sidecar").exec_run(["cat", "/run/tailnet-keys/server.key"])
    assert key_file.exit_code == 0, key_file.output
    key = key_file.output.decode().strip()
    assert key.startswith("hskey-auth-") or len(key) > 20, "the key file does not hold a key"
    logs = local_stack.project.run("logs", "--no-color", check=False).stdout
    assert "tailnet-keys: wrote" in logs and key not in logs
    for c in local_stack.project.containers(local_stack.client):
        assert key not in json.dumps(c.attrs), f"{c.name}'s configuration carries the key"


def _server_nodes(stack: Stack) -> list[dict]:
    return [n for n in stack.headscale_nodes() if "tag:mcp" in (n.get("tags") or n.get("forced_tags") or [])
            or (n.get("name") or "").startswith((SERVER, EXAMPLE))]


def _assert_same_node(stack: Stack, before: dict[str, dict]) -> None:
    nodes = _server_nodes(stack)
    names = sorted(n["given_name"] for n in nodes)
    assert names == sorted(before), f"server nodes are now {names}, were {sorted(before)} (a -1 suffix = lost state)"
    for n in nodes:
        assert n["id"] == before[n["given_name"]]["id"], f"{n['given_name']} registered again as a new node"
    r = stack.doctor(f"http://{SERVER}/mcp", "get", {"resource": "deployments", "namespace": SHOP})
    assert r.returncode == 0 and f"web-{stack.marker}" in _call_excerpt(r.stdout), r.stdout + r.stderr


def test_hostname_stays_the_same_after_restart_and_down_up(local_stack: Stack):
    """Runs last in this module: it restarts the stack."""
    before = {n["given_name"]: n for n in _server_nodes(local_stack)}
    assert sorted(before) == [SERVER, EXAMPLE], f"server nodes at start: {sorted(before)}"
    state = local_stack.container("sidecar").exec_run(["ls", "/var/lib/mcp-tailnet"])
    assert b"tailscaled.state" in state.output, state.output

    local_stack.project.run("restart", timeout=600)
    local_stack.project.up()
    _assert_same_node(local_stack, before)

    local_stack.project.run("down", "--remove-orphans", "-t", "20", timeout=600)  # keeps the volumes
    assert not local_stack.project.containers(local_stack.client)
    local_stack.project.up()
    _assert_same_node(local_stack, before)
