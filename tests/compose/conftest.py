"""The local compose variant with the real images: one stack per test module.

`local_stack` brings up docker-compose.local.yml (headscale, the tagged-key one-shot,
the inspector pair, the example pair with a stock MCP SDK server, a tailnet client and
its doctor) against a lab cluster served on the Docker bridge address, with images this
session built from the repo. Everything is named per run (compose project, image tags),
so two runs never collide, and removed afterwards, also when bringing it up failed.
A part that is missing fails the test with a message naming it; nothing is skipped.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_tailnet_lab import demo, release
from mcp_tailnet_lab.paths import REPO_DIR, MissingComponent

SERVER = demo.SERVER_HOSTNAME
EXAMPLE = demo.EXAMPLE_HOSTNAME
BASE_DOMAIN = "lab.tailnet"  # lab/compose/headscale/config.yaml
SHOP = "shop"
SHIPPED_POLICY = REPO_DIR / "lab" / "compose" / "headscale" / "policy.json"


@dataclass
class Stack:
    project: demo.ComposeProject
    client: Any  # docker.DockerClient
    cluster: Any  # LocalCluster
    marker: str  # in the names of the sample deployments: only a real call can know it
    images: dict[str, str]
    run_id: str  # the docker fixtures' per-run label value (their cleanup removes what carries it)
    policy_file: Path | None = None  # headscale's policy, a copy of lab/compose/headscale/policy.json

    def set_policy(self, policy: dict[str, Any], timeout: float = 60) -> None:
        """Rewrite headscale's policy file in place (the bind mount keeps its inode) and reload it
        (SIGHUP: headscale 0.29 in file mode re-reads the file), waiting for the reload line."""
        assert self.policy_file is not None
        headscale = self.container("headscale")
        before = len(headscale.logs().splitlines())
        with self.policy_file.open("r+") as fh:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(policy, indent=2))
        headscale.kill(signal="SIGHUP")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = headscale.logs().decode(errors="replace").splitlines()[before:]
            if any("Policy reload completed" in line for line in new):
                return
            if any('"level":"error"' in line and "polic" in line.lower() for line in new):
                raise AssertionError(f"headscale refused the policy: {new[-5:]}")
            time.sleep(0.5)
        raise AssertionError(f"headscale did not reload its policy within {timeout} s")

    @property
    def network(self) -> str:
        return f"{self.project.name}_default"

    def container(self, service: str) -> Any:
        return self.project.container(self.client, service)

    def doctor(self, url: str, call: str, arguments: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.project.doctor(url, call=call, arguments=arguments)

    def headscale_nodes(self) -> list[dict[str, Any]]:
        out = self.container("headscale").exec_run(["headscale", "nodes", "list", "-o", "json"])
        assert out.exit_code == 0, f"headscale nodes list: {out.output.decode(errors='replace')}"
        return json.loads(out.output) or []


def _docker_ok(client: Any) -> None:
    try:
        demo.require_images(client, demo.standin_images())
    except MissingComponent as exc:
        pytest.fail(str(exc), pytrace=False)
    proc = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"Docker Compose v2 (`docker compose`) is missing: run `lab/provision` (step 60-compose): "
                    f"{proc.stderr.strip()}", pytrace=False)


@pytest.fixture(scope="module")
def local_stack(docker_client: Any, docker_run_id: str, repo_images: dict[str, str]) -> Iterator[Stack]:
    _docker_ok(docker_client)
    rel = release.load()
    # This session's builds under a per-run registry, so the stack runs exactly them.
    registry = f"mcp-tailnet-test/{docker_run_id}"
    refs = []
    for image_dir, tag in repo_images.items():
        repository = f"{registry}/{rel.names[image_dir]}"
        docker_client.images.get(tag).tag(repository, rel.version)
        refs.append(f"{repository}:{rel.version}")
    doctor_image = f"mcp-tailnet-lab/doctor:{docker_run_id}"
    workdir = Path(tempfile.mkdtemp(prefix="mtc-compose-"))
    workdir.chmod(0o755)
    policy_file = workdir / "policy.json"
    policy_file.write_text(SHIPPED_POLICY.read_text())
    policy_file.chmod(0o644)
    marker = secrets.token_hex(3)
    project = demo.ComposeProject(name=f"mtc-{docker_run_id}-{secrets.token_hex(2)}", profiles=("example",))
    cluster = None
    try:
        cluster = demo.cluster_for_containers(docker_client)
        cluster.kubectl("apply", "-f", "-", input=demo.sample_workloads(SHOP, suffix=f"-{marker}"))
        kubeconfig = demo.inspector_kubeconfig(cluster, workdir / "inspector.kubeconfig")
        project.env = {
            **demo.build_args(docker_client),
            "LOCAL_TAILNET_NET": demo.free_tailnet_net(docker_client, prefer=None),
            "MCP_TAILNET_REGISTRY": registry,
            "MCP_TAILNET_VERSION": rel.version,
            "DOCTOR_IMAGE": doctor_image,
            "INSPECTOR_KUBECONFIG_FILE": str(kubeconfig),
            "DOCTOR_CALL": "get",
            "DOCTOR_ARGUMENTS": json.dumps({"resource": "deployments", "namespace": SHOP}),
            "HEADSCALE_POLICY_FILE": str(policy_file),
        }
        project.run("build", "doctor", "example-server", timeout=900)
        project.up()
        yield Stack(project, docker_client, cluster, marker, {"doctor": doctor_image}, docker_run_id, policy_file)
    except (demo.DemoError, MissingComponent) as exc:
        pytest.fail(f"the local compose stack did not come up: {exc}", pytrace=False)
    finally:
        project.down()
        if cluster is not None:
            cluster.stop()
        for ref in refs + [doctor_image]:
            try:
                docker_client.images.remove(ref, noprune=True)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
