"""EKS clusters in two accounts and regions behind one inspector, through moto in server mode.

Each account holds an EKS cluster with the same name (`prod`); so does the ambient account
(a decoy): a server that skipped the configured role, or used the wrong region, would find the
decoy and answer with the wrong ARN and endpoint instead of failing. moto keys its state by the
account of the credentials, as AWS does, and records every AssumeRole, so the tests can check
which roles the server assumed. Nothing here talks to an EKS endpoint (they are fictitious).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from eks_inspector import clusters_config, eks_auth
from eks_inspector.clusters import ROLE_SESSION_NAME, Registry
from eks_inspector.config import load
from eks_inspector.context import Inspector as Ins
from eks_inspector.discovery import Discovery
from eks_inspector.errors import InspectorError
from eks_inspector.kube import connect
from eks_inspector.render import Renderer
from mcp_tailnet_lab.moto_server import running_moto

from inspector_support import TRANSPORTS, base_env, err, ok, placeholder_kubeconfig, running_inspector

HOME_ACCOUNT = "123456789012"  # moto's account for the ambient "testing" credentials
ROLE_A, REGION_A = "arn:aws:iam::111111111111:role/inspector-read", "eu-west-1"
ROLE_B, REGION_B = "arn:aws:iam::222222222222:role/inspector-read", "us-east-1"
EVIL = "arn:aws:iam::999999999999:role/admin"
ENTRIES = [
    {"name": "eks-a", "eks_cluster": "prod", "region": REGION_A, "role_arn": ROLE_A},
    {"name": "eks-b", "eks_cluster": "prod", "region": REGION_B, "role_arn": ROLE_B},
    {"name": "eks-home", "eks_cluster": "prod", "region": REGION_B},
    {"name": "eks-missing", "eks_cluster": "gone", "region": REGION_A, "role_arn": ROLE_A},
]


def _eks(url: str, region: str, role: str | None) -> Any:
    creds: dict[str, str] = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    if role:
        c = boto3.client("sts", region_name=region, endpoint_url=url, **creds).assume_role(
            RoleArn=role, RoleSessionName="test-setup")["Credentials"]
        creds = {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
                 "aws_session_token": c["SessionToken"]}
    return boto3.client("eks", region_name=region, endpoint_url=url, **creds)


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """moto with `prod` in account A (eu-west-1), account B (us-east-1) and the home account (both)."""
    tmp = tmp_path_factory.mktemp("clusters-eks")
    env = base_env(None)
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION_A})
    env.pop("INSPECTOR_EKS_TOOLS", None)
    with running_moto(env, tmp / "moto.log") as url:
        env["AWS_ENDPOINT_URL"] = url
        clusters: dict[tuple[str, str], dict[str, Any]] = {}
        for account, region, role in (("111111111111", REGION_A, ROLE_A), ("222222222222", REGION_B, ROLE_B),
                                      (HOME_ACCOUNT, REGION_A, None), (HOME_ACCOUNT, REGION_B, None)):
            eks = _eks(url, region, role)
            eks.create_cluster(name="prod", version="1.35", roleArn=f"arn:aws:iam::{account}:role/eks",
                               resourcesVpcConfig={"subnetIds": ["subnet-1"]})
            clusters[(account, region)] = eks.describe_cluster(name="prod")["cluster"]
        clusters_file = tmp / "clusters.json"
        clusters_file.write_text(json.dumps({"clusters": ENTRIES}))
        yield {"url": url, "env": env, "clusters": clusters, "file": clusters_file, "tmp": tmp}


@pytest.fixture(scope="module")
def server(aws: dict[str, Any]):
    env = {**aws["env"], "INSPECTOR_KUBECONFIG": str(placeholder_kubeconfig(aws["tmp"] / "kubeconfig")),
           "INSPECTOR_AUTH": "kubeconfig", "INSPECTOR_EKS_CLUSTER": "prod", "INSPECTOR_CLUSTERS": str(aws["file"])}
    with running_inspector(env, aws["tmp"]) as s:
        yield s


def _assumed(aws: dict[str, Any], by_key: bool = False) -> Any:
    """Roles the inspector assumed (moto's record of AssumeRole, by our session name); with
    `by_key`, each access key id moto issued to it -> its role."""
    with urllib.request.urlopen(f"{aws['url']}/moto-api/data.json", timeout=10) as resp:
        records = [r for r in (json.load(resp).get("sts") or {}).get("AssumedRole") or []
                   if r.get("session_name") == ROLE_SESSION_NAME]
    if by_key:
        return {r["access_key_id"]: r["role_arn"] for r in records}
    return sorted({r["role_arn"] for r in records})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_eks_tools_answer_from_each_configured_account_and_region(server, aws: dict[str, Any],
                                                                  transport: str) -> None:
    for name, account, region in (("eks-a", "111111111111", REGION_A), ("eks-b", "222222222222", REGION_B),
                                  ("eks-home", HOME_ACCOUNT, REGION_B), (None, HOME_ACCOUNT, REGION_A)):
        result = server.call("eks_describe_cluster", {"cluster": name} if name else {}, transport)
        ok(result)
        expected = aws["clusters"][(account, region)]
        assert result.structured_content["arn"] == f"arn:aws:eks:{region}:{account}:cluster/prod", name
        assert result.structured_content["endpoint"] == expected["endpoint"], name
    listed = server.call("eks_nodegroups", {"cluster": "eks-b"}, transport)
    assert ok(listed) and listed.structured_content["cluster"] == "prod"
    assert _assumed(aws) == sorted([ROLE_A, ROLE_B])


def test_registry_connects_each_cluster_with_its_role(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """In-process: the Kubernetes client of each entry points at that account's endpoint, and its
    bearer token is signed by the configured role (replayed to STS as EKS's authenticator does)."""
    for k, v in aws["env"].items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    settings = load({"INSPECTOR_KUBECONFIG": str(placeholder_kubeconfig(tmp_path / "kc")), "INSPECTOR_AUTH": "kubeconfig",
                     "INSPECTOR_CLUSTERS": str(aws["file"]), "INSPECTOR_CALL_TIMEOUT": "20"})
    kube = connect(settings)
    registry = Registry(Ins(settings, kube, Discovery(kube, 60), Renderer(settings.output_cap)))
    for name, account, region in (("eks-a", "111111111111", REGION_A), ("eks-b", "222222222222", REGION_B),
                                  ("eks-home", HOME_ACCOUNT, REGION_B)):
        ins = registry.inspector(name)
        cfg = ins.kube.api.configuration
        assert cfg.host.rstrip("/") == aws["clusters"][(account, region)]["endpoint"].rstrip("/"), name
        presigned = eks_auth.decode_token(cfg.api_key["BearerToken"])
        assert urllib.parse.urlsplit(presigned).netloc == urllib.parse.urlsplit(aws["url"]).netloc  # moto, loopback
        # moto cannot replay a presigned GET to STS (it routes it to S3), so read who signed it:
        # the access key id of X-Amz-Credential, matched against moto's record of AssumeRole
        key_id = urllib.parse.parse_qs(urllib.parse.urlsplit(presigned).query)["X-Amz-Credential"][0].split("/")[0]
        signer = _assumed(aws, by_key=True).get(key_id, "ambient" if key_id == "testing" else key_id)
        assert signer == {"eks-a": ROLE_A, "eks-b": ROLE_B}.get(name, "ambient"), name
        assert registry.inspector(name) is ins  # built once
    with pytest.raises(InspectorError, match="unknown cluster 'arn:aws:iam::999999999999:role/admin'"):
        registry.inspector(EVIL)


def test_a_caller_cannot_make_the_server_assume_another_role(server, aws: dict[str, Any]) -> None:
    reach = {"role", "role_arn", "rolearn", "account", "account_id", "region", "context", "kubeconfig", "endpoint",
             "server", "profile", "external_id"}
    for tool in server.tools():
        props = {p.lower() for p in tool.input_schema.get("properties", {})}
        assert not props & reach, (tool.name, props & reach)
    for args in ({"cluster": EVIL}, {"cluster": "999999999999"}, {"cluster": "prod"},
                 {"cluster": f"eks-a,{EVIL}"}):
        message = err(server.call("eks_describe_cluster", args))
        assert "unknown cluster" in message and "default, eks-a, eks-b" in message
    smuggled = server.call("eks_describe_cluster", {"cluster": "eks-a", "role_arn": EVIL, "region": "ap-south-1"})
    if not smuggled.is_error:  # an argument the tool does not have is ignored, never used
        assert smuggled.structured_content["arn"] == f"arn:aws:eks:{REGION_A}:111111111111:cluster/prod"
    assert EVIL not in _assumed(aws) and set(_assumed(aws)) <= {ROLE_A, ROLE_B}


def test_an_eks_cluster_that_cannot_be_reached_fails_only_its_own_calls(server) -> None:
    for tool in ("get", "eks_describe_cluster"):
        args = {"resource": "pods"} if tool == "get" else {}
        message = err(server.call(tool, {**args, "cluster": "eks-missing"}))
        assert "eks-missing" in message and "\n" not in message, message
    assert ok(server.call("eks_describe_cluster", {"cluster": "eks-b"}))


def test_an_eks_tool_on_a_cluster_without_eks_is_refused(aws: dict[str, Any], tmp_path: Path) -> None:
    """A kubeconfig-only entry has no EKS cluster: the EKS tools say so instead of guessing one."""
    (tmp_path / "clusters.yaml").write_text(yaml.safe_dump({"clusters": [{"name": "ctx", "context": "x"}]}))
    env = {**aws["env"], "INSPECTOR_KUBECONFIG": str(placeholder_kubeconfig(tmp_path / "kc")),
           "INSPECTOR_AUTH": "kubeconfig", "INSPECTOR_CLUSTERS": str(tmp_path / "clusters.yaml")}
    with running_inspector(env, tmp_path) as s:
        assert "not an EKS cluster" in err(s.call("eks_describe_cluster", {"cluster": "ctx"}))
        assert "INSPECTOR_EKS_CLUSTER" in err(s.call("eks_describe_cluster", {}))


def test_spec_source_names_no_credentials() -> None:
    spec = clusters_config.ClusterSpec(name="x", eks_cluster="prod", region=REGION_A, role_arn=ROLE_A)
    assert spec.source() == {"eksCluster": "prod", "region": REGION_A, "roleArn": ROLE_A}
