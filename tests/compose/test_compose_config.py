"""What the compose files promise, read the way Compose reads them (`docker compose config`).

Fast checks next to the live ones in test_compose_local.py: a missing auth key is a clear
error, no service publishes a port, each MCP server shares its sidecar's namespace and
binds loopback, the state volume is where TS_STATE_DIR points, every long-running
service has a health check; the local headscale runs embedded DERP only.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from mcp_tailnet_lab.paths import REPO_DIR

BASE = REPO_DIR / "docker-compose.yml"
LOCAL = REPO_DIR / "docker-compose.local.yml"
ONE_SHOTS = {"tailnet-keys"}


def compose_config(*files, env: dict[str, str] | None = None, profiles=("example",), check=True):
    argv = ["docker", "compose"]
    for f in files:
        argv += ["-f", str(f)]
    for p in profiles:
        argv += ["--profile", p]
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("TS_", "MCP_TAILNET_", "INSPECTOR_", "SIDECAR_", "LOCAL_TAILNET_"))}
    proc = subprocess.run(argv + ["config", "--format", "json"], capture_output=True, text=True, timeout=120,
                          cwd=REPO_DIR, env=clean | (env or {}))
    if not check:
        return proc
    assert proc.returncode == 0, f"docker compose config: {proc.stderr.strip()}"
    return json.loads(proc.stdout)


CONFIGS = {
    "docker-compose.yml": lambda: compose_config(BASE, env={"TS_AUTHKEY": "file:/dev/null",
                                                           "INSPECTOR_KUBECONFIG_FILE": "/dev/null"}),
    "docker-compose.local.yml": lambda: compose_config(LOCAL, env={"INSPECTOR_KUBECONFIG_FILE": "/dev/null"}),
}


def test_a_missing_auth_key_is_a_clear_error():
    proc = compose_config(BASE, env={"INSPECTOR_KUBECONFIG_FILE": "/dev/null"}, check=False)
    assert proc.returncode != 0
    assert "TS_AUTHKEY" in proc.stderr and "set TS_AUTHKEY to a Tailscale auth key" in proc.stderr, proc.stderr


def test_the_local_variant_needs_no_auth_key_but_a_kubeconfig():
    assert compose_config(LOCAL, env={"INSPECTOR_KUBECONFIG_FILE": "/dev/null"})  # no TS_AUTHKEY given
    proc = compose_config(LOCAL, check=False)
    assert proc.returncode != 0 and "INSPECTOR_KUBECONFIG_FILE" in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_no_service_publishes_a_port_or_uses_the_host_network(name):
    services = CONFIGS[name]()["services"]
    assert {"netns", "sidecar", "inspector", "example-netns", "example-sidecar", "example-server"} <= set(services)
    for sname, service in services.items():
        assert not service.get("ports"), f"{sname} publishes {service['ports']}"
        assert service.get("network_mode") != "host", sname


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_pair_shares_one_namespace_and_the_server_binds_loopback(name):
    services = CONFIGS[name]()["services"]
    for netns, sidecar, server in (("netns", "sidecar", "inspector"),
                                   ("example-netns", "example-sidecar", "example-server")):
        assert services[sidecar]["network_mode"] == f"service:{netns}"
        assert services[server]["network_mode"] == f"service:{netns}"
        assert "network_mode" not in services[netns], f"{netns} owns the namespace"
        for joiner in (sidecar, server):
            dep = services[joiner]["depends_on"][netns]
            assert dep["condition"] == "service_healthy" and dep["restart"] is True, (joiner, dep)
        assert services[netns]["cap_add"] == ["NET_ADMIN", "NET_RAW"]
        for other in (sidecar, server):
            assert "cap_add" not in services[other] and services[other]["cap_drop"] == ["ALL"], other
            assert services[other]["read_only"] is True, other
    # our inspector: on a loopback alias userspace tailscaled's forwarder never dials (issue 12 §1),
    # the one address the sidecar's upstream and the health check use too
    inspector = services["inspector"]["environment"]
    assert inspector["INSPECTOR_HOST"] == "127.0.0.3"
    assert services["sidecar"]["environment"]["SIDECAR_UPSTREAM_URL"] == f"http://127.0.0.3:{inspector['INSPECTOR_PORT']}"
    health = " ".join(services["inspector"]["healthcheck"]["test"])
    assert "os.environ['INSPECTOR_HOST']" in health and "127.0.0" not in health
    # the example (a stock server that insists on 127.0.0.1) relies on the sidecar's readiness
    example = services["example-sidecar"]["environment"]
    assert example["SIDECAR_UPSTREAM_URL"] == "http://127.0.0.1:8080" and "SIDECAR_ACCEPT_UPSTREAM_EXPOSURE" not in example


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_state_volume_is_where_ts_state_dir_points_and_health_is_checked(name):
    services = CONFIGS[name]()["services"]
    for sidecar in ("sidecar", "example-sidecar"):
        env = services[sidecar]["environment"]
        mounts = {m["target"]: m for m in services[sidecar]["volumes"]}
        assert mounts[env["TS_STATE_DIR"]]["type"] == "volume", f"{sidecar}: state is not on a named volume"
        assert services[sidecar]["healthcheck"]["test"] == ["CMD", "mcp-tailnet-sidecar", "probe", "ready"]
    for sname, service in services.items():
        if sname not in ONE_SHOTS and sname != "example-server":  # its image carries a HEALTHCHECK
            assert service.get("healthcheck", {}).get("test"), f"{sname} has no health check"


def test_inspector_kubeconfig_is_a_read_only_bind_that_must_exist():
    services = CONFIGS["docker-compose.yml"]()["services"]
    mount = next(m for m in services["inspector"]["volumes"] if m["target"] == "/etc/eks-inspector/kubeconfig")
    assert mount["type"] == "bind" and mount["read_only"] is True
    assert not mount.get("bind", {}).get("create_host_path"), "a missing kubeconfig would become a directory"


def test_local_variant_logs_in_to_headscale_by_ip_with_a_key_file():
    config = CONFIGS["docker-compose.local.yml"]()
    services = config["services"]
    ip = services["headscale"]["networks"]["default"]["ipv4_address"]
    assert services["headscale"]["environment"]["HEADSCALE_SERVER_URL"] == f"http://{ip}:8080"
    subnet = config["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert subnet.rsplit(".", 1)[0] == ip.rsplit(".", 1)[0]
    for sidecar in ("sidecar", "example-sidecar"):
        env = services[sidecar]["environment"]
        assert env["SIDECAR_LOGIN_SERVER"] == f"http://{ip}:8080"
        assert env["TS_AUTHKEY"].startswith("file:/run/tailnet-keys/")
        assert env["TS_DEBUG_USE_DERP_HTTP"] == "true" and env["TS_NO_LOGS_NO_SUPPORT"] == "true"
    client = services["tailnet-client"]["environment"]
    assert client["TS_EXTRA_ARGS"] == f"--login-server=http://{ip}:8080"
    assert client["TS_OUTBOUND_HTTP_PROXY_LISTEN"].startswith("127.0.0.1:")
    assert services["doctor"]["network_mode"] == "service:tailnet-client"


def test_local_headscale_runs_embedded_derp_only_and_the_policy_opens_80_and_443_only():
    hs = yaml.safe_load((REPO_DIR / "lab" / "compose" / "headscale" / "config.yaml").read_text())
    assert hs["derp"]["urls"] == [] and hs["derp"]["server"]["enabled"] is True
    assert hs["dns"]["magic_dns"] is True and hs["dns"]["base_domain"] == "lab.tailnet"
    assert hs["logtail"]["enabled"] is False and hs["disable_check_updates"] is True
    policy = json.loads((REPO_DIR / "lab" / "compose" / "headscale" / "policy.json").read_text())
    assert [a["dst"] for a in policy["acls"]] == [["tag:mcp:80,443"]]


def test_lab_image_requirements_match_uv_lock():
    """lab/compose/requirements-mcp.txt (the doctor and stock-server images) is uv.lock's export."""
    req = REPO_DIR / "lab" / "compose" / "requirements-mcp.txt"
    header = next(line for line in req.read_text().splitlines() if "uv export" in line)
    cmd = header.lstrip("# ").split()
    cmd = [c for i, c in enumerate(cmd) if c != "-o" and (i == 0 or cmd[i - 1] != "-o")]
    fresh = subprocess.run(cmd + ["--no-header"], cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr

    def body(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip()

    assert body(req.read_text()) == body(fresh.stdout), (
        f"{req.relative_to(REPO_DIR)} is stale: run `{header.lstrip('# ')}`")
