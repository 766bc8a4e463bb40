"""Register the rendered documents with ECS through boto3, after checking the network.

What the JSON alone cannot show is checked live before the service is created:
the security group really has no inbound rule and the subnets really are private
(no default route to an internet gateway). `endpoint_url` points at moto in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

from mcp_tailnet_ecs import templates
from mcp_tailnet_ecs.rules import Finding
from mcp_tailnet_ecs.templates import Bundle


@dataclass
class Registered:
    task_definition_arns: list[str]
    service_arn: str | None = None


def _client(service: str, region: str, endpoint_url: str | None) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def network_findings(ec2: Any, subnets: list[str], security_groups: list[str]) -> list[Finding]:
    """Inbound rules on the task's groups, or subnets routed to an internet gateway."""
    found = []
    for group in ec2.describe_security_groups(GroupIds=security_groups)["SecurityGroups"]:
        if group.get("IpPermissions"):
            found.append(Finding("sg-no-inbound", group["GroupId"],
                                 f"has {len(group['IpPermissions'])} inbound rule(s); the tailnet needs none"))
    described = ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
    for subnet in described:
        tables = ec2.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [subnet["SubnetId"]]}])["RouteTables"]
        if not tables:  # no explicit association: the VPC's main route table applies
            tables = ec2.describe_route_tables(Filters=[
                {"Name": "vpc-id", "Values": [subnet["VpcId"]]},
                {"Name": "association.main", "Values": ["true"]},
            ])["RouteTables"]
        for table in tables:
            for route in table.get("Routes", []):
                if str(route.get("GatewayId", "")).startswith("igw-") and route.get("DestinationCidrBlock") == "0.0.0.0/0":
                    found.append(Finding("private-subnet", subnet["SubnetId"],
                                         f"routes 0.0.0.0/0 to {route['GatewayId']}: use a private subnet (NAT for egress)"))
    return found


def register(bundle: Bundle, *, region: str, endpoint_url: str | None = None,
             create_service: bool = False) -> Registered:
    """Register every task definition in the bundle; optionally create the service."""
    ecs = _client("ecs", region, endpoint_url)
    arns = []
    for name in templates.TASK_DEFINITIONS:
        if name in bundle:
            answer = ecs.register_task_definition(**bundle[name])
            arns.append(answer["taskDefinition"]["taskDefinitionArn"])
    result = Registered(arns)
    if create_service:
        svc = bundle[templates.SERVICE]
        vpc = svc["networkConfiguration"]["awsvpcConfiguration"]
        problems = network_findings(_client("ec2", region, endpoint_url), vpc["subnets"], vpc["securityGroups"])
        if problems:
            raise NetworkError(problems)
        result.service_arn = ecs.create_service(**svc)["service"]["serviceArn"]
    return result


class NetworkError(RuntimeError):
    """The live network would expose the task; the service was not created."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("; ".join(str(f) for f in findings))
        self.findings = findings
