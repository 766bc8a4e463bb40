"""docker-compose.yml: the optional clusters file (INSPECTOR_CLUSTERS_FILE; issue 16 §2).

- Off by default: INSPECTOR_CLUSTERS is empty (one cluster) and an empty device stands in for
  the file, read-only. Set, the file is bind-mounted read-only where INSPECTOR_CLUSTERS points
  (docker-compose.yml and the local variant that includes it), and only in the inspector.
- The inspector image run the way Compose renders the service (its environment, its mounts,
  read-only root, no capabilities; host network to reach the lab's API server) reads the
  mounted file as uid 65532: `--check-config` answers one line per cluster (two contexts of
  the mounted kubeconfig: one the lab's API server, one a port nobody listens on, exit 1),
  and a file the inspector refuses stops it with the line naming INSPECTOR_CLUSTERS.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from mcp_tailnet_lab.images import build_repo_image
from mcp_tailnet_lab.pods import LABEL_RUN
from mcp_tailnet_lab.ports import free_port

from .test_compose_config import BASE, LOCAL, compose_config

TARGET = "/etc/eks-inspector/clusters.yaml"


def inspector_service(file: Path = BASE, **env: str) -> dict[str, Any]:
    base = {"TS_AUTHKEY": "file:/dev/null", "INSPECTOR_KUBECONFIG_FILE": "/dev/null"}
    return compose_config(file, env=base | env)["services"]["inspector"]


def clusters_mount(service: dict[str, Any]) -> dict[str, Any]:
    (mount,) = [v for v in service["volumes"] if v["target"] == TARGET]
    return mount


@pytest.mark.parametrize("file", [BASE, LOCAL], ids=["docker-compose.yml", "docker-compose.local.yml"])
def test_off_by_default(file: Path) -> None:
    service = inspector_service(file)
    assert service["environment"]["INSPECTOR_CLUSTERS"] == ""
    mount = clusters_mount(service)
    assert mount["source"] == "/dev/null" and mount["read_only"] is True


@pytest.mark.parametrize("file", [BASE, LOCAL], ids=["docker-compose.yml", "docker-compose.local.yml"])
def test_a_clusters_file_is_mounted_read_only_where_the_inspector_reads_it(file: Path, tmp_path: Path) -> None:
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text("clusters: []\n")
    service = inspector_service(file, INSPECTOR_CLUSTERS_FILE=str(clusters))
    assert service["environment"]["INSPECTOR_CLUSTERS"] == TARGET
    mount = clusters_mount(service)
    assert mount == {"type": "bind", "source": str(clusters), "target": TARGET, "read_only": True,
                     "bind": mount.get("bind", {})} and not mount.get("bind", {}).get("create_host_path")
    others = compose_config(file, env={"TS_AUTHKEY": "file:/dev/null", "INSPECTOR_KUBECONFIG_FILE": "/dev/null",
                                       "INSPECTOR_CLUSTERS_FILE": str(clusters)})["services"]
    for name, svc in others.items():
        if name != "inspector":
            assert all(str(clusters) != v.get("source") for v in svc.get("volumes", [])), name
            assert "INSPECTOR_CLUSTERS" not in (svc.get("environment") or {}), name


# -- the inspector image, run as Compose renders the service ------------------------------


def _run_as_compose(client: Any, image: str, service: dict[str, Any], run_id: str) -> tuple[int, str]:
    mounts = [docker.types.Mount(target=v["target"], source=v["source"], type="bind", read_only=v["read_only"])
              for v in service["volumes"]]
    env = {k: v for k, v in service["environment"].items() if v is not None}
    container = client.containers.run(
        image, command=["--check-config"], detach=True, environment=env, mounts=mounts,
        read_only=service["read_only"], tmpfs={t: "" for t in service["tmpfs"]}, cap_drop=service["cap_drop"],
        security_opt=service["security_opt"], network_mode="host", labels={LABEL_RUN: run_id})
    try:
        code = container.wait(timeout=90)["StatusCode"]
        return code, container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)


def _readable(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o644)  # the image's user (65532) reads it, as docs/compose.md says
    return path


def test_the_image_reads_the_mounted_file(cluster: Any, docker_client: Any, docker_run_id: str,
                                          tmp_path: Path) -> None:
    image = build_repo_image("eks-inspector", docker_client)
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    kubeconfig["clusters"].append({"name": "gone", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}})
    kubeconfig["contexts"].append({"name": "gone", "context": {"cluster": "gone", "user": "lab-admin"}})
    kc = _readable(tmp_path / "kubeconfig", yaml.safe_dump(kubeconfig))
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)["gitVersion"]

    good = _readable(tmp_path / "clusters.yaml", yaml.safe_dump({"clusters": [
        {"name": "lab", "context": "lab"}, {"name": "gone", "context": "gone"}]}))
    service = inspector_service(INSPECTOR_KUBECONFIG_FILE=str(kc), INSPECTOR_CLUSTERS_FILE=str(good))
    code, out = _run_as_compose(docker_client, image, service, docker_run_id)
    assert code == 1, out
    assert f"cluster default: reachable, {version}" in out and f"cluster lab: reachable, {version}" in out, out
    assert "cluster gone: NOT reachable:" in out, out

    bad = _readable(tmp_path / "bad.yaml", yaml.safe_dump({"clusters": [{"name": "default", "context": "lab"}]}))
    service = inspector_service(INSPECTOR_KUBECONFIG_FILE=str(kc), INSPECTOR_CLUSTERS_FILE=str(bad))
    code, out = _run_as_compose(docker_client, image, service, docker_run_id)
    assert code == 2 and "INSPECTOR_CLUSTERS" in out and "'default'" in out, out

    service = inspector_service(INSPECTOR_KUBECONFIG_FILE=str(kc))  # off: one cluster, no probe
    code, out = _run_as_compose(docker_client, image, service, docker_run_id)
    assert code == 0 and "settings valid" in out and "cluster default" not in out, out
