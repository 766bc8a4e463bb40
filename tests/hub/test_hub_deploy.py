"""The hub's three deployments, read by their own tools and run where the lab can run them.

- docker-compose.hub.yml: `docker compose config` (the lab's Compose v2 plugin);
- manifests-variants/hub: `kubectl kustomize`, then `kubectl apply --dry-run=server` against
  the lab's kube-apiserver (RBAC and Pod Security admission on), then the variant's hub and
  inspector containers run as a pod in Docker exactly as rendered (read-only root, every
  capability dropped, the pod's uid, the ConfigMap as the mounted file), called with the SDK;
- ecs/task-definition.hub.json: rendered by `mcp_tailnet_ecs.render` and checked by its
  `validate` (botocore's RegisterTaskDefinition model, the Fargate rules, IAM).

Each deployment keeps one shape: the hub on the loopback alias 127.0.0.3:8080 (what the
sidecar forwards to), the inspector on 127.0.0.4:8080 (what the hub's config names), no
server on 127.0.0.1 (userspace tailscaled forwards unserved tailnet ports there,
docs/design.md facts 1 and 7), nothing published.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mcp_hub import config as hub_config
from mcp_tailnet_ecs import templates
from mcp_tailnet_ecs.render import RenderOptions, render
from mcp_tailnet_ecs.validate import validate
from mcp_tailnet_lab import release
from mcp_tailnet_lab.paths import REPO_DIR, binary
from mcp_tailnet_lab.waiting import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "manifests"))
from manifests_support import container, dump, env_value, key, load_docs, namespaces_created, one  # noqa: E402

COMPOSE = REPO_DIR / "docker-compose.hub.yml"
VARIANT = REPO_DIR / "manifests-variants" / "hub"
ECS_HUB = REPO_DIR / "ecs" / "task-definition.hub.json"
IMAGE_CONFIG = REPO_DIR / "images" / "mcp-hub" / "hub.toml"  # the image's default: k8s + time
EXAMPLE_CONFIG = REPO_DIR / "images" / "mcp-hub" / "node" / "hub.toml"  # the complete example
HUB_ALIAS, INSPECTOR_ALIAS = "127.0.0.3", "127.0.0.4"
NEVER = ("127.0.0.1", "::1", "0.0.0.0", "::", "localhost", "127.0.0.2")  # forwarded, wildcard, or the gateway's
PATHS = "/sse,/messages/,/mcp,/servers/"
REL = release.load()


def host_port(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.hostname or "", str(parts.port or 80)


def parsed(text: str) -> hub_config.HubConfig:
    return hub_config.parse(tomllib.loads(text), env={})


# --- docker-compose.hub.yml -----------------------------------------------------------------

def compose(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("TS_", "MCP_TAILNET_", "MCP_HUB_", "HUB_", "INSPECTOR_", "SIDECAR_", "PIP_"))}
    proc = subprocess.run(["docker", "compose", "-f", str(COMPOSE), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO_DIR, env=clean | env)
    if check:
        assert proc.returncode == 0, f"docker compose {' '.join(args)}: {proc.stderr.strip()}"
    return proc


def compose_config(**env: str) -> dict[str, Any]:
    base = {"TS_AUTHKEY": "file:/dev/null", "INSPECTOR_KUBECONFIG_FILE": "/dev/null"}
    return json.loads(compose(base | env, "config", "--format", "json").stdout)


def test_compose_config_is_valid_and_needs_an_auth_key():
    assert set(compose_config()["services"]) == {"netns", "sidecar", "hub", "inspector"}
    proc = compose({"INSPECTOR_KUBECONFIG_FILE": "/dev/null"}, "config", check=False)
    assert proc.returncode != 0 and "set TS_AUTHKEY to a Tailscale auth key" in proc.stderr, proc.stderr


def test_compose_puts_hub_inspector_and_sidecar_in_one_closed_namespace_on_aliases():
    services = compose_config()["services"]
    for name in ("sidecar", "hub", "inspector"):
        s = services[name]
        assert s["network_mode"] == "service:netns", name
        assert s.get("read_only") is True and s.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in s.get("security_opt", []), name
    assert not any(s.get("ports") for s in services.values()), "nothing is published on a host port"
    hub, sidecar, inspector = services["hub"], services["sidecar"], services["inspector"]
    assert (hub["environment"]["HUB_HOST"], hub["environment"]["HUB_PORT"]) == (HUB_ALIAS, "8080")
    assert host_port(sidecar["environment"]["SIDECAR_UPSTREAM_URL"]) == (HUB_ALIAS, "8080")
    assert sidecar["environment"]["SIDECAR_PATHS"] == PATHS
    assert sidecar["environment"]["TS_HOSTNAME"] == "mcp-hub"
    assert inspector["environment"]["INSPECTOR_HOST"] == INSPECTOR_ALIAS
    assert hub["tmpfs"] == ["/tmp"] and hub["healthcheck"]["test"][0] == "CMD"
    # its own state volume: not the default pair's node identity
    assert [v["source"] for v in sidecar["volumes"]] == ["hub-tailscale-state"]


def test_compose_mounts_the_complete_example_which_names_the_inspector_where_it_listens():
    services = compose_config()["services"]
    (mount,) = [v for v in services["hub"]["volumes"] if v["target"] == services["hub"]["environment"]["HUB_CONFIG"]]
    assert mount["read_only"] is True and Path(mount["source"]) == EXAMPLE_CONFIG
    cfg = hub_config.load(Path(mount["source"]), env={})
    assert set(cfg.servers) == {"k8s", "time", "everything"}
    inspector = services["inspector"]["environment"]
    assert host_port(cfg.servers["k8s"].url) == (inspector["INSPECTOR_HOST"], inspector["INSPECTOR_PORT"])
    # the Node server is where the derived image installs it (images/mcp-hub/node/Dockerfile)
    dockerfile = (REPO_DIR / "images" / "mcp-hub" / "node" / "Dockerfile").read_text()
    assert cfg.servers["everything"].command.startswith("/opt/node-servers/node_modules/.bin/")
    assert "npm ci --prefix /opt/node-servers" in dockerfile
    # a config naming a server that is not in the image's PATH is the user's choice; a
    # config file that does not exist is refused by compose, not replaced by a directory
    assert mount["bind"].get("create_host_path") in (False, None)


def test_compose_builds_the_hub_on_the_release_image_and_follows_an_override():
    build = compose_config()["services"]["hub"]["build"]
    assert build["args"]["HUB_IMAGE"] == REL.ref("mcp-hub")
    moved = compose_config(MCP_TAILNET_VERSION="9.9.9", MCP_TAILNET_REGISTRY="registry.example/me")
    assert moved["services"]["hub"]["build"]["args"]["HUB_IMAGE"] == "registry.example/me/mcp-hub:9.9.9"
    assert moved["services"]["sidecar"]["image"] == "registry.example/me/mcp-tailnet-sidecar:9.9.9"


# --- manifests-variants/hub ------------------------------------------------------------------

def kustomized() -> list[dict[str, Any]]:
    proc = subprocess.run([str(binary("kubectl")), "kustomize", str(VARIANT)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {VARIANT}: {proc.stderr.strip()}"
    return load_docs(proc.stdout)


def test_kustomize_puts_the_hub_between_the_sidecar_and_the_inspector():
    docs = kustomized()
    spec = one(docs, "Deployment", "eks-inspector")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["eks-inspector", "tailscale", "mcp-hub"]
    hub, sidecar, inspector = (container(spec, n) for n in ("mcp-hub", "tailscale", "eks-inspector"))
    assert hub["image"] == REL.ref("mcp-hub")
    assert (env_value(hub, "HUB_HOST"), env_value(hub, "HUB_PORT")) == (HUB_ALIAS, "8080")
    assert host_port(env_value(sidecar, "SIDECAR_UPSTREAM_URL")) == (HUB_ALIAS, "8080")
    assert env_value(sidecar, "SIDECAR_PATHS") == PATHS and env_value(sidecar, "TS_HOSTNAME") == "mcp-hub"
    assert env_value(inspector, "INSPECTOR_HOST") == INSPECTOR_ALIAS
    # restricted like the others; no Kubernetes credentials in the hub (its children inherit nothing)
    sc = hub["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc.get("privileged")
    assert not any("serviceaccount" in m["mountPath"] for m in hub["volumeMounts"])
    assert spec["automountServiceAccountToken"] is False
    assert hub["resources"]["limits"]["memory"] and hub["livenessProbe"]["exec"] and hub["readinessProbe"]["exec"]


def test_kustomize_config_map_is_the_image_default_and_names_the_inspector_alias():
    docs = kustomized()
    spec = one(docs, "Deployment", "eks-inspector")["spec"]["template"]["spec"]
    hub = container(spec, "mcp-hub")
    (mount,) = [m for m in hub["volumeMounts"] if m["name"] == "hub-config"]
    volume = next(v for v in spec["volumes"] if v["name"] == "hub-config")
    cm = one(docs, "ConfigMap", volume["configMap"]["name"])  # generated name, hash-suffixed: a change rolls the pod
    assert mount["readOnly"] is True and f"{mount['mountPath']}/hub.toml" == env_value(hub, "HUB_CONFIG")
    # One text for the image default (and so the ECS task) and the ConfigMap (kustomize reads
    # files under the component only, hence the copy this test keeps equal).
    assert cm["data"]["hub.toml"] == IMAGE_CONFIG.read_text()
    cfg = parsed(cm["data"]["hub.toml"])
    inspector = container(spec, "eks-inspector")
    assert host_port(cfg.servers["k8s"].url) == (env_value(inspector, "INSPECTOR_HOST"), env_value(inspector, "INSPECTOR_PORT"))
    assert set(cfg.servers) == {"k8s", "time"}


@pytest.mark.slow
def test_kustomize_server_side_dry_run_accepts_the_variant(cluster):
    docs = kustomized()
    with namespaces_created(cluster, docs):
        proc = cluster.kubectl("apply", "--dry-run=server", "-k", str(VARIANT), check=False)
        assert proc.returncode == 0, proc.stderr
        printed = {(line.split(" ")[0].split("/")[0].split(".")[0], line.split(" ")[0].split("/", 1)[1])
                   for line in proc.stdout.splitlines() if line.endswith("(server dry run)")}
        assert printed == {(kind.lower(), name) for kind, _ns, name in map(key, docs)}, proc.stdout
        assert "Warning" not in proc.stderr, f"the API server warned (Pod Security restricted?): {proc.stderr}"
        # The Pod the Deployment's controller would make is admitted by Pod Security `restricted`.
        deployment = one(docs, "Deployment", "eks-inspector")
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "hub-pod", "namespace": deployment["metadata"]["namespace"]},
               "spec": deployment["spec"]["template"]["spec"]}
        admitted = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=dump([pod]), check=False)
        assert admitted.returncode == 0 and "Warning" not in admitted.stderr, admitted.stderr


def _writable(c: dict[str, Any], volumes: dict[str, Any]) -> list[str]:
    return [m["mountPath"] for m in c.get("volumeMounts", [])
            if "emptyDir" in volumes[m["name"]] and not m.get("readOnly")]


IN_POD_CLIENT = """
import anyio, json
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
async def main():
    async with Client(streamable_http_client("http://127.0.0.3:8080/mcp")) as c:
        names = sorted(t.name for t in (await c.list_tools()).tools)
        r = await c.call_tool("time_get_current_time", {"timezone": "Asia/Tokyo"})
        print(json.dumps({"names": names, "time": r.content[0].text, "error": r.is_error}))
anyio.run(main)
"""


@pytest.mark.slow
def test_the_variant_pod_runs_read_only_with_its_config_map(pod, repo_images, cluster, k8s_namespace, tmp_path_factory):
    """The rendered hub and inspector containers, in one network namespace, as the kubelet runs them."""
    docs = kustomized()
    spec = one(docs, "Deployment", "eks-inspector")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    uid, gid = spec["securityContext"]["runAsUser"], spec["securityContext"]["fsGroup"]
    files = tmp_path_factory.mktemp("hubpod")
    os.chmod(files, 0o755)
    # The ConfigMap as the kubelet projects it: hub.toml in the mounted directory, read-only.
    cm_dir = files / "config"
    cm_dir.mkdir(mode=0o755)
    cm = one(docs, "ConfigMap", volumes["hub-config"]["configMap"]["name"])
    for name, text in cm["data"].items():
        (cm_dir / name).write_text(text)
        (cm_dir / name).chmod(0o444)
    # The inspector's in-cluster identity files (the API server is not reachable from the pod;
    # the inspector needs it for calls, not to start and list its tools).
    sa = files / "sa"
    sa.mkdir(mode=0o755)
    for name, text in (("token", cluster.mint_token(k8s_namespace, "default")),
                       ("ca.crt", Path(cluster.ca_file).read_text()), ("namespace", k8s_namespace)):
        (sa / name).write_text(text)
        (sa / name).chmod(0o444)

    def run_kwargs(name: str, image: str, binds: dict[str, dict[str, str]]) -> dict[str, Any]:
        c = container(spec, name)
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        return {"image": image, "user": f"{uid}:{gid}", "read_only": True, "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges"],
                "environment": {e["name"]: str(e["value"]) for e in c.get("env", []) if "value" in e},
                "tmpfs": {p: f"rw,nosuid,nodev,size=64m,uid={uid},gid={gid}" for p in _writable(c, volumes)},
                "volumes": binds}

    hub_spec = container(spec, "mcp-hub")
    config_mount = next(m["mountPath"] for m in hub_spec["volumeMounts"] if m["name"] == "hub-config")
    sa_mount = next(m["mountPath"] for m in container(spec, "eks-inspector")["volumeMounts"]
                    if m["name"] == "inspector-kube-api")
    api_host, _, api_port = cluster.server.removeprefix("https://").rpartition(":")
    inspector_env_extra = {"KUBERNETES_SERVICE_HOST": api_host, "KUBERNETES_SERVICE_PORT": api_port}
    inspector_kw = run_kwargs("eks-inspector", repo_images["eks-inspector"], {str(sa): {"bind": sa_mount, "mode": "ro"}})
    inspector_kw["environment"] |= inspector_env_extra
    hub_c, inspector_c = pod.run([
        run_kwargs("mcp-hub", repo_images["mcp-hub"], {str(cm_dir): {"bind": config_mount, "mode": "ro"}}),
        inspector_kw,
    ])

    def healthy(c) -> bool:  # noqa: ANN001
        c.reload()
        assert c.status == "running", f"{c.name} exited:\n{c.logs(tail=30).decode(errors='replace')}"
        return (c.attrs["State"].get("Health") or {}).get("Status") == "healthy"

    # The hub image's own HEALTHCHECK (it reads HUB_HOST/HUB_PORT), then the manifest's exec probes
    # of both containers, run inside them as the kubelet would.
    wait_for(lambda: healthy(hub_c), "the mcp-hub image HEALTHCHECK", timeout=180, interval=2)
    for name, c in (("mcp-hub", hub_c), ("eks-inspector", inspector_c)):
        for probe in ("readinessProbe", "livenessProbe"):
            command = container(spec, name)[probe]["exec"]["command"]
            wait_for(lambda c=c, command=command: c.exec_run(command).exit_code == 0, f"{name} {probe}",
                     timeout=120, interval=2)

    got: dict[str, Any] = {}

    def listed_with_k8s() -> bool:
        r = hub_c.exec_run(["python3", "-c", IN_POD_CLIENT])
        assert r.exit_code == 0, r.output.decode(errors="replace")
        got.update(json.loads(r.output.decode().strip().splitlines()[-1]))
        return any(n.startswith("k8s_") for n in got["names"])

    wait_for(listed_with_k8s, "the hub to list the inspector's tools over 127.0.0.4", timeout=60, interval=2)
    assert {"k8s_get", "k8s_describe", "time_get_current_time", "time_convert_time"} <= set(got["names"])
    assert {n.split("_", 1)[0] for n in got["names"]} == {"k8s", "time"}
    assert not got["error"] and '"timezone": "Asia/Tokyo"' in got["time"], got
    # the stdio child ran inside the read-only, non-root container, and nothing could be written
    logs = hub_c.logs().decode(errors="replace")
    started = [json.loads(line) for line in logs.splitlines() if '"child started"' in line]
    assert started and all(r["server"] == "time" for r in started), logs[-2000:]
    whoami = hub_c.exec_run(["python3", "-c", "import os; print(os.getuid())"])
    assert whoami.exit_code == 0 and whoami.output.decode().strip() == str(uid), whoami.output
    for path in ("/etc/mcp-hub/x", "/opt/venv/x", "/x"):
        write = hub_c.exec_run(["python3", "-c", f"open({path!r}, 'w')"])
        assert write.exit_code != 0 and b"Read-only file system" in write.output, (path, write.output)
    assert hub_c.exec_run(["python3", "-c", "open('/tmp/x', 'w').write('x')"]).exit_code == 0


# --- ecs/task-definition.hub.json --------------------------------------------------------------

def _rendered() -> templates.Bundle:
    return render(RenderOptions(account_id="123456789012", region="eu-west-1", eks_cluster="prod",
                                subnets=("subnet-0123456789abcdef0",), security_group="sg-0123456789abcdef0"))


def test_ecs_hub_task_definition_passes_the_model_and_every_fargate_rule():
    """The templates as they are and as `render` writes them (the hub task is one of its documents;
    the upstream-address rule checks sidecar -> hub -> inspector, tests/ecs/test_ecs_hub.py)."""
    assert templates.load_bundle()[templates.HUB_TASK_DEFINITION] == json.loads(ECS_HUB.read_text())
    for bundle, rendered in ((templates.load_bundle(), False), (_rendered(), True)):
        assert [str(f) for f in validate(bundle, rendered=rendered)] == []
    images = [c["image"] for c in _rendered()[templates.HUB_TASK_DEFINITION]["containerDefinitions"]]
    assert sorted(images) == sorted(REL.ref(d) for d in ("eks-inspector", "mcp-hub", "sidecar"))


def test_ecs_hub_task_keeps_every_server_on_its_alias_and_runs_the_image_default():
    td = json.loads(ECS_HUB.read_text())
    by_name = {c["name"]: c for c in td["containerDefinitions"]}
    env = {n: {e["name"]: e["value"] for e in c.get("environment", [])} for n, c in by_name.items()}
    hub, sidecar, inspector = env["mcp-hub"], env["tailscale"], env["eks-inspector"]
    assert (hub["HUB_HOST"], hub["HUB_PORT"]) == (HUB_ALIAS, "8080")
    assert host_port(sidecar["SIDECAR_UPSTREAM_URL"]) == (hub["HUB_HOST"], hub["HUB_PORT"])
    assert sidecar["SIDECAR_PATHS"] == PATHS and sidecar["TS_USERSPACE"] == "true"
    assert inspector["INSPECTOR_HOST"] == INSPECTOR_ALIAS
    assert not {hub["HUB_HOST"], inspector["INSPECTOR_HOST"]} & set(NEVER)
    # Fargate cannot mount a file: the hub runs the image's default config, which names the
    # inspector where this task puts it.
    assert "HUB_CONFIG" not in hub
    cfg = hub_config.load(IMAGE_CONFIG, env={})
    assert host_port(cfg.servers["k8s"].url) == (inspector["INSPECTOR_HOST"], inspector["INSPECTOR_PORT"])
    assert by_name["tailscale"]["dependsOn"] == [{"containerName": "mcp-hub", "condition": "HEALTHY"}]
    assert by_name["mcp-hub"]["readonlyRootFilesystem"] is True
    assert {"containerPath": "/tmp", "readOnly": False, "sourceVolume": "hub-tmp"} in by_name["mcp-hub"]["mountPoints"]


def test_the_shipped_configs_keep_every_server_off_the_forwarded_addresses():
    """The image default (ECS, the ConfigMap) and the complete example (compose): HTTP upstreams on
    a loopback alias of the pod/task, stdio servers with no inline secret."""
    for path in (IMAGE_CONFIG, EXAMPLE_CONFIG):
        cfg = hub_config.load(path, env={})
        for server in cfg.servers.values():
            if server.url:
                assert host_port(server.url)[0] not in NEVER + (HUB_ALIAS,), f"{path}: {server.name} {server.url}"
            assert not server.headers and all(isinstance(v, str) for v in server.env.values())


def test_docs_show_the_complete_example_as_compose_mounts_it():
    """docs/hub.md's example is the file docker-compose.hub.yml mounts, byte for byte, and it parses."""
    doc = (REPO_DIR / "docs" / "hub.md").read_text()
    start = doc.index("```toml\n") + len("```toml\n")
    shown = doc[start:doc.index("```", start)]
    assert shown == EXAMPLE_CONFIG.read_text()
    assert set(parsed(shown).servers) == {"k8s", "time", "everything"}
