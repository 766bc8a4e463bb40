"""Smoke tests of the lab's Docker side: the real engine, the stand-in base images,
an image built from this repo, pods sharing a network namespace, and compose.

Each would fail if a part were missing or faked: versions are the engine's own
answers, binaries are compared byte for byte with the lab-built ones, package
versions are read inside the built image, and the shared namespace is shown both
by /proc/self/ns/net and by who can reach a loopback port.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.markers import Marker

from mcp_tailnet_lab.images import IMAGES_DIR, repo_image_names
from mcp_tailnet_lab.paths import binary, versions
from mcp_tailnet_lab.pods import LABEL_RUN, PodFactory

# A loopback-only HTTP server answering with a token, and a client that retries a bounded time.
SERVER = textwrap.dedent("""
    import http.server, os
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = os.environ["TOKEN"].encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
    http.server.HTTPServer(("127.0.0.1", 8000), H).serve_forever()
""")
CLIENT = textwrap.dedent("""
    import os, sys, time, urllib.request
    print("netns", os.readlink("/proc/self/ns/net"), flush=True)
    err = None
    for _ in range(int(sys.argv[2])):
        try:
            print("body", urllib.request.urlopen(sys.argv[1], timeout=2).read().decode(), flush=True)
            sys.exit(0)
        except OSError as exc:
            err = exc
            time.sleep(0.25)
    print("failed", err, flush=True)
    sys.exit(3)
""")

Run = Callable[..., tuple[int, str]]


def _wait(container: Any, timeout: int = 90) -> tuple[int, str]:
    status = container.wait(timeout=timeout)["StatusCode"]
    return status, container.logs().decode(errors="replace")


@pytest.fixture
def run(docker_client: Any, docker_run_id: str) -> Iterator[Run]:
    """run(image, command, **containers.run kwargs) -> (exit status, output) of a labelled one-shot container."""
    made: list[Any] = []

    def _run(image: str, command: list[str], timeout: int = 90, **kw: Any) -> tuple[int, str]:
        kw["labels"] = {**kw.get("labels", {}), LABEL_RUN: docker_run_id}
        container = docker_client.containers.run(image, command, detach=True, **kw)
        made.append(container)
        return _wait(container, timeout)

    yield _run
    for container in made:
        container.remove(force=True, v=True)


def _ok(result: tuple[int, str]) -> str:
    status, out = result
    assert status == 0, out
    return out


def test_engine_is_debian_docker_20_10(docker_client: Any) -> None:
    info = docker_client.version()
    assert info["Version"].startswith("20.10."), info["Version"]
    assert info["ApiVersion"] == "1.41"
    assert docker_client.info()["OperatingSystem"].startswith("Debian")


@pytest.mark.parametrize("key", ["PYTHON_BASE_IMAGE", "TAILSCALE_IMAGE", "HEADSCALE_IMAGE"])
def test_standin_base_image_has_the_upstream_tag(docker_client: Any, key: str) -> None:
    tag = versions()[key]
    tags = [t for image in docker_client.images.list(name=tag.split(":")[0]) for t in image.tags]
    assert tag in tags, f"{tag} ({key}) is not in the Docker engine: run lab/provision (step 80-base-images)"
    labels = docker_client.images.get(tag).attrs["Config"]["Labels"]
    assert labels.get("org.mcp-tailnet.lab.standin", "").startswith(tag)


def test_python_base_follows_the_official_conventions(docker_client: Any, run: Run) -> None:
    tag = versions()["PYTHON_BASE_IMAGE"]
    out = _ok(run(tag, ["sh", "-c", "command -v python3 && command -v python && python -V"
                                    " && python -m venv /tmp/v && /tmp/v/bin/python -m pip --version"]))
    assert "/usr/local/bin/python3\n/usr/local/bin/python\n" in out
    assert re.search(r"Python 3\.11\.\d+", out)
    assert "/tmp/v/lib/python3.11/site-packages/pip" in out
    assert docker_client.images.get(tag).attrs["Config"]["Cmd"] == ["python3"]


def _sha256_in_image(run: Run, image: str, path: str) -> str:
    return _ok(run(image, ["sha256sum", path], entrypoint="")).split()[0]


def test_tailscale_standin_has_the_official_layout(docker_client: Any, run: Run) -> None:
    tag = versions()["TAILSCALE_IMAGE"]
    assert docker_client.images.get(tag).attrs["Config"]["Entrypoint"] == ["/usr/local/bin/containerboot"]
    out = _ok(run(tag, ["-c", "tailscale version && iptables --version && ip -V"], entrypoint="sh"))
    assert out.startswith(versions()["TAILSCALE_VERSION"].lstrip("v"))
    assert "legacy" in out  # iptables-legacy, as upstream links it
    assert "iproute2" in out
    for name in ("tailscale", "tailscaled", "containerboot"):
        want = hashlib.sha256(binary(name).read_bytes()).hexdigest()
        assert _sha256_in_image(run, tag, f"/usr/local/bin/{name}") == want, name


def test_tailscale_standin_runs_tailscaled_in_tun_mode(run: Run) -> None:
    # No network at all: this only shows the image has what kernel (TUN) mode needs.
    script = (
        "tailscaled --no-logs-no-support --state=mem: --tun=tailscale0 --socket=/tmp/ts.sock >/tmp/log 2>&1 & "
        # Wait (bounded: 60 s) for the link to be UP and the firewall choice logged, not
        # merely for the device to exist: on a loaded machine tailscaled brings it up later.
        "for i in $(seq 1 300); do ip -o link show tailscale0 2>/dev/null | grep -q '[<,]UP[,>]' "
        "&& grep -q 'choosing iptables' /tmp/log && break; sleep 0.2; done; "
        "ip -o link show tailscale0; grep -o 'choosing iptables' /tmp/log"
    )
    out = _ok(run(
        versions()["TAILSCALE_IMAGE"], ["-c", script], entrypoint="sh", network_mode="none",
        cap_add=["NET_ADMIN"], devices=["/dev/net/tun:/dev/net/tun"],
        environment={"TS_NO_LOGS_NO_SUPPORT": "true"},
    ))
    assert re.search(r"tailscale0: <[^>]*\bUP\b", out), out
    assert "choosing iptables" in out


def test_headscale_standin_runs_the_lab_built_release(docker_client: Any, run: Run) -> None:
    tag = versions()["HEADSCALE_IMAGE"]
    config = docker_client.images.get(tag).attrs["Config"]
    assert config["Entrypoint"] == ["/ko-app/headscale"]
    assert "/ko-app" in next(e for e in config["Env"] if e.startswith("PATH=")).split(":")
    assert config["Labels"]["org.opencontainers.image.version"] == versions()["HEADSCALE_VERSION"]
    # The very binary the lab built at the pinned tag (its `version` says "dev" when
    # built from the downloaded module, so compare bytes, not the banner).
    want = hashlib.sha256(binary("headscale").read_bytes()).hexdigest()
    assert _sha256_in_image(run, tag, "/ko-app/headscale") == want
    assert _ok(run(tag, ["version"])).strip()


def _locked(name: str) -> dict[str, str]:
    """name -> version of the locked requirements that apply on Linux CPython 3.11 (the image)."""
    env = {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython"}
    out = {}
    req = (IMAGES_DIR / name / "requirements.txt").read_text()
    for m in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s;]+)(?:\s*;\s*([^\\\n]+))?", req, re.M):
        if not m[3] or Marker(m[3].strip()).evaluate(env):
            out[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return out


@pytest.mark.parametrize(("name", "module", "script"), [
    ("sidecar", "mcp_tailnet_sidecar", "mcp-tailnet-sidecar"),
    ("eks-inspector", "eks_inspector", "eks-inspector"),
])
def test_repo_image_runs_its_package_as_locked(repo_images: dict[str, str], run: Run,
                                               name: str, module: str, script: str) -> None:
    assert set(repo_image_names()) <= set(repo_images)
    probe = (
        "import importlib.metadata as md, json, os, shutil, %s as m; "
        "print(json.dumps({'file': m.__file__, 'uid': os.getuid(), 'script': shutil.which('%s'), "
        "'dists': {d.metadata['Name']: d.version for d in md.distributions()}}))"
    ) % (module, script)
    got = json.loads(_ok(run(repo_images[name], ["-c", probe], entrypoint="python", read_only=True)))
    assert got["file"].startswith("/opt/venv/lib/python3.11/site-packages/")
    assert got["uid"] == 65532
    assert got["script"] == f"/opt/venv/bin/{script}"
    installed = {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in got["dists"].items()}
    for dist, version in _locked(name).items():
        assert installed.get(dist) == version, f"{dist} in {name}"
    # Only the locked requirements and the component itself: no pip, no test tools.
    assert "pip" not in installed and "pytest" not in installed
    assert f"usage: {script}" in _ok(run(repo_images[name], ["--help"], read_only=True))


def test_pod_shares_one_network_namespace(pod: PodFactory, run: Run) -> None:
    image, token = versions()["PYTHON_BASE_IMAGE"], secrets.token_hex(8)
    p = pod.run([
        {"image": image, "command": ["python3", "-c", SERVER], "environment": {"TOKEN": token}},
        {"image": image, "command": ["python3", "-c", CLIENT, "http://127.0.0.1:8000/", "120"]},
    ])
    status, logs = _wait(p[1])
    assert status == 0, logs
    assert f"body {token}" in logs
    # A container on the same docker network, in its own namespace: the loopback
    # port is not reachable at the pod's address.
    status, out_logs = run(image, ["python3", "-c", CLIENT, f"http://{p.ip}:8000/", "8"],
                           network=p.network.name, labels=pod.labels)
    assert status == 3, out_logs
    assert "refused" in out_logs.lower()
    assert token not in out_logs
    netns = re.search(r"netns (\S+)", logs)[1]
    assert netns != re.search(r"netns (\S+)", out_logs)[1]
    owner = p[0].exec_run(["python3", "-c", "import os; print(os.readlink('/proc/self/ns/net'))"])
    assert owner.output.decode().strip() == netns


def test_pod_cleanup_removes_containers_and_network(docker_client: Any, docker_run_id: str) -> None:
    factory = PodFactory(docker_client, docker_run_id)
    p = factory.run([{"image": versions()["PYTHON_BASE_IMAGE"], "command": ["sleep", "300"]}])
    assert docker_client.containers.get(p[0].id).status in ("created", "running")
    assert factory.cleanup() == []
    owned = {"label": f"org.mcp-tailnet.lab.owner={factory.owner}"}
    assert docker_client.containers.list(all=True, filters=owned) == []
    assert docker_client.networks.list(filters=owned) == []


def test_pod_refuses_network_settings_it_owns(pod: PodFactory) -> None:
    image = versions()["PYTHON_BASE_IMAGE"]
    with pytest.raises(ValueError, match="network_mode"):
        pod.run([{"image": image, "network_mode": "host"}])
    with pytest.raises(ValueError, match="ports"):
        pod.run([{"image": image}, {"image": image, "ports": {"80/tcp": 8080}}])


def test_docker_compose_v2_runs_against_the_engine(docker_client: Any, tmp_path: Path) -> None:
    short = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=60)
    assert short.returncode == 0, short.stderr
    assert short.stdout.strip() == versions()["COMPOSE_VERSION"].lstrip("v")
    token = secrets.token_hex(8)
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(f"""
        services:
          hello:
            image: {versions()["PYTHON_BASE_IMAGE"]}
            command: ["python3", "-c", "print('compose says {token}')"]
    """))
    project = f"mtl-{secrets.token_hex(4)}"
    base = ["docker", "compose", "-p", project, "-f", str(tmp_path / "compose.yaml")]
    try:
        up = subprocess.run(base + ["up", "--abort-on-container-exit", "--exit-code-from", "hello"],
                            capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        assert f"compose says {token}" in up.stdout
    finally:
        subprocess.run(base + ["down", "--volumes", "--remove-orphans"], capture_output=True, timeout=120)
    assert docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"}) == []


def test_docker_client_fails_naming_the_engine_when_none_answers(tmp_path: Path) -> None:
    (tmp_path / "test_needs_docker.py").write_text(
        "def test_uses_engine(docker_client):\n    assert docker_client.ping()\n"
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-such-docker.sock"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "mcp_tailnet_lab.pytest_plugin", "-p", "no:cacheprovider",
         "-q", "test_needs_docker.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "the Docker engine is not answering at unix://" in out
    assert "no-such-docker.sock" in out and "lab/provision" in out
    assert "1 error" in out and "skipped" not in out
