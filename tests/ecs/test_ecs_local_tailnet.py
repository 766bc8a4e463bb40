"""The shipped stock-server task definition, run locally as Fargate would, joined to the lab tailnet.

`mcp-tailnet-ecs render --server-image ... --login-server <lab headscale>` renders
ecs/task-definition.stock-server.json; `LocalTask` runs exactly that document in the
real Docker engine (one netns as awsvpc, the definition's env, secrets, command, health
checks, `dependsOn` order). Images are this session's builds: the sidecar from
images/sidecar, the unchanged MCP server from lab/compose/stock-server (the image the
compose example pairs, the `mcp` SDK with default settings).

What differs from Fargate, each an addition through render's own options:
- `--login-server` is the lab headscale (by IP: its server_url), `--env
  TS_DEBUG_USE_DERP_HTTP=true` because the lab's embedded DERP is plain HTTP;
- `--env TS_HOSTNAME=<unique>`: `--hostname` names the inspector task only, and the
  session's headscale is shared, so the stock task gets a per-run name this way;
- the auth key "secret" is a tagged (tag:mcp), reusable, ephemeral headscale key fed to
  LocalTask's stand-in for Secrets Manager.

Proved: a tailnet client (tag:mcp-client; policy: tag:mcp-client -> tag:mcp:80 only)
does an MCP handshake, tools/list and a tool call at http://<hostname>/mcp through its
tailscaled proxy; a peer container on the task's Docker network connects to no port the
task listens on, except userspace tailscaled's PeerAPI, which binds every interface,
accepts the TCP handshake and hangs up without a byte on a non-peer (as
tests/sidecar/test_isolation.py documents). On Fargate the security group with no
inbound rules closes that port too; locally nothing stands in for it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import docker.errors
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_tailnet_ecs import templates
from mcp_tailnet_ecs.cli import main as ecs_cli
from mcp_tailnet_ecs.local_run import LocalTask
from mcp_tailnet_lab import demo, release
from mcp_tailnet_lab.headscale import ALLOW_ALL_POLICY, served_ports_policy
from mcp_tailnet_lab.paths import LAB_DIR
from mcp_tailnet_lab.pods import PodFactory
from mcp_tailnet_lab.waiting import wait_for

from ecs_support import ACCOUNT, REGION

pytestmark = pytest.mark.slow

#: The tag compose gives the example server (docker-compose.yml: EXAMPLE_MCP_IMAGE default).
STOCK_SERVER_TAG = "mcp-tailnet-lab/stock-mcp-server:dev"
STOCK_SERVER_DOCKERFILE = "compose/stock-server/Dockerfile"  # relative to its build context, lab/
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:mcp-tailnet/ts-authkey-AbCdEf"
POLICY = served_ports_policy(ports=(80,))  # tag:mcp-client -> tag:mcp:80 (headscale: no HTTPS)
READY_TIMEOUT_S = 240


def _build_stock_server(client: Any) -> str:
    """The compose example's stock server image (its own Dockerfile, offline from the wheelhouse)."""
    try:
        client.images.build(path=str(LAB_DIR), dockerfile=STOCK_SERVER_DOCKERFILE, tag=STOCK_SERVER_TAG,
                            buildargs=demo.build_args(client), rm=True, forcerm=True, network_mode="bridge")
    except docker.errors.BuildError as exc:
        tail = "".join(str(c.get("stream") or c.get("error") or "") for c in exc.build_log)[-1500:]
        pytest.fail(f"docker build of lab/{STOCK_SERVER_DOCKERFILE} failed: {exc.msg}\n{tail}", pytrace=False)
    return STOCK_SERVER_TAG


def _render(out: Path, *, server_image: str, login_server: str, hostname: str) -> dict[str, Any]:
    """The stock-server task definition as `mcp-tailnet-ecs render` writes it (validated)."""
    code = ecs_cli([
        "render", "--account-id", ACCOUNT, "--region", REGION, "--owner", "acme", "--eks-cluster", "prod",
        "--subnet", "subnet-0123456789abcdef0", "--security-group", "sg-0123456789abcdef0",
        "--secret-arn", SECRET_ARN, "--server-image", server_image, "--login-server", login_server,
        "--env", "TS_DEBUG_USE_DERP_HTTP=true", "--env", f"TS_HOSTNAME={hostname}", "--out", str(out),
    ])
    assert code == 0, "mcp-tailnet-ecs render refused the lab's options"
    return json.loads((out / templates.STOCK_SERVER_TASK_DEFINITION).read_text())


def _cdef(td: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in td["containerDefinitions"] if c["name"] == name)


def _sidecar(task: LocalTask, *args: str) -> Any:
    return task.containers["tailscale"].exec_run(list(args))


@pytest.fixture(scope="module")
def factory(docker_client: Any, docker_run_id: str) -> Iterator[PodFactory]:
    """The task's Docker network and the peer container; removed afterwards."""
    f = PodFactory(docker_client, docker_run_id, prefix="ecs")
    yield f
    failed = f.cleanup()
    if failed:
        raise RuntimeError(f"cleanup left: {'; '.join(failed)}")


@pytest.fixture(scope="module")
def running(docker_client: Any, factory: PodFactory, headscale: Any, repo_images: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    hostname = f"mcp-server-{secrets.token_hex(3)}"
    server_image = _build_stock_server(docker_client)
    td = _render(tmp_path_factory.mktemp("rendered"), server_image=server_image, login_server=headscale.url,
                 hostname=hostname)
    names = release.load().names
    images = {names[d]: tag for d, tag in repo_images.items()}
    authkey = headscale.preauth_key("lab", tags=("tag:mcp",))
    network = factory.network()
    headscale.set_policy(POLICY)
    try:
        with LocalTask(docker_client, td, network.name, images=images, secrets={SECRET_ARN: authkey},
                       start_timeout=READY_TIMEOUT_S) as task:
            task.wait_healthy("tailscale")

            def ready() -> bool:
                return _sidecar(task, "mcp-tailnet-sidecar", "probe", "ready").exit_code == 0

            try:
                wait_for(ready, "the sidecar's readiness (tailnet Running, serve applied, upstream up)", READY_TIMEOUT_S,
                         interval=2.0)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- tailscale:\n{task.logs('tailscale', 40)}") from None
            yield {"task": task, "td": td, "hostname": hostname, "network": network, "authkey": authkey}
    finally:
        headscale.set_policy(ALLOW_ALL_POLICY)


def test_the_task_runs_with_its_definitions_own_values(running: dict[str, Any], headscale: Any) -> None:
    task, td = running["task"], running["td"]
    # render put the lab's options into the sidecar's environment
    sidecar_env = {e["name"]: e["value"] for e in _cdef(td, "tailscale")["environment"]}
    assert sidecar_env["SIDECAR_LOGIN_SERVER"] == headscale.url and sidecar_env["TS_HOSTNAME"] == running["hostname"]
    # dependsOn HEALTHY: the sidecar started only once the server was healthy
    assert [e[1:] for e in task.events][:3] == [("mcp-server", "started"), ("mcp-server", "healthy"),
                                                 ("tailscale", "started")]
    for name, container in task.containers.items():
        cdef = _cdef(td, name)
        container.reload()
        config, host = container.attrs["Config"], container.attrs["HostConfig"]
        env = dict(item.split("=", 1) for item in config["Env"])
        for item in cdef.get("environment") or []:
            assert env[item["name"]] == item["value"], (name, item["name"])
        assert config["Healthcheck"]["Test"] == cdef["healthCheck"]["command"], name
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"], name
        assert host["NetworkMode"].startswith("container:"), name  # one netns, as awsvpc
        assert task.status(name) == ("running", "healthy"), name
    sidecar = _cdef(td, "tailscale")
    assert {s["name"] for s in sidecar["secrets"]} == {"TS_AUTHKEY"}
    assert "TS_AUTHKEY" not in {e["name"] for e in sidecar["environment"]}
    assert task.essential_exited() == []
    # the key (a tag:mcp one) logged the task in under its name; no log line carries the key
    node = next((n for n in headscale.nodes() if n.get("given_name") == running["hostname"]), None)
    assert node is not None, [n.get("given_name") for n in headscale.nodes()]
    assert "tag:mcp" in (node.get("tags") or node.get("forced_tags") or []), node
    logs = "".join(task.logs(n, tail=1000) for n in task.containers)
    assert running["authkey"] not in logs


def test_reachable_by_hostname_from_a_tailnet_client(running: dict[str, Any], tailnet: Any,
                                                      headscale: Any) -> None:
    hostname = running["hostname"]
    client_node = tailnet.node(f"ecs-cl-{secrets.token_hex(3)}", tags=("tag:mcp-client",))
    try:
        client_node.wait_for_peers({f"{hostname}.{headscale.base_domain}"}, timeout=90)
        token = secrets.token_hex(8)

        async def session() -> tuple[str, list[str], Any, Any]:
            http = httpx2.AsyncClient(proxy=client_node.proxy_url, timeout=httpx2.Timeout(30, read=120))
            async with Client(streamable_http_client(f"http://{hostname}/mcp", http_client=http)) as mcp:
                server = mcp.server_info.name if mcp.server_info else ""  # the handshake's answer
                tools = sorted(t.name for t in (await mcp.list_tools()).tools)
                echo = await mcp.call_tool("echo", {"text": token})
                add = await mcp.call_tool("add", {"a": 20, "b": 22})
                return server, tools, echo, add

        server, tools, echo, add = anyio.run(session)
        assert server == "stock-mcp-server", server
        assert tools == ["add", "echo", "sleep"], tools
        assert not echo.is_error and echo.structured_content["result"] == token, echo
        assert not add.is_error and add.structured_content["result"] == 42, add
    finally:
        tailnet.remove(client_node)


_PEER = """
import json, socket, sys
host, ports = sys.argv[1], json.loads(sys.argv[2])
out = {}
for port in ports:
    try:
        c = socket.create_connection((host, port), timeout=3)
    except ConnectionRefusedError:
        out[port] = "refused"; continue
    except OSError as exc:
        out[port] = "error: %s" % exc; continue
    c.settimeout(5)
    try:
        c.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
        data = c.recv(100)
    except OSError:
        data = b""
    out[port] = "answered" if data else "closed-without-answer"
print(json.dumps(out))
"""


def test_a_peer_container_reaches_nothing_in_the_task(running: dict[str, Any], factory: PodFactory,
                                                       repo_images: dict[str, str], headscale: Any) -> None:
    task = running["task"]
    # Every TCP listener of the task's netns (/proc/<pid>/net/tcp{,6} of a task container).
    listeners = demo.netns_listeners(task.containers["mcp-server"])
    assert any(item.address == "127.0.0.1" and item.port == 8080 for item in listeners), listeners
    status = json.loads(_sidecar(task, "tailscale", "--socket=/tmp/tailscaled.sock", "status", "--json").output)
    peerapi = {int(u.rsplit(":", 1)[1]) for u in status["Self"].get("PeerAPIURL") or []}
    wildcard = {item.port for item in listeners if item.address in ("0.0.0.0", "::")}
    others = [item for item in listeners if item.port not in wildcard]
    assert all(i.address.startswith("127.") or i.address == "::1" for i in others), (
        f"a listener on a non-loopback address other than the wildcard: {listeners}")
    # Exactly tailscaled's PeerAPI binds every interface (userspace mode; upstream peerapi.go binds "").
    assert wildcard and wildcard == peerapi, f"wildcard listeners {wildcard}, tailscaled's PeerAPI {peerapi}"

    ports = sorted({item.port for item in listeners} | {80, 443})
    peer = factory.run([{"image": repo_images["sidecar"], "entrypoint": ["sleep", "300"]}],
                       network=running["network"])[0]
    result = peer.exec_run(["python3", "-c", _PEER, task.ip, json.dumps(ports)])
    assert result.exit_code == 0, result.output
    seen = {int(k): v for k, v in json.loads(result.output.decode().strip().splitlines()[-1]).items()}
    expected = {port: "closed-without-answer" if port in wildcard else "refused" for port in ports}
    assert seen == expected, f"from a peer container (listening: {[str(i) for i in listeners]})"

    # Control: the peer's network works (it reaches the lab headscale), so "refused" is the task refusing.
    host, port = headscale.url.removeprefix("http://").rsplit(":", 1)
    ok = peer.exec_run(["python3", "-c", f"import socket; socket.create_connection(({host!r}, {port}), 3).close()"])
    assert ok.exit_code == 0, f"the peer reaches nothing at all, so the check above proves nothing: {ok.output!r}"


def test_under_allow_all_the_stock_servers_sidecar_is_not_ready_and_logs_the_grant(
        running: dict[str, Any], tailnet: Any, headscale: Any) -> None:
    """The stock-server task keeps its third-party server on 127.0.0.1 (issue 12 §1): only the
    tailnet policy closes the userspace bypass, so the sidecar reads its node's packet filter.
    Under allow-all a peer really reaches 127.0.0.1:8080 past the gateway, and the sidecar is not
    ready, naming the grant, in its readiness and in its log (what CloudWatch shows: the task's
    health check is `probe alive`); the task's own policy (tag:mcp:80 only) makes it ready again."""
    task, hostname = running["task"], running["hostname"]
    ip = _sidecar(task, "tailscale", "--socket=/tmp/tailscaled.sock", "ip", "-4").output.decode().strip()
    client_node = tailnet.node(f"ecs-aa-{secrets.token_hex(3)}")
    headscale.set_policy(ALLOW_ALL_POLICY)
    try:
        def not_ready() -> bool:
            return _sidecar(task, "mcp-tailnet-sidecar", "probe", "ready").exit_code == 1

        wait_for(not_ready, "the sidecar to report the open upstream port", 90, interval=2.0)
        out = _sidecar(task, "mcp-tailnet-sidecar", "probe", "ready").output.decode()
        detail = json.loads(out[out.index("{"):])["checks"]["exposure"]["detail"]
        assert "port 8080" in detail and '"dst": ["tag:mcp:80"]' in detail, detail
        logged = [json.loads(line) for line in task.logs("tailscale", 400).splitlines() if "tailnet_exposure" in line]
        assert any(r["level"] == "error" and r["upstream_exposed"] for r in logged), logged
        client_node.wait_for_peers({f"{hostname}.{headscale.base_domain}"}, timeout=90)
        answer = client_node.http_get(ip, 8080, "/not-mcp")
        assert answer is not None and b"server: uvicorn" in answer.lower(), answer  # the bypass is real
    finally:
        headscale.set_policy(POLICY)
        tailnet.remove(client_node)
    wait_for(lambda: _sidecar(task, "mcp-tailnet-sidecar", "probe", "ready").exit_code == 0,
             "the sidecar to be ready under the task's policy", 90, interval=2.0)
