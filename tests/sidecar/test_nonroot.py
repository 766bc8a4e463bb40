"""The sidecar as uid 65532 (as the images, the manifests and ECS run it), on a real tailnet.

As non-root, tailscaled refuses a serve config that proxies to a unix socket
(ipn/localapi/serve.go, `authorizeServeConfigForGOOSAndUserContext`), so the gateway
listens on a loopback ALIAS, 127.0.0.2:9080 by default, which userspace tailscaled's
forwarder never dials: it rewrites every unserved tailnet connection to 127.0.0.1:<port>
(wgengine/netstack/netstack.go). Checked here, with the image's entrypoint (`run`, the real
containerboot, userspace networking) in a network namespace, every process as 65532:
- it serves both transports by MagicDNS name; as 65532 it reads tailscaled's packet filter
  (LocalAPI write access is the daemon's own uid), so under allow-all, with the stock
  server on 127.0.0.1, readiness fails naming the grant to add (packetfilter.py);
- under an allow-all tailnet policy a peer's direct connection to <tailnet-ip>:9080 is
  refused; and the same check does connect, to the gateway itself, once something makes
  the gateway reachable on 127.0.0.1:9080 (so the check can fail);
- SIGTERM stops it with exit code 0.
The root path (unix socket) is covered in test_tailnet.py and test_isolation.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pytest

from mcp_tailnet_lab.headscale import ALLOW_ALL_POLICY
from mcp_tailnet_lab.paths import binary
from mcp_tailnet_lab.sidecar_run import sidecar_run_env
from mcp_tailnet_lab.tailnet import LOOPBACK_RELAY

from .conftest import NONROOT_UID, SIDECAR, nonroot_sidecar_argv, stop
from .test_isolation import SERVING, metric, wait_checks
from .test_tailnet import STOCK_PORT, use

pytestmark = pytest.mark.slow

GATEWAY_PORT = 9080  # the default alias port: the test sets no SIDECAR_GATEWAY_LISTEN

def uids_of_tree(pid: int) -> dict[str, set[int]]:
    """{command name: real/effective uids} for pid and all its descendants."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,ruid=,euid=,comm="], capture_output=True, text=True,
                         check=True).stdout
    rows = [line.split(None, 4) for line in out.splitlines()]
    children: dict[int, list[int]] = {}
    info: dict[int, tuple[str, set[int]]] = {}
    for p, pp, ruid, euid, comm in rows:
        children.setdefault(int(pp), []).append(int(p))
        info[int(p)] = (comm, {int(ruid), int(euid)})
    found: dict[str, set[int]] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in info:
            comm, uids = info[p]
            found.setdefault(comm, set()).update(uids)
        todo += children.get(p, [])
    return found


@pytest.fixture
def nonroot_dir():
    d = Path(tempfile.mkdtemp(prefix="nr-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_nonroot_sidecar_serves_over_the_loopback_alias_and_the_alias_is_not_reachable(
        tailnet, headscale, nonroot_dir):
    d = nonroot_dir
    for sub in ("state", "run", "tmp"):
        (d / sub).mkdir(mode=0o750)
        os.chown(d / sub, NONROOT_UID, NONROOT_UID)
    os.chown(d, NONROOT_UID, NONROOT_UID)
    hostname = f"mcp-nonroot-{os.getpid()}"
    ts_socket = d / "tmp" / "ts.sock"
    # The stock server stays on 127.0.0.1 under allow-all: this test wants readiness to refuse it.
    env = sidecar_run_env(d, login_server=headscale.url, hostname=hostname, authkey=headscale.preauth_key("lab"),
                          run_dir=d / "run", path="/usr/sbin:/usr/bin:/sbin:/bin", TS_SOCKET=str(ts_socket),
                          SIDECAR_DRAIN_TIMEOUT="5", SIDECAR_ACCEPT_UPSTREAM_EXPOSURE="false")
    client = tailnet.node("nr-client")
    ns = tailnet.outsider("nr-sidecar")
    stock = ns.popen([sys.executable, "-m", "mcp_tailnet_lab.stock_mcp_server", "--port", str(STOCK_PORT)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = d / "run.log"
    with log.open("wb") as fh:
        proc = ns.popen(nonroot_sidecar_argv("run"), env=env, stdout=fh, stderr=fh)
    relay = None
    try:
        health = d / "run" / "health.sock"
        try:
            checks = wait_checks(health, (*SERVING, "exposure"), "the non-root entrypoint to serve, and to judge "
                                 "the open upstream port", proc=proc, timeout=150, want=False)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log:\n{log.read_text()[-4000:]}") from None
        # as 65532 it read the filter (not "cannot read"), and says what to change
        assert f"port {STOCK_PORT}" in checks["exposure"]["detail"], checks["exposure"]
        assert '"ip": ["tcp:80"]' in checks["exposure"]["detail"], checks["exposure"]
        assert metric(health, "mcp_sidecar_packet_filter_known") == 1
        assert subprocess.run([SIDECAR, "probe", "ready", "--socket", str(health)], capture_output=True,
                              timeout=30).returncode == 1

        # every process of the sidecar runs as 65532: the supervisor, containerboot, tailscaled
        tree = uids_of_tree(proc.pid)
        assert {"containerboot", "tailscaled"} <= set(tree), tree
        assert all(uids == {NONROOT_UID} for uids in tree.values()), tree

        # serve proxies to the alias, and tailscaled (as non-root) applied it
        serve = json.loads((d / "run" / "serve" / "serve.json").read_text())
        ((hostport, site),) = serve["Web"].items()
        assert site["Handlers"]["/"]["Proxy"] == f"http://127.0.0.2:{GATEWAY_PORT}"
        assert not (d / "run" / "gw.sock").exists()  # no unix socket as non-root
        dns_name = hostport.removesuffix(":80")
        status = json.loads(ns.exec([str(binary("tailscale")), f"--socket={ts_socket}", "status", "--json"]).stdout)
        ip = next(a for a in status["Self"]["TailscaleIPs"] if ":" not in a)
        listening = ns.exec(["ss", "-ltnH"]).stdout
        assert f"127.0.0.2:{GATEWAY_PORT} " in listening and f"127.0.0.1:{GATEWAY_PORT} " not in listening, listening

        # by MagicDNS name, both transports
        client.wait_for_peers({dns_name})
        for transport in ("http", "sse"):
            tools, results = anyio.run(use, client.proxy_url, transport, f"http://{dns_name}")
            assert tools == ["add", "echo", "sleep"]
            assert results == {"echo": "hello over the tailnet", "add": 42}

        # allow-all policy: the served port answers (through serve and the gateway), the
        # gateway's port on the tailnet IP does not: the forwarder dials 127.0.0.1:9080
        assert headscale.policy == ALLOW_ALL_POLICY
        by_name = client.http_get(dns_name, 80)
        assert by_name is not None and b"not an MCP endpoint" in by_name, by_name
        assert client.http_get(ip, GATEWAY_PORT) is None

        # the same check connects, to the gateway itself, when the gateway is reachable on
        # 127.0.0.1: this is what a gateway bound to 127.0.0.1 would give away
        # (LOOPBACK_RELAY: 127.0.0.1:9080 -> the gateway's alias, "the gateway on 127.0.0.1")
        relay = ns.popen([sys.executable, "-c", LOOPBACK_RELAY, "127.0.0.2", str(GATEWAY_PORT), "300"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert relay.stdout is not None and relay.stdout.readline().strip() == b"listening"
        exposed = client.http_get(ip, GATEWAY_PORT)
        assert exposed is not None and b"not an MCP endpoint" in exposed, exposed
        stop(relay)
        assert client.http_get(ip, GATEWAY_PORT) is None

        started = time.monotonic()
        proc.terminate()
        assert proc.wait(60) == 0
        assert time.monotonic() - started < 60
    finally:
        if relay is not None:
            stop(relay)
        stop(proc)
        stop(stock)
        tailnet.remove(client)
        tailnet.network.remove_namespace(ns)
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    started_line = next(r for r in records if r.get("msg") == "sidecar started")
    assert started_line["gateway_listen"] == f"tcp:127.0.0.2:{GATEWAY_PORT}"
    assert not any("unix socket only for root" in r.get("msg", "") for r in records)
    assert env["TS_AUTHKEY"] not in text
