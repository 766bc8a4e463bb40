"""Registration against moto in server mode: the AWS CLI and our own `register` command."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from mcp_tailnet_ecs import templates
from mcp_tailnet_ecs.render import render

from ecs_support import REGION, render_options


def aws(env: dict[str, str], endpoint: str, *args: str) -> Any:
    """Run the AWS CLI (the venv's awscli) and parse its JSON answer."""
    proc = subprocess.run([sys.executable, "-m", "awscli", *args, "--endpoint-url", endpoint, "--output", "json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"aws {' '.join(args)} failed: {proc.stderr}"
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_tailnet_ecs", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", templates.TASK_DEFINITIONS)
def test_aws_cli_registers_and_round_trips(moto_endpoint: str, aws_env: dict[str, str],
                                           bundle: templates.Bundle, tmp_path: Path, name: str) -> None:
    td = dict(bundle[name], family=f"{bundle[name]['family']}-{uuid.uuid4().hex[:8]}")
    path = tmp_path / "td.json"
    path.write_text(json.dumps(td))
    registered = aws(aws_env, moto_endpoint, "ecs", "register-task-definition", "--cli-input-json", f"file://{path}")
    arn = registered["taskDefinition"]["taskDefinitionArn"]
    assert arn.endswith(f":task-definition/{td['family']}:1")

    described = aws(aws_env, moto_endpoint, "ecs", "describe-task-definition", "--task-definition", td["family"])
    got = described["taskDefinition"]
    assert got["taskDefinitionArn"] == arn
    for key in ("family", "networkMode", "requiresCompatibilities", "cpu", "memory",
                "executionRoleArn", "volumes", "runtimePlatform"):
        assert got[key] == td[key], key
    assert got.get("taskRoleArn") == td.get("taskRoleArn")
    by_name = {c["name"]: c for c in got["containerDefinitions"]}
    for container in td["containerDefinitions"]:
        back = by_name[container["name"]]
        for key, value in container.items():
            assert back[key] == value, f"{container['name']}.{key} did not round-trip"


@pytest.fixture
def vpc(moto_endpoint: str, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A VPC in moto with a private subnet (NAT-less route table) and a public one, and an empty SG."""
    for k, v in aws_env.items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_endpoint)
    vpc_id = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    private = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    public = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.77.2.0/24")["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    rt_private = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=rt_private, SubnetId=private)
    rt_public = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=rt_public, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    ec2.associate_route_table(RouteTableId=rt_public, SubnetId=public)
    sg = ec2.create_security_group(GroupName=f"mcp-{uuid.uuid4().hex[:8]}", Description="tailnet only", VpcId=vpc_id)["GroupId"]
    cluster = f"mcp-{uuid.uuid4().hex[:8]}"
    boto3.client("ecs", region_name=REGION, endpoint_url=moto_endpoint).create_cluster(clusterName=cluster)
    return {"ec2": ec2, "private": private, "public": public, "sg": sg, "cluster": cluster}


def _render_for(vpc: dict[str, Any], tmp_path: Path, subnet: str) -> Path:
    bundle = render(render_options(subnets=(subnet,), security_group=vpc["sg"], ecs_cluster=vpc["cluster"]))
    out = tmp_path / "rendered"
    templates.write_bundle(bundle, out)
    return out


def test_register_command_creates_a_private_service(moto_endpoint: str, aws_env: dict[str, str],
                                                    vpc: dict[str, Any], tmp_path: Path) -> None:
    out = _render_for(vpc, tmp_path, vpc["private"])
    proc = run_cli(aws_env, "register", str(out), "--region", REGION, "--endpoint-url", moto_endpoint, "--create-service")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # the inspector, the stock server and the hub task; the service runs the inspector's
    families = sorted(arn.rsplit("/", 1)[1].split(":")[0] for arn in result["taskDefinitionArns"])
    assert families == ["mcp-tailnet-eks-inspector", "mcp-tailnet-hub", "mcp-tailnet-stock-server"], families
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=moto_endpoint)
    (service,) = ecs.describe_services(cluster=vpc["cluster"], services=[result["serviceArn"]])["services"]
    net = service["networkConfiguration"]["awsvpcConfiguration"]
    assert net["assignPublicIp"] == "DISABLED"
    assert net["subnets"] == [vpc["private"]] and net["securityGroups"] == [vpc["sg"]]
    assert service["launchType"] == "FARGATE" and service.get("loadBalancers", []) == []


def test_register_refuses_a_security_group_with_inbound_rules(moto_endpoint: str, aws_env: dict[str, str],
                                                              vpc: dict[str, Any], tmp_path: Path) -> None:
    vpc["ec2"].authorize_security_group_ingress(GroupId=vpc["sg"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    out = _render_for(vpc, tmp_path, vpc["private"])
    proc = run_cli(aws_env, "register", str(out), "--region", REGION, "--endpoint-url", moto_endpoint, "--create-service")
    assert proc.returncode == 1
    assert "[sg-no-inbound]" in proc.stderr and vpc["sg"] in proc.stderr
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=moto_endpoint)
    assert ecs.list_services(cluster=vpc["cluster"])["serviceArns"] == []


def test_register_refuses_a_public_subnet(moto_endpoint: str, aws_env: dict[str, str],
                                          vpc: dict[str, Any], tmp_path: Path) -> None:
    out = _render_for(vpc, tmp_path, vpc["public"])
    proc = run_cli(aws_env, "register", str(out), "--region", REGION, "--endpoint-url", moto_endpoint, "--create-service")
    assert proc.returncode == 1
    assert "[private-subnet]" in proc.stderr and vpc["public"] in proc.stderr


def test_register_refuses_invalid_documents_before_calling_aws(moto_endpoint: str, aws_env: dict[str, str],
                                                               rendered_dir: Path) -> None:
    path = rendered_dir / templates.TASK_DEFINITION
    td = json.loads(path.read_text())
    td["containerDefinitions"][1]["environment"].append({"name": "TS_AUTHKEY", "value": "file:/k"})
    path.write_text(json.dumps(td))
    family = td["family"]
    before = boto3.client("ecs", region_name=REGION, endpoint_url=moto_endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing"
                          ).list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    proc = run_cli(aws_env, "register", str(rendered_dir), "--region", REGION, "--endpoint-url", moto_endpoint)
    assert proc.returncode == 1 and "[auth-key-in-secrets]" in proc.stderr
    after = boto3.client("ecs", region_name=REGION, endpoint_url=moto_endpoint,
                         aws_access_key_id="testing", aws_secret_access_key="testing"
                         ).list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert after == before
