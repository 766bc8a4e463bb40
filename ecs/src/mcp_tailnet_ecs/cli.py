"""`mcp-tailnet-ecs render|validate|register`: the three steps a deployment takes.

render   templates -> a directory of documents for one account/region/version
validate any directory (or the templates) -> every problem, exit 1 if any
register a rendered directory -> ECS (boto3; --endpoint-url for moto or a proxy)
cloudformation  the templates -> the CloudFormation stack (ecs/cloudformation/mcp-tailnet.yaml)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import botocore.exceptions

from mcp_tailnet_ecs import cloudformation, templates
from mcp_tailnet_ecs.register import NetworkError, register
from mcp_tailnet_ecs.render import (
    ARCHITECTURES,
    DEFAULT_LOG_GROUP,
    ClusterEntry,
    DEFAULT_SECRET_NAME,
    RenderError,
    RenderOptions,
    render,
)
from mcp_tailnet_ecs.rules import Finding
from mcp_tailnet_ecs.validate import validate


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {name or text!r}")
    return name, value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcp-tailnet-ecs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="render the templates for one account, region and version")
    r.add_argument("--account-id", required=True)
    r.add_argument("--region", required=True)
    r.add_argument("--version", help="image tag of our images (default: images/release.env)")
    r.add_argument("--owner", help="ghcr.io/OWNER namespace of the images (default: images/release.env's registry)")
    r.add_argument("--registry", help="whole image registry prefix instead (e.g. an ECR mirror)")
    r.add_argument("--eks-cluster", default="EKS_CLUSTER_NAME", help="EKS cluster the inspector reads")
    r.add_argument("--ecs-cluster", default="mcp-tailnet")
    r.add_argument("--subnet", action="append", default=[], dest="subnets", help="private subnet id (repeat)")
    r.add_argument("--security-group", help="security group with no inbound rules")
    r.add_argument("--hostname", help="tailnet hostname of the inspector task (default eks-inspector)")
    r.add_argument("--secret-name", default=DEFAULT_SECRET_NAME)
    r.add_argument("--secret-arn", help="full ARN of the auth key secret (preferred over --secret-name)")
    r.add_argument("--kms-key-arn", help="customer-managed KMS key of that secret, if any")
    r.add_argument("--login-server", help="control server URL (e.g. your headscale)")
    r.add_argument("--state", choices=("ephemeral", "efs"), default="ephemeral")
    r.add_argument("--efs-file-system-id")
    r.add_argument("--efs-access-point-id")
    r.add_argument("--server-image", help="also render the stock-server variant with this image")
    r.add_argument("--server-hostname", help="tailnet hostname of the stock-server task (default mcp-server)")
    r.add_argument("--architecture", default="X86_64", metavar="|".join(ARCHITECTURES),
                   help="Fargate CPU architecture (runtimePlatform.cpuArchitecture); ARM64 runs on Graviton")
    r.add_argument("--log-group", default=DEFAULT_LOG_GROUP, help="CloudWatch log group of every container")
    r.add_argument("--impersonate", default="off", choices=("off", "caller"),
                   help="INSPECTOR_IMPERSONATE: caller = every Kubernetes request made as the tailnet caller")
    r.add_argument("--tool-grants", action="store_const", const="true", default="false",
                   help="SIDECAR_TAILNET_GRANTS=true: tool access from grants in the tailnet policy")
    r.add_argument("--cluster", action="append", default=[], nargs="+", dest="clusters",
                   metavar="NAME EKS_CLUSTER REGION [ROLE_ARN]",
                   help="one more EKS cluster for the inspector (INSPECTOR_CLUSTERS; repeat): callers pick it "
                        "as cluster=NAME; ROLE_ARN is assumed for it (the task role may assume only these)")
    r.add_argument("--env", action="append", default=[], type=_env_pair, help="extra sidecar NAME=VALUE")
    r.add_argument("--out", required=True, type=Path, help="directory to write into")

    v = sub.add_parser("validate", help="check documents offline (model, Fargate rules, IAM)")
    v.add_argument("directory", nargs="?", type=Path, help="rendered directory (default: the templates)")

    c = sub.add_parser("cloudformation", help="write the CloudFormation stack generated from the templates")
    c.add_argument("--out", type=Path, help="file to write (default: standard output)")

    g = sub.add_parser("register", help="validate, then register with ECS")
    g.add_argument("directory", type=Path)
    g.add_argument("--region", required=True)
    g.add_argument("--endpoint-url", help="ECS/EC2 endpoint override (tests: moto)")
    g.add_argument("--create-service", action="store_true",
                   help="also create the service, after checking the security group and subnets live")
    return p


def _report(findings: list[Finding]) -> int:
    for f in findings:
        print(f, file=sys.stderr)
    return 1 if findings else 0


def _load(directory: Path) -> templates.Bundle:
    if not directory.is_dir():
        raise RenderError(f"directory: {directory} does not exist")
    return templates.load_bundle(directory)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "render":
            opts = RenderOptions(
                account_id=args.account_id, region=args.region, owner=args.owner,
                **({} if args.version is None else {"version": args.version}),
                registry=args.registry, eks_cluster=args.eks_cluster, ecs_cluster=args.ecs_cluster,
                subnets=tuple(args.subnets), security_group=args.security_group, hostname=args.hostname,
                secret_name=args.secret_name, secret_arn=args.secret_arn, kms_key_arn=args.kms_key_arn,
                login_server=args.login_server, state=args.state, efs_file_system_id=args.efs_file_system_id,
                efs_access_point_id=args.efs_access_point_id, server_image=args.server_image,
                server_hostname=args.server_hostname, extra_env=tuple(args.env),
                architecture=args.architecture, log_group=args.log_group,
                impersonate=args.impersonate, tool_grants=args.tool_grants,
                clusters=tuple(ClusterEntry.parse(words) for words in args.clusters),
            )
            bundle = render(opts)
            if _report(validate(bundle, rendered=True)):
                print("error: rendered documents are invalid; nothing written", file=sys.stderr)
                return 1
            for path in templates.write_bundle(bundle, args.out):
                print(path)
            return 0
        if args.command == "cloudformation":
            text = cloudformation.dump()
            if args.out is None:
                sys.stdout.write(text)
            else:
                args.out.write_text(text)
                print(args.out)
            return 0
        if args.command == "validate":
            if args.directory is None:
                return _report(validate(templates.load_bundle(), rendered=False))
            return _report(validate(_load(args.directory), rendered=True))
        bundle = _load(args.directory)
        if _report(validate(bundle, rendered=True)):
            print("error: not registering invalid documents", file=sys.stderr)
            return 1
        result = register(bundle, region=args.region, endpoint_url=args.endpoint_url,
                          create_service=args.create_service)
        print(json.dumps({"taskDefinitionArns": result.task_definition_arns, "serviceArn": result.service_arn}))
        return 0
    except (RenderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NetworkError as exc:
        _report(exc.findings)
        print("error: the network would expose the task; service not created", file=sys.stderr)
        return 1
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        print(f"error: AWS: {exc}", file=sys.stderr)
        return 1
