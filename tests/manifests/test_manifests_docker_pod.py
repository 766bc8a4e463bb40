"""The pod spec of manifests/, run in the local Docker engine, joined to the local tailnet.

The Deployment is read from manifests/ and turned into `docker run`s the way a kubelet
would run it: its containers, images (this repo's, built locally), env (downward API
included), command/args, volumes (emptyDir -> a world-writable host directory, as the
kubelet makes it; the auth-key Secret -> a file; the ServiceAccount tokens -> the files
the kubelet / token controller would write, minted by a real API server),
securityContext, limits and exec probes, in one network namespace. One pod serves the
whole module (starting it costs a minute on this machine).

A real kube-apiserver, bound to the pod network's gateway so the pod can reach it,
holds the manifests as applied: containerboot keeps its state in the state Secret
through the sidecar's narrow Role, and the inspector answers tool calls with its own
read-only identity.

Then: a tailnet client reaches the server by MagicDNS name; a peer container on the same
network reaches nothing, on any port the pod listens on.

What differs from EKS, and why (each is an addition, nothing of the manifest is dropped):
- KUBERNETES_SERVICE_HOST/PORT point at the lab API server, and containerboot reads them
  (TS_KUBERNETES_READ_API_SERVER_ADDRESS_FROM_ENV) because Docker has no cluster DNS for
  kubernetes.default.svc;
- the sidecar logs in to the lab headscale (SIDECAR_LOGIN_SERVER, plain-HTTP DERP) under
  a unique hostname, as the session's headscale is shared by other tests.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from manifests_support import (
    DEFAULT_NAMESPACE,
    MANIFESTS,
    docs_from_files,
    dump,
    env_value,
    one,
)
from mcp_tailnet_lab.cluster import LocalCluster
from mcp_tailnet_lab.headscale import ALLOW_ALL_POLICY
from mcp_tailnet_lab.pods import PodFactory
from mcp_tailnet_lab.tailnet import LOOPBACK_RELAY
from mcp_tailnet_lab.waiting import wait_for

READY_TIMEOUT_S = 300
#: Which of this repo's images (images/<name>) a manifest image names.
IMAGE_NAMES = {"eks-inspector": "eks-inspector", "mcp-tailnet-sidecar": "sidecar"}


class Kubelet:
    """Turns one pod spec into docker-py `containers.run` kwargs, as a kubelet would run it."""

    def __init__(self, docs: list[dict], deployment: dict, cluster: LocalCluster, files: Path,
                 authkey: str, repo_images: dict[str, str]) -> None:
        self.docs = docs
        self.meta = deployment["metadata"]
        self.spec = deployment["spec"]["template"]["spec"]
        self.cluster = cluster
        self.files = files
        self.authkey = authkey
        self.repo_images = repo_images
        self.pod_name = f"{self.meta['name']}-{secrets.token_hex(4)}"
        self.pod_uid = str(uuid.uuid4())
        self.fs_group = self.spec["securityContext"].get("fsGroup")

    # -- volumes --------------------------------------------------------------------

    def _write(self, directory: Path, name: str, text: str, mode: int) -> None:
        path = directory / name
        path.write_text(text)
        shutil.chown(path, 0, self.fs_group if self.fs_group is not None else 0)
        path.chmod(mode)

    def _sa_files(self, directory: Path, service_account: str, expiration: int, mode: int) -> None:
        self._write(directory, "token", self.cluster.mint_token(DEFAULT_NAMESPACE, service_account, expiration), mode)
        self._write(directory, "ca.crt", Path(self.cluster.ca_file).read_text(), mode)
        self._write(directory, "namespace", self.meta["namespace"], mode)

    def volume_source(self, volume: dict) -> tuple[str, Path | None]:
        """The host directory the kubelet would mount for this volume."""
        directory = self.files / volume["name"]
        directory.mkdir()
        if "emptyDir" in volume:
            # The kubelet makes an emptyDir world-writable (0777). (Docker's own tmpfs keeps the
            # image's mode and owner when the path exists in the image, so it is no stand-in.)
            directory.chmod(0o777)
            return "bind", directory
        directory.chmod(0o755)
        if "secret" in volume:
            mode = volume["secret"].get("defaultMode", 0o644)
            name = volume["secret"]["secretName"]
            declared = [d for d in self.docs if d["kind"] == "Secret" and d["metadata"]["name"] == name]
            if declared and declared[0]["type"] == "kubernetes.io/service-account-token":
                # What the token controller writes into this Secret: token, ca.crt, namespace.
                sa = declared[0]["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                self._sa_files(directory, sa, 3600, mode)
            elif name == "mcp-tailnet-authkey":
                self._write(directory, "TS_AUTHKEY", self.authkey, mode)
            else:
                raise AssertionError(f"no source for Secret volume {name}")
            return "bind", directory
        if "projected" in volume:
            sources = volume["projected"]["sources"]
            token = next(s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s)
            assert token["path"] == "token"
            self._sa_files(directory, self.spec["serviceAccountName"], token.get("expirationSeconds", 3600),
                           volume["projected"].get("defaultMode", 0o644))
            return "bind", directory
        raise AssertionError(f"volume {volume['name']}: this translation knows no such source")

    # -- containers -----------------------------------------------------------------

    def env(self, c: dict) -> dict[str, str]:
        field_values = {"metadata.name": self.pod_name, "metadata.uid": self.pod_uid,
                        "metadata.namespace": self.meta["namespace"]}
        out: dict[str, str] = {}
        for e in c.get("env", []):
            if "value" in e:
                out[e["name"]] = str(e["value"])
            elif "fieldRef" in e.get("valueFrom", {}):
                out[e["name"]] = field_values[e["valueFrom"]["fieldRef"]["fieldPath"]]
            else:
                raise AssertionError(f"{c['name']}: env {e['name']} has a source this translation lacks")
        # What the kubelet adds to every container (the API server's address).
        host, _, port = self.cluster.server.removeprefix("https://").rpartition(":")
        out |= {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port}
        return out

    def image(self, c: dict) -> str:
        repository = c["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1]
        return self.repo_images[IMAGE_NAMES[repository]]

    def run_kwargs(self, c: dict, extra_env: dict[str, str]) -> dict[str, Any]:
        pod_sc = self.spec.get("securityContext", {})
        sc = {**pod_sc, **c.get("securityContext", {})}
        volumes = {v["name"]: v for v in self.spec["volumes"]}
        binds: dict[str, dict[str, str]] = {}
        for m in c.get("volumeMounts", []):
            _kind, directory = self.volume_source(volumes[m["name"]])
            binds[str(directory)] = {"bind": m["mountPath"], "mode": "ro" if m.get("readOnly") else "rw"}
        limits = c["resources"]["limits"]
        kw: dict[str, Any] = {
            "image": self.image(c),
            "environment": self.env(c) | extra_env,
            "user": f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}",
            "group_add": [str(self.fs_group)] if self.fs_group is not None else [],
            "read_only": sc["readOnlyRootFilesystem"],
            "cap_drop": sc["capabilities"]["drop"],
            "cap_add": sc["capabilities"].get("add", []),
            "security_opt": ["no-new-privileges"] if sc["allowPrivilegeEscalation"] is False else [],
            "privileged": sc.get("privileged", False),
            "volumes": binds,
            "mem_limit": _bytes(limits["memory"]),
            "nano_cpus": int(_cpus(limits["cpu"]) * 1e9),
            "name": f"{self.pod_name}-{c['name']}",
        }
        if "command" in c:
            kw["entrypoint"] = c["command"]
        if "args" in c:
            kw["command"] = c["args"]
        return kw


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def _cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def probe_ok(container: Any, probe: dict) -> bool:
    result = container.exec_run(probe["exec"]["command"])
    return result.exit_code == 0


def logs(container: Any) -> str:
    return container.logs(tail=30).decode(errors="replace")


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_pods(docker_client, docker_run_id) -> Iterator[PodFactory]:
    """Like the `pod` fixture, for one pod shared by this module's tests."""
    factory = PodFactory(docker_client, docker_run_id)
    yield factory
    failed = factory.cleanup()
    if failed:
        raise RuntimeError(f"pod cleanup left: {'; '.join(failed)}")


@pytest.fixture(scope="module")
def pod_network(module_pods) -> Any:
    net = module_pods.network()
    net.reload()
    return net


@pytest.fixture(scope="module")
def pod_cluster(pod_network) -> Iterator[LocalCluster]:
    """A real API server the pod can reach: bound to its network's gateway (this host)."""
    gateway = pod_network.attrs["IPAM"]["Config"][0]["Gateway"]
    cluster = LocalCluster.start(bind_address=gateway)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def running_pod(module_pods, pod_network, pod_cluster, headscale, repo_images, tmp_path_factory) -> dict:
    docs = docs_from_files()
    pod_cluster.kubectl("apply", "-f", "-", input=dump(d for d in docs if d["kind"] == "Namespace"))
    pod_cluster.kubectl("apply", "-f", str(MANIFESTS))
    deployment = one(docs, "Deployment", "eks-inspector")
    files = tmp_path_factory.mktemp("kubelet")
    files.chmod(0o755)
    kubelet = Kubelet(docs, deployment, pod_cluster, files, headscale.preauth_key("lab"), repo_images)
    hostname = f"eks-inspector-{secrets.token_hex(3)}"
    lab_only = {
        "tailscale": {
            "TS_HOSTNAME": hostname,
            "SIDECAR_LOGIN_SERVER": headscale.url,
            "TS_DEBUG_USE_DERP_HTTP": "true",
            "TS_KUBERNETES_READ_API_SERVER_ADDRESS_FROM_ENV": "true",
        },
    }
    spec = deployment["spec"]["template"]["spec"]
    containers = module_pods.run(
        [kubelet.run_kwargs(c, lab_only.get(c["name"], {})) for c in spec["containers"]], network=pod_network
    )
    by_name = dict(zip([c["name"] for c in spec["containers"]], containers, strict=True))

    # Like the kubelet before it counts restarts: every liveness probe passes.
    def alive() -> bool:
        for c in spec["containers"]:
            container = by_name[c["name"]]
            container.reload()
            assert container.status == "running", f"{c['name']} exited:\n{logs(container)}"
        return all(probe_ok(by_name[c["name"]], c["livenessProbe"]) for c in spec["containers"])

    try:
        wait_for(alive, "every liveness probe of the pod", READY_TIMEOUT_S, interval=2.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(f"--- {n}:\n{logs(c)}" for n, c in by_name.items())) from None
    return {"containers": by_name, "spec": spec, "hostname": hostname, "pod": containers,
            "cluster": pod_cluster, "network": pod_network}


def wait_ready(running_pod: dict) -> None:
    """Like the kubelet: the pod is Ready when every readiness probe passes."""
    containers, spec = running_pod["containers"], running_pod["spec"]

    def ready() -> bool:
        return all(probe_ok(containers[c["name"]], c["readinessProbe"]) for c in spec["containers"])

    try:
        wait_for(ready, "every readiness probe of the pod", READY_TIMEOUT_S, interval=2.0)
    except AssertionError as exc:
        why = {c["name"]: containers[c["name"]].exec_run(c["readinessProbe"]["exec"]["command"]).output.decode(
            errors="replace").strip() for c in spec["containers"]}
        lines = containers["tailscale"].logs().decode(errors="replace").splitlines()
        serve = [line for line in lines if "serve" in line.lower() and ("error" in line.lower() or "40" in line)]
        raise AssertionError(f"{exc}\nreadiness: {why}\nsidecar serve errors:\n" + "\n".join(serve[-5:])) from None


# -- the proof ----------------------------------------------------------------------------


def _mcp_call(client: httpx.Client, url: str, method: str, params: dict, session: str | None, rid: int) -> tuple:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if session:
        headers["Mcp-Session-Id"] = session
        headers["MCP-Protocol-Version"] = "2025-06-18"
    resp = client.post(url, headers=headers, json={"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
    assert resp.status_code == 200, f"{method}: HTTP {resp.status_code} {resp.text[:300]}"
    body = resp.text
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        body = next(line[5:] for line in body.splitlines() if line.startswith("data:"))
    return json.loads(body), resp.headers.get("mcp-session-id", session)


def test_pod_runs_as_specified_and_keeps_state_through_its_narrow_role(running_pod):
    containers, spec = running_pod["containers"], running_pod["spec"]
    for c in spec["containers"]:
        attrs = containers[c["name"]].attrs["HostConfig"]
        assert attrs["ReadonlyRootfs"] is True and attrs["CapDrop"] == ["ALL"]
        assert containers[c["name"]].attrs["Config"]["User"] == "65532:65532"
    # containerboot passed its own SelfSubjectAccessReview checks and wrote the node's
    # state through the Role that names only this Secret.
    state_name = env_value(next(c for c in spec["containers"] if c["name"] == "tailscale"), "TS_KUBE_SECRET")
    cluster = running_pod["cluster"]

    def state_keys() -> set[str]:
        secret = json.loads(cluster.kubectl("get", "secret", state_name, "-n", DEFAULT_NAMESPACE, "-o", "json").stdout)
        keys = set(secret.get("data", {}))
        wanted = {"device_id", "device_fqdn", "device_ips", "_machinekey"}
        return keys if wanted <= keys and any(k.startswith("profile-") for k in keys) else set()

    try:
        wait_for(state_keys, f"containerboot to write the node's state into Secret {state_name}", 120, interval=2.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- tailscale:\n{logs(containers['tailscale'])}") from None


def test_pod_becomes_ready(running_pod):
    """Readiness = tailnet Running, serve config applied, upstream answering (the sidecar's /readyz)."""
    wait_ready(running_pod)


def test_reachable_by_name_from_the_tailnet_with_the_inspector_identity(running_pod, tailnet, headscale):
    wait_ready(running_pod)
    client_node = tailnet.node(f"mc-{secrets.token_hex(3)}")
    url = f"http://{running_pod['hostname']}.{headscale.base_domain}/mcp"
    with httpx.Client(proxy=client_node.proxy_url, timeout=30) as client:
        init, session = _mcp_call(client, url, "initialize", {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "manifests-proof", "version": "0"}}, None, 1)
        assert init["result"]["serverInfo"]["name"], init
        assert session, "no Mcp-Session-Id from the server"
        client.post(url, headers={"Mcp-Session-Id": session, "Content-Type": "application/json",
                                  "Accept": "application/json, text/event-stream",
                                  "MCP-Protocol-Version": "2025-06-18"},
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools, _ = _mcp_call(client, url, "tools/list", {}, session, 2)
        names = [t["name"] for t in tools["result"]["tools"]]
        assert names, tools
        # A read through the inspector's own (projected) identity, all the way to the API server.
        assert "get" in names, names
        called, _ = _mcp_call(client, url, "tools/call", {"name": "get", "arguments": {"resource": "namespaces"}},
                              session, 3)
        text = json.dumps(called["result"])
        assert DEFAULT_NAMESPACE in text and not called["result"].get("isError"), text[:500]


def _proc_net_ip(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} prints it (32-bit words in host byte order)."""
    raw = bytes.fromhex(hex_ip)
    swapped = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(swapped)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _owner(containers: dict, inode: str) -> str:
    """Which process in the pod holds a socket inode (for a failure message)."""
    code = (
        "import os\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        fds = os.listdir(f'/proc/{pid}/fd')\n"
        "    except OSError:\n"
        "        continue\n"
        "    for fd in fds:\n"
        "        try:\n"
        f"            if os.readlink(f'/proc/{{pid}}/fd/{{fd}}') == 'socket:[{inode}]':\n"
        "                print(open(f'/proc/{pid}/cmdline').read().replace(chr(0), ' '))\n"
        "        except OSError:\n"
        "            pass\n"
    )
    found = [c.exec_run(["python3", "-c", code]).output.decode().strip() for c in containers.values()]
    return "; ".join(f for f in found if f) or "owner not found"


def test_a_peer_container_reaches_nothing_in_the_pod(running_pod, pod, repo_images):
    """From a peer on the same network: the MCP server and every loopback listener are unreachable;
    the one listener on the pod address (tailscaled's peer API, userspace mode) hangs up on
    anyone who is not a tailnet peer. On EKS the deny-all-ingress NetworkPolicy also stops it."""
    containers, spec = running_pod["containers"], running_pod["spec"]
    inspector = containers["eks-inspector"]
    # /proc/net/tcp{,6} of the pod's shared network namespace: local address, state 0A (LISTEN), inode.
    listing = inspector.exec_run(["python3", "-c", (
        "for f in ('/proc/net/tcp', '/proc/net/tcp6'):\n"
        "    for line in open(f).read().splitlines()[1:]:\n"
        "        p = line.split()\n"
        "        if p[3] == '0A': print(f, p[1], p[9])\n")]).output.decode()
    listeners = [line.split() for line in listing.splitlines() if line]
    server_port = int(env_value(next(c for c in spec["containers"] if c["name"] == "eks-inspector"), "INSPECTOR_PORT"))
    loopback_ports, open_ports = set(), set()
    for f, addr, inode in listeners:
        ip, port = addr.rsplit(":", 1)
        if _proc_net_ip(ip).is_loopback:  # 127.0.0.0/8 (incl. Docker's DNS on 127.0.0.11), ::1
            loopback_ports.add(int(port, 16))
        else:
            owner = _owner(containers, inode)
            assert owner.startswith("tailscaled "), f"a listener in the pod is not loopback-only: {f} {addr} ({owner})"
            open_ports.add(int(port, 16))
    assert server_port in loopback_ports, f"the MCP server (port {server_port}, from the manifest) is not on loopback"

    pod_ip = running_pod["pod"].ip
    peer = pod.run([{"image": repo_images["sidecar"], "entrypoint": ["sleep", "300"], "user": "65532:65532"}],
                   network=running_pod["network"])[0]
    refused_ports = sorted(loopback_ports | {80, 443})
    probe = (
        "import socket\n"
        "reached = []\n"
        f"for port in {refused_ports}:\n"
        "    try:\n"
        f"        socket.create_connection(({pod_ip!r}, port), 3).close(); reached.append(port)\n"
        "    except OSError:\n"
        "        pass\n"
        "answered = []\n"
        f"for port in {sorted(open_ports)}:\n"
        f"    s = socket.create_connection(({pod_ip!r}, port), 3); s.settimeout(5)\n"
        "    s.sendall(b'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')\n"
        "    try:\n"
        "        data = s.recv(100)\n"
        "    except OSError:\n"
        "        data = b''\n"
        "    if data: answered.append((port, data[:40]))\n"
        "print(reached, answered)\n"
    )
    result = peer.exec_run(["python3", "-c", probe])
    assert result.exit_code == 0, result.output
    assert result.output.decode().strip() == "[] []", f"a peer container reached the pod: {result.output.decode()}"
    # Control: the peer's network works (it reaches this host's API server on the same
    # network), so the empty lists above are the pod refusing, not a dead peer.
    host, _, port = running_pod["cluster"].server.removeprefix("https://").rpartition(":")
    ok = peer.exec_run(["python3", "-c", f"import socket; socket.create_connection(({host!r}, {port}), 3).close()"])
    assert ok.exit_code == 0, f"the peer cannot reach anything at all, so the check above proves nothing: {ok.output}"


def test_the_inspector_is_out_of_the_forwarders_reach_under_an_allow_all_policy(running_pod, tailnet, headscale):
    """Issue 12 §1: userspace tailscaled forwards every unserved tailnet port to 127.0.0.1; the
    inspector listens on a loopback alias, so even a policy that opens every port (the lab's
    allow-all) gives a peer no way to it past serve. Positive control: the same connection
    reaches the inspector while something relays 127.0.0.1:PORT to it."""
    wait_ready(running_pod)
    containers, spec = running_pod["containers"], running_pod["spec"]
    inspector = next(c for c in spec["containers"] if c["name"] == "eks-inspector")
    alias, port = env_value(inspector, "INSPECTOR_HOST"), int(env_value(inspector, "INSPECTOR_PORT"))
    assert headscale.policy == ALLOW_ALL_POLICY
    out = containers["tailscale"].exec_run(["tailscale", "--socket=/tmp/tailscaled.sock", "ip", "-4"])
    assert out.exit_code == 0, out.output
    ip = out.output.decode().strip()
    client_node = tailnet.node(f"mb-{secrets.token_hex(3)}")
    try:
        client_node.wait_for_peers({f"{running_pod['hostname']}.{headscale.base_domain}"}, timeout=90)
        # by name: the sidecar answers (the path works from this node, once its tunnel is up)
        name = f"{running_pod['hostname']}.{headscale.base_domain}"
        by_name = wait_for(lambda: client_node.http_get(name, 80, "/healthz"), f"{name}:80 from a new node", 90,
                           interval=2.0)
        assert by_name.startswith(b"HTTP/1.1"), by_name
        assert client_node.http_get(ip, port, "/healthz") is None  # refused: nothing on 127.0.0.1:PORT

        containers["eks-inspector"].exec_run(["python3", "-c", LOOPBACK_RELAY, alias, str(port), "60"],
                                             detach=True)
        listening = f"import socket; socket.create_connection(('127.0.0.1', {port}), 2).close()"
        wait_for(lambda: containers["eks-inspector"].exec_run(["python3", "-c", listening]).exit_code == 0,
                 "the relay on 127.0.0.1 inside the pod", 30, interval=0.5)
        exposed = client_node.http_get(ip, port, "/healthz")
        assert exposed is not None and b'"status":"ok"' in exposed.replace(b" ", b""), exposed  # the inspector
        wait_for(lambda: containers["eks-inspector"].exec_run(["python3", "-c", listening]).exit_code != 0,
                 "the relay to stop", 90, interval=1.0)
        assert client_node.http_get(ip, port, "/healthz") is None
    finally:
        tailnet.remove(client_node)
