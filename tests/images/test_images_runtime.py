"""The released images start as manifests/ runs them: read-only root filesystems,
writable only where the manifest declares an emptyDir (here: a tmpfs at the same
path), every capability dropped, no privilege escalation, the image's own
non-root user; and their health checks pass, both Docker's HEALTHCHECK of the
image and the manifest's probe commands.

The pair runs as a pod (one network namespace) against the lab's real headscale,
so the sidecar's readiness (tailnet Running, serve applied, upstream answering)
is the real thing. The inspector gets its in-cluster identity files from the
lab's real API server; the API server itself is not reachable from the pod, which
the inspector only needs for tool calls, not to start and answer /healthz.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mcp_tailnet_lab.waiting import wait_for

from images_support import (
    declared_writable_paths,
    deployment_containers,
    health,
    write_file,
)

HEALTH_TIMEOUT = 180  # HEALTHCHECK intervals are 15 s; start periods 20-60 s


def _run_kwargs(manifest_container: dict[str, Any], image: str, env: dict[str, str],
                binds: dict[str, dict[str, str]]) -> dict[str, Any]:
    pod_sc = manifest_container["_pod_security"]
    uid, gid = pod_sc["runAsUser"], pod_sc["fsGroup"]
    sc = manifest_container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False
    return {
        "image": image,
        "environment": env,
        "read_only": True,
        # emptyDir as the kubelet makes it for the pod's fsGroup. Docker gives a tmpfs the
        # mode of the image's directory underneath and ignores `mode=`, so ownership is
        # what makes it writable: uid/gid of the pod's runAsUser/fsGroup.
        "tmpfs": {p: f"rw,nosuid,nodev,size=64m,uid={uid},gid={gid}" for p in declared_writable_paths(manifest_container)},
        "volumes": binds,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        # no `user`: the image's own USER must be non-root (checked below)
    }


def _manifest_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


@pytest.fixture
def pod_pair(pod, headscale, cluster, k8s_namespace, release_images, tmp_path_factory):
    """eks-inspector + sidecar as manifests/50-deployment.yaml runs them."""
    manifest = deployment_containers()
    files = tmp_path_factory.mktemp("pod")
    os.chmod(files, 0o755)

    # The inspector's in-cluster identity: the three files the kubelet would project.
    sa = files / "sa"
    sa.mkdir(mode=0o755)
    write_file(sa / "token", cluster.mint_token(k8s_namespace, "eks-inspector"))
    write_file(sa / "ca.crt", Path(cluster.ca_file).read_text())
    write_file(sa / "namespace", k8s_namespace)
    api_host, _, api_port = cluster.server.removeprefix("https://").rpartition(":")
    inspector_env = _manifest_env(manifest["eks-inspector"]) | {
        "KUBERNETES_SERVICE_HOST": api_host, "KUBERNETES_SERVICE_PORT": api_port,
    }

    # The sidecar's auth key as a file, read through the manifest's `file:` path.
    key_dir = files / "authkey"
    key_dir.mkdir(mode=0o755)
    write_file(key_dir / "TS_AUTHKEY", headscale.preauth_key("lab"))
    hostname = f"img-ro-{os.getpid()}-{os.urandom(2).hex()}"
    sidecar_env = _manifest_env(manifest["tailscale"]) | {
        "TS_HOSTNAME": hostname,
        "TS_KUBE_SECRET": "",  # not in Kubernetes: state in memory (an ephemeral node)
        "SIDECAR_LOGIN_SERVER": headscale.url,
        "TS_DEBUG_USE_DERP_HTTP": "true",  # the lab's embedded DERP speaks plain HTTP
        "TS_DISABLE_PORTMAPPER": "1",
        "POD_NAME": hostname, "POD_UID": "00000000-0000-0000-0000-000000000000",
    }
    key_mount = next(m["mountPath"] for m in manifest["tailscale"]["volumeMounts"] if m["name"] == "authkey")
    sa_mount = next(m["mountPath"] for m in manifest["eks-inspector"]["volumeMounts"] if m["name"] == "inspector-kube-api")
    assert sidecar_env["TS_AUTHKEY"].startswith(f"file:{key_mount}/")

    containers = pod.run([
        _run_kwargs(manifest["eks-inspector"], release_images["eks-inspector"].ref, inspector_env,
                    {str(sa): {"bind": sa_mount, "mode": "ro"}}),
        _run_kwargs(manifest["tailscale"], release_images["sidecar"].ref, sidecar_env,
                    {str(key_dir): {"bind": key_mount, "mode": "ro"}}),
    ])
    return {"eks-inspector": containers[0], "tailscale": containers[1], "manifest": manifest, "hostname": hostname}


def _logs(c: Any) -> str:
    return c.logs(tail=40).decode(errors="replace")


def test_pair_starts_read_only_and_health_checks_pass(pod_pair, headscale):
    manifest = pod_pair["manifest"]
    for name in ("eks-inspector", "tailscale"):
        c = pod_pair[name]
        c.reload()
        host = c.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert sorted(host["Tmpfs"]) == sorted(declared_writable_paths(manifest[name]))

    # Docker runs the images' own HEALTHCHECK commands: both must turn healthy.
    for name in ("eks-inspector", "tailscale"):
        c = pod_pair[name]

        def healthy(c=c) -> bool:
            c.reload()
            assert c.status == "running", f"{c.name} exited:\n{_logs(c)}"
            return health(c).get("Status") == "healthy"

        try:
            wait_for(healthy, f"{name} HEALTHCHECK to pass", HEALTH_TIMEOUT, interval=2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nhealth log: {health(c).get('Log', [])[-2:]}\n{_logs(c)}") from None

    # The manifest's probe commands, run inside the containers as the kubelet would:
    # liveness passes now; readiness (serve applied too) within a bounded wait.
    for name in ("eks-inspector", "tailscale"):
        c = pod_pair[name]
        live = c.exec_run(manifest[name]["livenessProbe"]["exec"]["command"])
        assert live.exit_code == 0, f"{name} livenessProbe: {live.output.decode(errors='replace')}"
        ready_cmd = manifest[name]["readinessProbe"]["exec"]["command"]
        last: list[str] = []

        def ready(c=c, cmd=ready_cmd, last=last) -> bool:
            r = c.exec_run(cmd)
            last[:] = [r.output.decode(errors="replace")]
            return r.exit_code == 0

        try:
            wait_for(ready, f"{name} readinessProbe {ready_cmd}", HEALTH_TIMEOUT, interval=3)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{last}\n{_logs(c)}") from None

    # The node really is on the tailnet under its name.
    assert any(n.get("given_name", n.get("givenName")) == pod_pair["hostname"] or n.get("name") == pod_pair["hostname"]
               for n in headscale.nodes()), [n.get("name") for n in headscale.nodes()]


def test_nothing_but_the_declared_paths_is_writable(pod_pair):
    """Read-only means read-only: / and the app fail, the declared tmpfs paths work."""
    manifest = pod_pair["manifest"]
    for name in ("eks-inspector", "tailscale"):
        c = pod_pair[name]
        wait_for(lambda c=c: (c.reload(), c.status)[1] == "running", f"{name} running", 60)
        for path in ("/probe-file", "/opt/venv/probe-file", "/etc/probe-file", "/var/probe-file"):
            r = c.exec_run(["python3", "-c", f"open({path!r}, 'w')"])
            assert r.exit_code != 0 and b"Read-only file system" in r.output, (name, path, r.output)
        for path in declared_writable_paths(manifest[name]):
            r = c.exec_run(["python3", "-c", f"open({path!r} + '/probe-file', 'w').write('x')"])
            assert r.exit_code == 0, (name, path, r.output)
        whoami = c.exec_run(["python3", "-c", "import os; print(os.getuid())"]).output.decode().strip()
        assert whoami != "0"
