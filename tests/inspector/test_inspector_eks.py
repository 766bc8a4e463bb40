"""EKS tools and EKS token minting against moto in server mode (a real HTTP AWS endpoint)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from eks_inspector import eks_auth
from mcp_tailnet_lab.moto_server import running_moto

from inspector_support import TRANSPORTS, base_env, err, ok, placeholder_kubeconfig, running_inspector

REGION = "eu-west-1"
CLUSTER = "lab-eks"
NODEGROUP = "workers"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto_server on a free loopback port, with an EKS cluster and a node group in it."""
    env = base_env(None)
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION})
    env.pop("INSPECTOR_EKS_TOOLS", None)
    with running_moto(env, tmp_path_factory.mktemp("moto") / "moto.log") as url:
        env["AWS_ENDPOINT_URL"] = url
        eks = boto3.client("eks", region_name=REGION, endpoint_url=url, aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        eks.create_cluster(name=CLUSTER, version="1.35", roleArn="arn:aws:iam::123456789012:role/eks",
                           resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"], "endpointPublicAccess": False,
                                               "endpointPrivateAccess": True})
        eks.create_nodegroup(clusterName=CLUSTER, nodegroupName=NODEGROUP, nodeRole="arn:aws:iam::123456789012:role/n",
                             subnets=["subnet-1"], instanceTypes=["m7g.large"],
                             scalingConfig={"minSize": 1, "maxSize": 3, "desiredSize": 2})
        yield env


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A syntactically valid kubeconfig: the EKS tools talk to AWS only, never to this cluster."""
    return placeholder_kubeconfig(tmp_path_factory.mktemp("kc") / "config")


@pytest.fixture(scope="module")
def server(moto: dict[str, str], kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory):
    env = {**moto, "INSPECTOR_KUBECONFIG": str(kubeconfig), "INSPECTOR_AUTH": "kubeconfig",
           "INSPECTOR_EKS_CLUSTER": CLUSTER}
    with running_inspector(env, tmp_path_factory.mktemp("inspector")) as s:
        yield s


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_eks_tools_listed_and_read_only(server, transport: str) -> None:
    tools = {t.name: t for t in server.tools(transport)}
    for name in ("eks_describe_cluster", "eks_nodegroups", "eks_addons", "eks_access_entries", "eks_insights"):
        assert tools[name].annotations.read_only_hint is True


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_describe_cluster(server, transport: str) -> None:
    result = server.call("eks_describe_cluster", {}, transport)
    out = ok(result)
    assert CLUSTER in out and "1.35" in out
    sc = result.structured_content
    assert sc["name"] == CLUSTER and sc["status"] == "ACTIVE"
    assert sc["endpointAccess"]["public"] is False and sc["endpointAccess"]["private"] is True
    assert sc.get("certificateAuthority") in (None, "<present>")  # never the CA blob itself


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_nodegroups_list_and_describe(server, transport: str) -> None:
    listed = server.call("eks_nodegroups", {}, transport)
    ok(listed)
    groups = listed.structured_content["nodegroups"]
    assert [g["nodegroupName"] for g in groups] == [NODEGROUP]
    assert groups[0]["scalingConfig"]["desiredSize"] == 2
    one = server.call("eks_nodegroups", {"nodegroup": NODEGROUP}, transport)
    assert "m7g.large" in ok(one)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unknown_cluster_is_a_tool_error(server, transport: str) -> None:
    """`cluster` is a configured cluster's name (here only `default`), never an EKS name a caller makes up."""
    message = err(server.call("eks_describe_cluster", {"cluster": "nope"}, transport))
    assert "unknown cluster 'nope'" in message and "serves default" in message and "Traceback" not in message


@pytest.mark.parametrize("tool", ["eks_addons", "eks_access_entries", "eks_insights"])
def test_operations_moto_lacks_fail_cleanly(server, tool: str) -> None:
    """moto 5.2.5 serves clusters and node groups only: these must fail as one line, and the server keeps serving."""
    result = server.call(tool, {})
    if result.is_error:
        assert "eks:" in err(result) and "\n" not in err(result)
    assert not server.call("eks_describe_cluster", {}).is_error


def test_no_credentials_no_eks_tools(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    env = {**base_env(kubeconfig), "AWS_REGION": REGION}
    env.pop("INSPECTOR_EKS_TOOLS")
    with running_inspector(env, tmp_path_factory.mktemp("nocreds")) as s:
        names = {t.name for t in s.tools()}
    assert "get" in names and not any(n.startswith("eks_") for n in names)


def _aws_cli_token(env: dict[str, str]) -> str:
    script = Path(sys.executable).parent / "aws"
    proc = subprocess.run([str(script), "eks", "get-token", "--cluster-name", CLUSTER, "--region", REGION],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["status"]["token"]


def test_token_matches_aws_eks_get_token(moto: dict[str, str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in moto.items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    ours = eks_auth.mint_token(CLUSTER, REGION)
    theirs = _aws_cli_token(moto)
    assert ours.token.startswith("k8s-aws-v1.") and "=" not in ours.token
    url_ours, url_theirs = (urllib.parse.urlsplit(eks_auth.decode_token(t)) for t in (ours.token, theirs))
    q_ours, q_theirs = (urllib.parse.parse_qs(u.query) for u in (url_ours, url_theirs))
    assert set(q_ours) == set(q_theirs)
    for key in ("Action", "Version", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Algorithm"):
        assert q_ours[key] == q_theirs[key], key
    assert q_ours["X-Amz-SignedHeaders"] == ["host;x-k8s-aws-id"]
    assert (url_ours.scheme, url_ours.netloc, url_ours.path) == (url_theirs.scheme, url_theirs.netloc, url_theirs.path)
    assert q_ours["X-Amz-Credential"][0].endswith(f"/{REGION}/sts/aws4_request")
    assert q_ours["X-Amz-Credential"][0].startswith("testing/")  # access key id only; the secret never appears


def test_eks_auth_mode_resolves_the_cluster_endpoint(moto: dict[str, str], kubeconfig: Path) -> None:
    env = {**moto, "INSPECTOR_AUTH": "eks", "INSPECTOR_EKS_CLUSTER": CLUSTER}
    proc = subprocess.run([sys.executable, "-m", "eks_inspector", "--check-config"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"EKS cluster {CLUSTER}" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "eks_inspector", "--check-config"],
                         env={**env, "INSPECTOR_EKS_CLUSTER": "missing"}, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "INSPECTOR_EKS_CLUSTER" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
