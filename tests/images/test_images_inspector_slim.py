"""The slimmed eks-inspector image still does everything the inspector needs.

images/eks-inspector/Dockerfile removes parts of installed packages to meet the
size budget (kubernetes/aio, botocore's models of services never called, boto3's
resource models) and ships no byte-code. These tests run the built image, read-only
and as its own user, and prove what is left suffices: boto3 builds the eks and sts
clients and resolves the same endpoints as an untrimmed botocore of the same
version, every EKS operation the tools call is in the kept model, the inspector
starts and answers /healthz, and its EKS tools and EKS-token auth work against a
real HTTP AWS endpoint (moto_server on the host's loopback; the container shares
the host's network namespace so loopback is the only path it uses).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from mcp_tailnet_lab.moto_server import running_moto
from mcp_tailnet_lab.paths import REPO_DIR
from mcp_tailnet_lab.pods import LABEL_RUN
from mcp_tailnet_lab.ports import free_port
from mcp_tailnet_lab.waiting import wait_for

from images_support import run_python

REGION = "eu-west-1"
CLUSTER = "slim-eks"
NODEGROUP = "workers"
EKS_TOOLS = REPO_DIR / "tools" / "eks-inspector" / "src" / "eks_inspector" / "tools" / "eks.py"
#: Regions across the partitions botocore's endpoints/partitions files describe.
REGIONS = ("eu-west-1", "us-east-1", "cn-north-1", "us-gov-west-1")
AWS_TEST_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "AWS_EC2_METADATA_DISABLED": "true"}


def _eks_operations() -> list[str]:
    """The boto3 methods the inspector's EKS tools call, read from their source."""
    ops = sorted(set(re.findall(r'\._(?:call|list)\(\s*"([a-z_]+)"', EKS_TOOLS.read_text())))
    assert len(ops) >= 5, f"found only {ops} in {EKS_TOOLS}"
    return ops


# Endpoints and operation models as a given botocore sees them; run in the image and on the host.
CLIENTS_PROBE = """
import json, sys, boto3
regions, ops = json.loads(sys.argv[1])
out = {"endpoints": {}, "operations": {}}
for region in regions:
    s = boto3.Session(region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")
    for service in ("eks", "sts"):
        out["endpoints"][f"{service}/{region}"] = s.client(service).meta.endpoint_url
eks = boto3.Session(region_name=regions[0], aws_access_key_id="t", aws_secret_access_key="t").client("eks")
for op in ops:
    model = eks.meta.service_model.operation_model(eks.meta.method_to_api_mapping[op])
    out["operations"][op] = sorted(model.output_shape.members)
print(json.dumps(out, sort_keys=True))
"""


def _probe_clients(run: Any) -> dict[str, Any]:
    return json.loads(run(json.dumps([list(REGIONS), _eks_operations()])))


def test_trimmed_parts_are_gone(docker_client, release_images):
    """Not vacuous: the parts the Dockerfile removes are really absent, the kept ones present."""
    code = ("import importlib.util as u, json, os, botocore, sys; "
            "d = os.path.join(os.path.dirname(botocore.__file__), 'data'); "
            "pyc = [os.path.join(r, f) for r, _, fs in os.walk(sys.prefix) for f in fs if f.endswith('.pyc')]; "
            "print(json.dumps({'aio': u.find_spec('kubernetes.aio') is not None, "
            "'aiohttp': u.find_spec('aiohttp') is not None, 'client': u.find_spec('kubernetes.client') is not None, "
            "'data': sorted(os.listdir(d)), 'pyc': len(pyc)}))")
    seen = json.loads(run_python(docker_client, release_images["eks-inspector"].ref, code))
    assert seen["client"] and not seen["aio"] and not seen["aiohttp"], seen
    assert seen["data"] == ["_retry.json", "eks", "endpoints.json", "partitions.json",
                            "sdk-default-configuration.json", "sts"], seen["data"]
    assert seen["pyc"] == 0


def test_boto3_builds_eks_and_sts_clients_like_an_untrimmed_botocore(docker_client, release_images):
    image = release_images["eks-inspector"].ref
    version = run_python(docker_client, image, "import botocore; print(botocore.__version__)").strip()
    import botocore

    assert version == botocore.__version__, "host and image botocore differ: the comparison would mean nothing"
    in_image = _probe_clients(lambda arg: docker_client.containers.run(
        image, entrypoint=["/opt/venv/bin/python"], command=["-c", CLIENTS_PROBE, arg], remove=True,
        network_disabled=True, read_only=True, stderr=True).decode())
    on_host = _probe_clients(lambda arg: subprocess.run(
        [sys.executable, "-c", CLIENTS_PROBE, arg], capture_output=True, text=True, check=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", **AWS_TEST_ENV}).stdout)
    assert in_image == on_host
    assert in_image["endpoints"]["eks/cn-north-1"] == "https://eks.cn-north-1.amazonaws.com.cn"
    assert all(in_image["operations"][op] for op in _eks_operations())


# --- the inspector itself, in the image, against moto --------------------------------------------

@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server on a free loopback port with an EKS cluster and a node group; yields its URL."""
    env = {"PATH": "/usr/bin:/bin", **AWS_TEST_ENV, "AWS_REGION": REGION}
    with running_moto(env, tmp_path_factory.mktemp("moto") / "moto.log") as url:
        eks = boto3.client("eks", region_name=REGION, endpoint_url=url, aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        eks.create_cluster(name=CLUSTER, version="1.35", roleArn="arn:aws:iam::123456789012:role/eks",
                           resourcesVpcConfig={"subnetIds": ["subnet-1"], "endpointPublicAccess": False,
                                               "endpointPrivateAccess": True})
        eks.create_nodegroup(clusterName=CLUSTER, nodegroupName=NODEGROUP, nodeRole="arn:aws:iam::123456789012:role/n",
                             subnets=["subnet-1"], instanceTypes=["m7g.large"],
                             scalingConfig={"minSize": 1, "maxSize": 3, "desiredSize": 2})
        yield url


@pytest.fixture(scope="module")
def kubeconfig_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid kubeconfig naming an unused port: the EKS tools talk to AWS only."""
    d = tmp_path_factory.mktemp("kc")
    d.chmod(0o755)
    path = d / "config"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "unused"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    }))
    path.chmod(0o444)
    return d


def _container_kwargs(image: str, env: dict[str, str], kubeconfig_dir: Path, docker_run_id: str) -> dict[str, Any]:
    """As manifests/ runs the inspector: read-only root, a tmpfs /tmp, no capabilities, the image's user."""
    return {"image": image, "environment": {**AWS_TEST_ENV, "AWS_REGION": REGION, **env},
            "read_only": True, "tmpfs": {"/tmp": "rw,nosuid,nodev,size=16m"}, "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"], "network_mode": "host",
            "volumes": {str(kubeconfig_dir): {"bind": "/kube", "mode": "ro"}},
            "labels": {LABEL_RUN: docker_run_id}}


@contextlib.contextmanager
def _inspector(docker_client: Any, image: str, moto: str, kubeconfig_dir: Path, docker_run_id: str) -> Iterator[str]:
    port = free_port()
    env = {"INSPECTOR_HOST": "127.0.0.1", "INSPECTOR_PORT": str(port), "INSPECTOR_AUTH": "kubeconfig",
           "INSPECTOR_KUBECONFIG": "/kube/config", "INSPECTOR_EKS_CLUSTER": CLUSTER, "AWS_ENDPOINT_URL": moto}
    container = docker_client.containers.run(detach=True, **_container_kwargs(image, env, kubeconfig_dir, docker_run_id))
    base = f"http://127.0.0.1:{port}"
    try:
        def healthz() -> bool:
            container.reload()
            assert container.status == "running", f"inspector exited:\n{container.logs(tail=40).decode(errors='replace')}"
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=3) as resp:
                    return resp.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        wait_for(healthz, f"the inspector in {image} to answer /healthz", 180, interval=0.5)
        yield base
    finally:
        container.remove(force=True)


def _mcp(base: str, tool: str | None = None, args: dict[str, Any] | None = None) -> Any:
    async def run() -> Any:
        with anyio.fail_after(120):
            async with streamable_http_client(f"{base}/mcp") as streams:
                async with ClientSession(streams[0], streams[1]) as s:
                    await s.initialize()
                    if tool is None:
                        return (await s.list_tools()).tools
                    return await s.call_tool(tool, args or {})

    return anyio.run(run)


def _ok(result: CallToolResult) -> dict[str, Any]:
    text = "\n".join(getattr(c, "text", "") for c in result.content)
    assert not result.is_error, f"tool error: {text}"
    return result.structured_content


def test_inspector_starts_answers_healthz_and_its_eks_tools_work(docker_client, release_images, moto,
                                                                   kubeconfig_dir, docker_run_id):
    with _inspector(docker_client, release_images["eks-inspector"].ref, moto, kubeconfig_dir, docker_run_id) as base:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            assert resp.status == 200
        names = {t.name for t in _mcp(base)}
        assert {"get", "eks_describe_cluster", "eks_nodegroups"} <= names, sorted(names)
        cluster = _ok(_mcp(base, "eks_describe_cluster"))
        assert cluster["name"] == CLUSTER and cluster["status"] == "ACTIVE"
        groups = _ok(_mcp(base, "eks_nodegroups"))["nodegroups"]
        assert [g["nodegroupName"] for g in groups] == [NODEGROUP]
        one = _ok(_mcp(base, "eks_nodegroups", {"nodegroup": NODEGROUP}))
        assert one["instanceTypes"] == ["m7g.large"]


def test_eks_auth_mode_mints_a_token_and_resolves_the_cluster_in_the_image(docker_client, release_images, moto,
                                                                          kubeconfig_dir, docker_run_id):
    """INSPECTOR_AUTH=eks: DescribeCluster (eks client) and a presigned GetCallerIdentity (sts client)."""
    image = release_images["eks-inspector"].ref
    env = {"INSPECTOR_AUTH": "eks", "INSPECTOR_EKS_CLUSTER": CLUSTER, "AWS_ENDPOINT_URL": moto}
    kw = _container_kwargs(image, env, kubeconfig_dir, docker_run_id)
    out = docker_client.containers.run(command=["--check-config"], remove=True, stderr=True, **kw).decode()
    assert f"EKS cluster {CLUSTER}" in out, out
    code = ("from eks_inspector import eks_auth; import urllib.parse as p; "
            f"t = eks_auth.mint_token({CLUSTER!r}, {REGION!r}); u = p.urlsplit(eks_auth.decode_token(t.token)); "
            "q = p.parse_qs(u.query); print(u.netloc, q['Action'][0], q['X-Amz-SignedHeaders'][0])")
    # Without AWS_ENDPOINT_URL: the sts endpoint comes from the kept endpoint rules alone.
    minted = docker_client.containers.run(entrypoint=["/opt/venv/bin/python"], command=["-c", code], remove=True,
                                          stderr=True, **(kw | {"environment": {**AWS_TEST_ENV, "AWS_REGION": REGION},
                                                                "network_mode": "none"})).decode()
    assert minted.split() == [f"sts.{REGION}.amazonaws.com", "GetCallerIdentity", "host;x-k8s-aws-id"], minted
