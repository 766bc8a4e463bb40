"""`render --cluster NAME EKS_CLUSTER REGION [ROLE_ARN]`: several EKS clusters for the inspector task.

Fargate gives a container no file from its task definition, so render puts the inspector's
INSPECTOR_CLUSTERS document in its environment and an entryPoint that writes it to /tmp (a task
volume) and execs the image's program. Only EKS entries: the task has no kubeconfig.

- The rendered document is what the inspector's own parser reads back; the hub and stock-server
  tasks are unchanged; the CloudFormation stack (no --cluster) is unchanged.
- Least privilege: the task role may assume exactly the configured roles (never a pattern, never
  a role no cluster names: `validate` refuses a hand-widened policy) and reads the same-account
  clusters it reaches with its own credentials; without --cluster no sts:AssumeRole at all.
- Bad values are one line naming --cluster, nothing written; the shapes agree with the
  inspector's parser (a differential over ARNs, names and regions).
- The real inspector image runs the rendered container (its entryPoint, environment,
  read-only root) against moto: the file is written, each cluster is built (the role assumed
  through STS, DescribeCluster in its region) and probed, one line each.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from ecs_support import ACCOUNT, REGION, render_options
from eks_inspector.clusters_config import parse
from mcp_tailnet_lab.inspector_clusters import inspector_accepts
from mcp_tailnet_ecs import cloudformation, templates
from mcp_tailnet_ecs.cli import main
from mcp_tailnet_ecs.render import CLUSTERS_FILE, CLUSTERS_JSON_VARIABLE, ClusterEntry, RenderError, render
from mcp_tailnet_ecs.validate import validate

ROLE = "arn:aws:iam::444455556666:role/eks-inspector-read"
CLUSTERS = (ClusterEntry("staging", "staging", "eu-central-1"), ClusterEntry("prod-us", "prod", "us-east-1", ROLE))
BASE = ["render", "--account-id", ACCOUNT, "--region", REGION, "--version", "1.2.3", "--owner", "acme",
        "--eks-cluster", "prod", "--subnet", "subnet-0123456789abcdef0", "--security-group", "sg-0123456789abcdef0"]


def inspector(td: dict[str, Any]) -> dict[str, Any]:
    (c,) = [c for c in td["containerDefinitions"] if c["name"] == "eks-inspector"]
    return c


def env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("environment", [])}


def task_statements(bundle: templates.Bundle) -> dict[str, dict[str, Any]]:
    return {st["Sid"]: st for st in bundle[templates.TASK_POLICY]["Statement"]}


def test_the_inspector_task_writes_the_file_its_parser_reads(tmp_path: Path) -> None:
    plain = render(render_options())
    bundle = render(render_options(clusters=CLUSTERS))
    assert validate(bundle, rendered=True) == []
    c = inspector(bundle[templates.TASK_DEFINITION])
    assert env(c)["INSPECTOR_CLUSTERS"] == CLUSTERS_FILE and c["entryPoint"][:3] == ["python3", "-I", "-c"]
    path = tmp_path / "clusters.json"
    path.write_text(env(c)[CLUSTERS_JSON_VARIABLE])
    assert [(s.name, s.eks_cluster, s.region, s.role_arn) for s in parse(path)] == [
        ("staging", "staging", "eu-central-1", None), ("prod-us", "prod", "us-east-1", ROLE)]
    # only the inspector's own task: the others, and everything but the inspector container, as before
    for name in (templates.HUB_TASK_DEFINITION, templates.STOCK_SERVER_TASK_DEFINITION, templates.SERVICE,
                 templates.EXECUTION_POLICY, templates.TRUST_POLICY):
        assert bundle[name] == plain[name], name
    others = [x for x in bundle[templates.TASK_DEFINITION]["containerDefinitions"] if x["name"] != "eks-inspector"]
    assert others == [x for x in plain[templates.TASK_DEFINITION]["containerDefinitions"] if x["name"] != "eks-inspector"]
    assert cloudformation.dump() == (Path(templates.__file__).parents[2] / "cloudformation" / "mcp-tailnet.yaml").read_text()


def test_the_task_role_assumes_exactly_the_configured_roles() -> None:
    assert not any("sts:AssumeRole" in json.dumps(st) for st in render(render_options())[templates.TASK_POLICY]["Statement"])
    other = ClusterEntry("dr", "dr", "us-west-2", "arn:aws:iam::777788889999:role/path/r")
    statements = task_statements(render(render_options(clusters=(*CLUSTERS, other, ClusterEntry("prod-b", "b", "us-east-1", ROLE)))))
    assert statements["InspectorAssumesItsClustersRoles"] == {
        "Sid": "InspectorAssumesItsClustersRoles", "Effect": "Allow", "Action": "sts:AssumeRole",
        "Resource": sorted([ROLE, "arn:aws:iam::777788889999:role/path/r"])}
    assert statements["InspectorReadsItsOtherClusters"]["Resource"] == [f"arn:aws:eks:eu-central-1:{ACCOUNT}:cluster/staging"]
    assert statements["InspectorReadsItsOtherClusters"]["Action"] == statements["InspectorReadsItsCluster"]["Action"]
    assert all("/staging/" in r for r in statements["InspectorReadsThoseClustersParts"]["Resource"])


@pytest.mark.parametrize("resource, message", [
    ("arn:aws:iam::444455556666:role/*", "no pattern"),
    ("arn:aws:iam::*:role/eks-inspector-read", "no pattern"),
    ("arn:aws:iam::444455556666:role/admin", "is no role of the inspector's clusters"),
], ids=["role-wildcard", "account-wildcard", "unconfigured-role"])
def test_validate_refuses_a_widened_assume_role(resource: str, message: str) -> None:
    bundle = render(render_options(clusters=CLUSTERS))
    st = task_statements(bundle)["InspectorAssumesItsClustersRoles"]
    st["Resource"] = [*st["Resource"], resource]
    found = [f for f in validate(bundle, rendered=True) if f.rule == "iam-assume-role"]
    assert len(found) == 1 and message in found[0].message, found


def test_validate_refuses_an_assume_role_without_clusters() -> None:
    bundle = render(render_options())
    bundle[templates.TASK_POLICY]["Statement"].append(
        {"Sid": "X", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROLE})
    assert [f.rule for f in validate(bundle, rendered=True)] == ["iam-assume-role"]


def _edited(change: Any) -> list[str]:
    bundle = copy.deepcopy(render(render_options(clusters=CLUSTERS)))
    change(inspector(bundle[templates.TASK_DEFINITION]))
    return [f.message for f in validate(bundle, rendered=True) if f.rule == "inspector-clusters"]


def _set(c: dict[str, Any], name: str, value: str) -> None:
    next(e for e in c["environment"] if e["name"] == name)["value"] = value


@pytest.mark.parametrize("change, message", [
    (lambda c: _set(c, CLUSTERS_JSON_VARIABLE, json.dumps({"clusters": [{"name": "lab", "kubeconfig": "/x"}]})),
     "EKS entries only on Fargate"),
    (lambda c: _set(c, CLUSTERS_JSON_VARIABLE, "{not json"), 'a JSON object {"clusters": [...]}'),
    (lambda c: c.pop("entryPoint"), "written at start"),
    (lambda c: _set(c, "INSPECTOR_CLUSTERS", "/etc/passwd"), "written at start"),
], ids=["kubeconfig-entry", "not-json", "no-entrypoint", "other-path"])
def test_validate_refuses_a_hand_edited_clusters_setup(change: Any, message: str) -> None:
    found = _edited(change)
    assert len(found) == 1 and message in found[0], found


@pytest.mark.parametrize("args, message", [
    (["--cluster", "prod", "prod"], "--cluster: expected NAME EKS_CLUSTER REGION [ROLE_ARN], got 2"),
    (["--cluster", "default", "x", "us-east-1"], "--cluster 'default': 'default' is the task's own cluster"),
    (["--cluster", "a", "x", "us-east-1", "--cluster", "a", "y", "us-east-1"], "--cluster 'a': the name is used twice"),
    (["--cluster", "a", "x", "us-east-1", "arn:aws:iam::123:role/x"], "is not an IAM role ARN"),
    (["--cluster", "a", "x", "us-east-1", "arn:aws:iam::444455556666:role/*"], "is not an IAM role ARN"),
    (["--cluster", "a", "x", "us-east-1", "arn:aws:iam::" + "\u0664" * 12 + ":role/x"], "is not an IAM role ARN"),
    (["--cluster", "a", "x", "Europe"], "is not an AWS region name"),
    (["--cluster", "A", "x", "us-east-1"], "--cluster: 'A' is not a lower-case DNS label"),
    (["--env", "INSPECTOR_CLUSTERS_JSON={}"], "--env: INSPECTOR_CLUSTERS_JSON is set by --cluster"),
], ids=["two-values", "default", "repeated", "short-account", "role-wildcard", "unicode-digits", "region", "upper",
        "env"])
def test_bad_cluster_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           args: list[str], message: str) -> None:
    assert main([*BASE, *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


ARNS = [ROLE, "arn:aws-us-gov:iam::444455556666:role/a/b", "arn:aws:iam::444455556666:role/a+b=c,d.e@f_g-h",
        "arn:aws:iam::44445555666:role/x", "arn:aws:iam::444455556666:user/x", "arn:aws:iam::444455556666:role/",
        "arn:aws:iam::444455556666:role/a b", ROLE + "\n", " " + ROLE, "arn:aws:iam::444455556666:role/" + "r" * 513]
NAMES = ["prod", "p-1", "a" * 63, "a" * 64, "-p", "p_1", "Prod", "default"]
REGIONS = ["us-east-1", "us-gov-west-1", "US-east-1", "us-east", "us-east-1 "]


@pytest.mark.parametrize("field, values", [("role_arn", ARNS), ("name", NAMES), ("region", REGIONS)])
def test_render_accepts_exactly_what_theinspector_accepts(field: str, values: list[str], tmp_path: Path) -> None:
    for value in values:
        entry = {"name": "prod", "eks_cluster": "prod", "region": "us-east-1", "role_arn": ROLE, field: value}
        try:
            render(render_options(clusters=(ClusterEntry(**entry),)))
            ours = True
        except RenderError:
            ours = False
        assert ours == inspector_accepts(entry, tmp_path), (field, value, ours)


# -- the real image, as Fargate would start the rendered container --------------------------


def test_the_image_writes_the_file_and_checks_each_cluster(moto_endpoint: str, aws_env: dict[str, str],
                                                           docker_client: Any, docker_run_id: str) -> None:
    import boto3

    from mcp_tailnet_lab.images import build_repo_image
    from mcp_tailnet_lab.pods import LABEL_RUN

    # moto keeps accounts apart: prod-us's cluster exists only in the account of its role, so
    # only credentials of that role (AssumeRole by the inspector) find it
    creds = boto3.client("sts", region_name="us-east-1", endpoint_url=moto_endpoint, aws_access_key_id="testing",
                         aws_secret_access_key="testing").assume_role(RoleArn=ROLE, RoleSessionName="setup")["Credentials"]
    other = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
             "aws_session_token": creds["SessionToken"]}
    mine = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    for region, name, keys in ((REGION, "prod", mine), ("eu-central-1", "staging", mine), ("us-east-1", "prod", other)):
        eks = boto3.client("eks", region_name=region, endpoint_url=moto_endpoint, **keys)
        if name not in eks.list_clusters()["clusters"]:
            eks.create_cluster(name=name, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={})
    mine_us = boto3.client("eks", region_name="us-east-1", endpoint_url=moto_endpoint, **mine)
    assert "prod" not in mine_us.list_clusters()["clusters"]
    c = inspector(render(render_options(clusters=CLUSTERS))[templates.TASK_DEFINITION])
    image = build_repo_image("eks-inspector", docker_client)
    environment = {**env(c), "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                   "AWS_SECRET_ACCESS_KEY": "testing", "INSPECTOR_EKS_TOOLS": "off"}
    container = docker_client.containers.run(
        image, entrypoint=c["entryPoint"], command=["--check-config"], environment=environment, detach=True,
        read_only=c["readonlyRootFilesystem"], tmpfs={"/tmp": "rw,nosuid,nodev,size=16m"}, cap_drop=["ALL"],
        network_mode="host", labels={LABEL_RUN: docker_run_id})
    try:
        code = container.wait(timeout=120)["StatusCode"]
        out = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    lines = {line.split(":", 2)[1].strip(): line for line in out.splitlines() if line.startswith("eks-inspector: cluster ")}
    assert code == 1 and set(lines) == {"cluster default", "cluster staging", "cluster prod-us"}, out
    # each was built (the role assumed, DescribeCluster answered in its region): only moto's
    # made-up endpoint does not answer /version
    for line in lines.values():
        assert "NOT reachable: get version: the API server" in line, out
    assert CLUSTERS_JSON_VARIABLE not in out and "testing" not in out
