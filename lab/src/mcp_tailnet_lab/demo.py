"""`make demo`: the EKS inspector on a local tailnet, called by hostname, with no account.

What it runs is what a user runs: this repo's images (built offline by the lab), the
local compose variant (docker-compose.local.yml: headscale, the tagged-key one-shot, the
sidecar + inspector pair, a tailnet client) and the sidecar image's own `doctor` as the
client. The inspector needs a cluster: the lab's etcd + kube-apiserver, served on the
Docker bridge's gateway address so containers reach it, with a few sample workloads and
a read-only ServiceAccount token (the inspector's ClusterRole) as its kubeconfig.

    .venv/bin/python -m mcp_tailnet_lab.demo [--keep]

The helpers here (cluster for containers, compose project, listening sockets of a
container's network namespace) are also what tests/compose uses, so the demo and the
tests exercise one code path.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_tailnet_lab.paths import REPO_DIR, MissingComponent, versions

COMPOSE_LOCAL = REPO_DIR / "docker-compose.local.yml"
INSPECTOR_RBAC = REPO_DIR / "tools" / "eks-inspector" / "rbac" / "clusterrole.yaml"
NONROOT_UID = 65532  # the images' user; the mounted kubeconfig must be readable by it
SERVER_HOSTNAME = "eks-inspector"
EXAMPLE_HOSTNAME = "mcp-example"
CLIENT_PROXY = "http://127.0.0.1:1055"
# The compose services that make up each pair (one network namespace each).
PAIRS = {"inspector": ("sidecar", "inspector"), "example": ("example-sidecar", "example-server")}
_TCP_LISTEN = "0A"


class DemoError(RuntimeError):
    """A step failed; the message says which and why (and never carries a secret)."""


# --- progress -----------------------------------------------------------------------

class Progress:
    """`[  12.3s] message` lines, so a slow step is visible as it happens."""

    def __init__(self, out=sys.stdout) -> None:  # noqa: ANN001 - a text stream
        self.start = time.monotonic()
        self.out = out

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {message}", file=self.out, flush=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


# --- the cluster, reachable from containers -----------------------------------------

def cluster_for_containers(client):  # noqa: ANN001, ANN201 - docker.DockerClient -> LocalCluster
    """A LocalCluster whose API server binds the Docker bridge's gateway address.

    Containers on any docker network reach the host there (the lab's wheelhouse server
    uses the same address); the host does too, so kubectl and the admin kubeconfig work
    unchanged. LocalCluster.start(bind_address=...) puts that address in the serving cert.
    """
    from mcp_tailnet_lab.cluster import LocalCluster
    from mcp_tailnet_lab.wheelhouse import bridge_gateway

    return LocalCluster.start(bind_address=bridge_gateway(client))


def sample_workloads(namespace: str, suffix: str = "") -> str:
    """A small app to look at: two Deployments, a Service, a ConfigMap and a Secret.

    No scheduler or kubelet runs here, so there are no pods; the objects are what a
    kubectl-style inspector reads. The Secret shows that its data never leaves.
    """
    labels = {"app.kubernetes.io/part-of": "shop"}
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for name, image, replicas in (("web", "nginx:1.27", 2), ("api", "python:3.11-slim", 1)):
        name = f"{name}{suffix}"
        docs.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name, **labels}},
                             "spec": {"containers": [{"name": name, "image": image}]}},
            },
        })
    docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"web{suffix}", "namespace": namespace},
                 "spec": {"selector": {"app": f"web{suffix}"}, "ports": [{"port": 80}]}})
    docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shop-settings", "namespace": namespace},
                 "data": {"currency": "EUR"}})
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-db", "namespace": namespace},
                 "stringData": {"password": secrets.token_urlsafe(12)}})
    return "\n---\n".join(json.dumps(d) for d in docs)


def inspector_kubeconfig(cluster, path: Path, namespace: str = "mcp-tailnet") -> Path:  # noqa: ANN001
    """A kubeconfig for the inspector's own read-only identity, readable by the image's user.

    The ServiceAccount is bound to the inspector's ClusterRole (tools/eks-inspector/rbac),
    so the demo shows what production does: no Secrets, reads only.
    """
    cluster.kubectl("create", "namespace", namespace, check=False)
    cluster.kubectl("apply", "-f", str(INSPECTOR_RBAC))
    cluster.kubectl("create", "clusterrolebinding", f"{namespace}-eks-inspector-read",
                    "--clusterrole=mcp-tailnet-eks-inspector-read",
                    f"--serviceaccount={namespace}:eks-inspector", check=False)
    token = cluster.mint_token(namespace, "eks-inspector")
    cluster.kubeconfig_for_token(token, path)
    os.chown(path, NONROOT_UID, NONROOT_UID)  # stays 0600: only the inspector's user reads it
    return path


# --- the project network ----------------------------------------------------------------

DEFAULT_TAILNET_NET = "10.203.77"  # docker-compose.local.yml's LOCAL_TAILNET_NET default


def free_tailnet_net(client, prefer: str | None = DEFAULT_TAILNET_NET) -> str:  # noqa: ANN001
    """A `10.203.X` whose /24 no docker network uses yet, for LOCAL_TAILNET_NET.

    The local variant's network has a fixed subnet (headscale needs a fixed private IP,
    see lab/compose/pair.local.yml); concurrent stacks each take their own.
    """
    import ipaddress
    import random

    used = []
    for network in client.networks.list():
        for entry in (network.attrs.get("IPAM") or {}).get("Config") or []:
            if entry.get("Subnet") and ":" not in entry["Subnet"]:
                used.append(ipaddress.ip_network(entry["Subnet"], strict=False))
    candidates = [f"10.203.{x}" for x in random.sample(range(16, 250), 234)]
    if prefer:
        candidates.insert(0, prefer)
    for net in candidates:
        subnet = ipaddress.ip_network(f"{net}.0/24")
        if not any(subnet.overlaps(u) for u in used):
            return net
    raise DemoError("no free /24 left in 10.203.0.0/16 for the local tailnet's docker network")


# --- images -----------------------------------------------------------------------------

def build_args(client) -> dict[str, str]:  # noqa: ANN001
    """pip settings that make our Dockerfiles install from the lab's wheelhouse, offline."""
    from mcp_tailnet_lab import wheelhouse

    return wheelhouse.build_args(client)


def require_images(client, refs: Iterable[str]) -> None:  # noqa: ANN001
    """Fail naming the image (and the provisioning step) when a stand-in is missing."""
    import docker

    for ref in refs:
        try:
            client.images.get(ref)
        except docker.errors.ImageNotFound:
            raise MissingComponent(f"image {ref} is not in the Docker engine: run `lab/provision` "
                                   "(step 80-base-images builds the lab's stand-ins)") from None


def standin_images() -> list[str]:
    v = versions()
    return [v["HEADSCALE_IMAGE"], v["TAILSCALE_IMAGE"]]


# --- compose ------------------------------------------------------------------------------

@dataclass
class ComposeProject:
    """`docker compose -p NAME -f FILE ...` with a fixed environment; every call is bounded."""

    name: str
    files: tuple[Path, ...] = (COMPOSE_LOCAL,)
    env: dict[str, str] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()

    def argv(self, *args: str) -> list[str]:
        out = ["docker", "compose", "-p", self.name]
        for f in self.files:
            out += ["-f", str(f)]
        for p in self.profiles:
            out += ["--profile", p]
        return out + list(args)

    def environ(self) -> dict[str, str]:
        # Only what we set decides pip and the release: the caller's PIP_*/MCP_TAILNET_*/TS_* are dropped.
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("PIP_", "MCP_TAILNET_", "TS_", "SIDECAR_", "INSPECTOR_", "DOCTOR_", "EXAMPLE_"))}
        return base | self.env

    def run(self, *args: str, timeout: float = 600, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), cwd=REPO_DIR, env=self.environ(), capture_output=True,
                              text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
            raise DemoError(f"`docker compose {' '.join(args[:3])}` failed ({proc.returncode}):\n{tail}")
        return proc

    def up(self, timeout: int = 420) -> None:
        """Start everything and wait until each service is healthy (or, for one-shots, done)."""
        proc = self.run("up", "-d", "--wait", "--wait-timeout", str(timeout), timeout=timeout + 120, check=False)
        if proc.returncode != 0:
            raise DemoError(f"`docker compose up --wait` failed ({proc.returncode}): "
                            f"{_last_lines(proc.stderr, 12)}\n{self.diagnose()}")

    def down(self, volumes: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["down", "--remove-orphans", "-t", "20"] + (["-v"] if volumes else [])
        # `down` interpolates the files too; the kubeconfig path only has to be a file.
        saved = self.env
        self.env = {"INSPECTOR_KUBECONFIG_FILE": "/dev/null"} | saved
        try:
            return self.run(*args, timeout=300, check=False)
        finally:
            self.env = saved

    def container(self, client, service: str):  # noqa: ANN001, ANN201 - docker Container
        """The (first) container of a service, from compose's own labels."""
        found = client.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.name}", f"com.docker.compose.service={service}"]})
        if not found:
            raise DemoError(f"compose project {self.name} has no container for service {service!r}")
        return found[0]

    def containers(self, client) -> list:  # noqa: ANN001
        return client.containers.list(all=True, filters={"label": f"com.docker.compose.project={self.name}"})

    def logs(self, service: str, tail: int | None = None) -> str:
        args = ["logs", "--no-color", "--no-log-prefix"] + (["--tail", str(tail)] if tail else []) + [service]
        return self.run(*args, timeout=60, check=False).stdout

    def wait(self, service: str, timeout: float = 240) -> int:
        """Exit code of a one-shot service (`docker compose wait`)."""
        proc = self.run("wait", service, timeout=timeout, check=False)
        out = (proc.stdout + proc.stderr).strip()
        return int(out.split()[-1]) if out and out.split()[-1].lstrip("-").isdigit() else proc.returncode

    def doctor(self, url: str, *, call: str, arguments: Mapping[str, Any], timeout: float = 240,
               transport: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the doctor once more in the client's namespace (`compose run --rm doctor ...`)."""
        args = ["run", "--rm", "--no-deps", "--entrypoint", "mcp-tailnet-sidecar", "doctor",
                "doctor", f"--url={url}", f"--proxy={CLIENT_PROXY}",
                f"--call={call}", f"--arguments={json.dumps(dict(arguments))}"]
        if transport:
            args.append(f"--transport={transport}")
        return self.run(*args, timeout=timeout, check=False)

    def diagnose(self) -> str:
        """`ps` plus the last log lines of each service: what a failed `up` needs to show."""
        lines = [self.run("ps", "-a", "--format", "table {{.Service}}\t{{.Status}}", check=False).stdout.strip()]
        for service in self.run("config", "--services", check=False).stdout.split():
            text = self.logs(service, tail=8).strip()
            if text:
                lines.append(f"--- {service} (last lines)\n{text}")
        return "\n".join(lines)


def _last_lines(text: str, n: int) -> str:
    return "\n".join((text or "").strip().splitlines()[-n:])


# --- what a network namespace listens on ---------------------------------------------------

@dataclass(frozen=True)
class Listener:
    proto: str  # tcp or tcp6
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}" if self.proto == "tcp" else f"[{self.address}]:{self.port}"


def _hex_address(raw: str) -> str:
    """An address of /proc/net/tcp{,6} (little-endian 32-bit words) as text."""
    import ipaddress

    data = bytes.fromhex(raw)
    words = b"".join(data[i:i + 4][::-1] for i in range(0, len(data), 4))
    return str(ipaddress.ip_address(words))


def parse_proc_net_tcp(text: str, proto: str) -> list[Listener]:
    """LISTEN sockets of one /proc/net/tcp or tcp6 table."""
    out = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 3 and cols[3] == _TCP_LISTEN:
            addr, port = cols[1].rsplit(":", 1)
            out.append(Listener(proto, _hex_address(addr), int(port, 16)))
    return out


def netns_listeners(container) -> list[Listener]:  # noqa: ANN001 - docker Container
    """Every TCP socket listening in the container's network namespace, read from the host
    (/proc/<pid>/net/tcp{,6} shows the namespace of that process, whatever the image has)."""
    container.reload()
    pid = container.attrs["State"]["Pid"]
    if not pid:
        raise DemoError(f"container {container.name} is not running")
    found: list[Listener] = []
    for proto in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{proto}")
        if path.exists():
            found += parse_proc_net_tcp(path.read_text(), proto)
    return sorted(set(found), key=lambda item: (item.port, item.proto, item.address))


def container_ip(container, network: str | None = None) -> str:  # noqa: ANN001
    """The container's IPv4 address on (the first of) its docker network(s)."""
    container.reload()
    networks = container.attrs["NetworkSettings"]["Networks"]
    entry = networks[network] if network else next(iter(networks.values()))
    return entry["IPAddress"]


def try_connect(host: str, port: int, timeout: float = 3.0) -> str:
    """`connected`, `refused` or `timeout`/the error: one TCP connect, bounded."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error: {exc.strerror or exc}"


def published_ports(container) -> dict[str, Any]:  # noqa: ANN001
    """Host port bindings of a container (configured or live); empty means none."""
    container.reload()
    bindings = {k: v for k, v in (container.attrs["HostConfig"].get("PortBindings") or {}).items() if v}
    live = {k: v for k, v in (container.attrs["NetworkSettings"].get("Ports") or {}).items() if v}
    return bindings | live


# --- the demo --------------------------------------------------------------------------------

def run(keep: bool = False, out=sys.stdout) -> int:  # noqa: ANN001
    from mcp_tailnet_lab import build_images, images

    say = Progress(out)
    project = ComposeProject(name="mcp-tailnet-demo", profiles=())
    cluster = None
    try:
        say("Docker engine")
        client = images.connect()
        require_images(client, standin_images())

        say("local cluster (etcd + kube-apiserver) on the Docker bridge address")
        cluster = cluster_for_containers(client)
        say(f"  {cluster.server} ({cluster.version})")
        cluster.kubectl("apply", "-f", "-", input=sample_workloads("shop"))
        say("  sample workloads: namespace shop (deployments web, api; a service, a configmap, a secret)")
        kubeconfig = inspector_kubeconfig(cluster, cluster.workdir / "inspector.kubeconfig")
        say("  read-only ServiceAccount token for the inspector (ClusterRole mcp-tailnet-eks-inspector-read)")

        say("building this repo's images (offline, from the wheelhouse; cached layers make it quick)")
        for built in build_images.build_all(client):
            say(f"  {built.ref}")
        args = build_args(client)
        project.env = {
            **args,
            "LOCAL_TAILNET_NET": free_tailnet_net(client),
            "INSPECTOR_KUBECONFIG_FILE": str(kubeconfig),
            "DOCTOR_CALL": "get",
            "DOCTOR_ARGUMENTS": json.dumps({"resource": "deployments", "namespace": "shop"}),
        }
        say("building the demo client (sidecar image + MCP SDK): docker compose build doctor")
        project.run("build", "doctor", timeout=900)

        say("docker compose -f docker-compose.local.yml up -d --wait")
        project.down()  # a previous --keep run of the demo, if any
        project.up()
        say("  all services healthy")

        say("the tailnet client's doctor, by hostname over the tailnet:")
        report = project.logs("doctor")
        for line in report.strip().splitlines():
            print(f"    {line}", file=out)
        if "ok   call:" not in report:
            raise DemoError("the client could not call the inspector by hostname (see the doctor's lines above)")

        say("published host ports of every container (expect none):")
        for container in project.containers(client):
            ports = published_ports(container)
            service = container.labels.get("com.docker.compose.service")
            print(f"    {service:15} {ports or 'none'}", file=out)
            if ports:
                raise DemoError(f"{service} publishes {ports}")
        netns = project.container(client, "netns")
        listeners = netns_listeners(netns)
        print(f"    the pair's namespace listens on: {', '.join(map(str, listeners)) or 'nothing'}", file=out)
        address = container_ip(netns)
        say(f"from this host, every one of those ports at the pair's address {address} (expect refused):")
        reached = []
        for port in sorted({item.port for item in listeners} | {80, 443}):
            outcome = try_connect(address, port)
            print(f"    {address}:{port:<6} {outcome}", file=out)
            if outcome == "connected":
                reached.append(port)
        if reached:
            raise DemoError(f"ports {reached} of the pair are reachable from outside the tailnet")
        say(f"done in {say.elapsed:.0f}s: the inspector answered by hostname over the tailnet; "
            "from outside it, nothing of the pair can be reached")
        return 0
    except (DemoError, MissingComponent) as exc:
        say(f"FAILED: {exc}")
        return 1
    except Exception as exc:  # noqa: BLE001 - any other failure: one line, non-zero exit
        say(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if keep:
            _print_keep(project, cluster, out)
        else:
            say("tearing down: docker compose down -v, cluster stop")
            project.down()
            if cluster is not None:
                cluster.stop()


def _print_keep(project: ComposeProject, cluster, out) -> None:  # noqa: ANN001
    """--keep: leave everything running and say how to use it and how to stop it."""
    import atexit

    if cluster is not None:
        atexit.unregister(cluster.stop)
    pids = " ".join(str(p.pid) for p in (getattr(cluster, "_apiserver", None), getattr(cluster, "_etcd", None)) if p)
    settings = " ".join(f"{k}={project.env[k]}" for k in ("LOCAL_TAILNET_NET", "INSPECTOR_KUBECONFIG_FILE")
                        if k in project.env)
    compose = f"{settings} {' '.join(project.argv())}".strip()
    print("\nleft running (--keep):", file=out)
    print(f"  {compose} ps", file=out)
    print(f"  {compose} run --rm --no-deps --entrypoint mcp-tailnet-sidecar doctor doctor "
          f"--url=http://{SERVER_HOSTNAME}/sse "
          f"--proxy={CLIENT_PROXY} --call=get --arguments='{{\"resource\": \"pods\", \"all_namespaces\": true}}'",
          file=out)
    print(f"  kubeconfig (admin): {getattr(cluster, 'kubeconfig', '')}", file=out)
    print("to stop it:", file=out)
    print(f"  {compose} down -v", file=out)
    if pids:
        print(f"  kill {pids}; rm -rf {cluster.workdir}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_tailnet_lab.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the compose project and the cluster running")
    args = parser.parse_args(argv)
    return run(keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
