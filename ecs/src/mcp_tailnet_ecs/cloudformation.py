"""The CloudFormation stack (ecs/cloudformation/mcp-tailnet.yaml), generated from the templates.

One source of truth: the stack's task definitions, service and role policies are what
`render` makes of ecs/task-definition*.json, ecs/service.json and ecs/iam/*.json, rendered
through the same code with symbolic values (`${AWS::Region}`, `${ImageVersion}`, ...) that
become `Fn::Sub`. A setting CloudFormation decides at deploy time (a login server or not,
a KMS key or not, a hostname or the template's) is rendered both ways and the two
documents are merged with `Fn::If` where they differ. The committed file is this module's
output; tests/ecs/test_ecs_cloudformation.py fails when they differ, and deploys the stack
into moto to compare its task definition with `render`'s for the same inputs.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mcp_tailnet_ecs import release, templates
from mcp_tailnet_ecs.render import ARCHITECTURES, DEFAULT_LOG_GROUP, IMPERSONATE_MODES, RenderOptions, render_unchecked
from mcp_tailnet_ecs.render import TOOL_GRANTS as TOOL_GRANTS_VALUES

STACK_FILE = Path("cloudformation") / "mcp-tailnet.yaml"

#: Parameter names: the stack's inputs, each the counterpart of a `render` option.
AUTH_KEY_SECRET_ARN = "AuthKeySecretArn"  # --secret-arn
SERVER_IMAGE = "ServerImage"  # --server-image (empty: the inspector)
EKS_CLUSTER = "EksClusterName"  # --eks-cluster
HOSTNAME = "Hostname"  # --hostname / --server-hostname
LOGIN_SERVER = "LoginServer"  # --login-server
KMS_KEY_ARN = "KmsKeyArn"  # --kms-key-arn
IMAGE_REGISTRY = "ImageRegistry"  # --registry
IMAGE_VERSION = "ImageVersion"  # --version
ARCHITECTURE = "Architecture"  # --architecture
LOG_GROUP = "LogGroupName"  # --log-group
LOG_RETENTION = "LogRetentionDays"
VPC = "VpcId"
SUBNETS = "Subnets"  # --subnet
CLUSTER = "Cluster"  # --ecs-cluster (empty: the stack creates one)
IMPERSONATE = "InspectorImpersonate"  # --impersonate
TOOL_GRANTS = "ToolGrants"  # --tool-grants

#: Conditions.
USE_INSPECTOR, USE_SERVER = "UseInspector", "UseServerImage"
HAS_HOSTNAME, HAS_LOGIN_SERVER, HAS_KMS_KEY = "HasHostname", "HasLoginServer", "HasKmsKey"
CREATE_CLUSTER = "CreateCluster"

#: Logical ids of the resources.
INSPECTOR_TASK, SERVER_TASK = "InspectorTaskDefinition", "ServerTaskDefinition"
EXECUTION_ROLE, TASK_ROLE = "ExecutionRole", "InspectorTaskRole"
SECURITY_GROUP, LOG_GROUP_RESOURCE, SERVICE, ECS_CLUSTER = "TaskSecurityGroup", "LogGroup", "Service", "EcsCluster"

#: A full Secrets Manager ARN (with its random suffix), as render's --secret-arn. An auth key
#: pasted here instead fails the pattern: the key itself is never a parameter value.
SECRET_ARN_PATTERN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$"
KMS_ARN_PATTERN = r"^$|^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]{36}$"
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
_SYMBOL = re.compile(r"\$\{([A-Za-z0-9:]+)\}")
#: Keys whose children are free-form (log driver options), not CloudFormation property names.
_VERBATIM = frozenset({"options"})


def _ref(name: str) -> dict[str, Any]:
    return {"Ref": name}


def _sym(name: str) -> str:
    return "${" + name + "}"


def _not_empty(name: str) -> dict[str, Any]:
    return {"Fn::Not": [{"Fn::Equals": [_ref(name), ""]}]}


def _symbolic(*, login: bool, kms: bool, hostname: bool) -> templates.Bundle:
    """render's documents with each deploy-time value as a `${...}` symbol."""
    opts = RenderOptions(
        account_id=_sym("AWS::AccountId"), region=_sym("AWS::Region"), version=_sym(IMAGE_VERSION),
        registry=_sym(IMAGE_REGISTRY), eks_cluster=_sym(EKS_CLUSTER), secret_arn=_sym(AUTH_KEY_SECRET_ARN),
        server_image=_sym(SERVER_IMAGE), architecture=_sym(ARCHITECTURE), log_group=_sym(LOG_GROUP),
        login_server=_sym(LOGIN_SERVER) if login else None, kms_key_arn=_sym(KMS_KEY_ARN) if kms else None,
        hostname=_sym(HOSTNAME) if hostname else None, server_hostname=_sym(HOSTNAME) if hostname else None,
        impersonate=_sym(IMPERSONATE), tool_grants=_sym(TOOL_GRANTS),
    )
    return render_unchecked(opts)


def merge_if(condition: str, when_true: Any, when_false: Any) -> Any:
    """One document that is `when_true` if `condition` holds, else `when_false`: Fn::If at each
    smallest subtree where they differ (a dict with the same keys or a list of the same length
    is merged item by item)."""
    if when_true == when_false:
        return when_true
    if _intrinsic(when_true) or _intrinsic(when_false):
        return {"Fn::If": [condition, when_true, when_false]}
    if isinstance(when_true, dict) and isinstance(when_false, dict) and list(when_true) == list(when_false):
        return {k: merge_if(condition, when_true[k], when_false[k]) for k in when_true}
    if isinstance(when_true, list) and isinstance(when_false, list) and len(when_true) == len(when_false):
        return [merge_if(condition, a, b) for a, b in zip(when_true, when_false, strict=True)]
    return {"Fn::If": [condition, when_true, when_false]}


def _intrinsic(doc: Any) -> bool:
    return isinstance(doc, dict) and len(doc) == 1 and next(iter(doc)).startswith(("Fn::", "Ref"))


def _conditional(build: Callable[..., templates.Bundle], flags: list[tuple[str, str]], chosen: dict[str, bool]) -> Any:
    if not flags:
        return build(**chosen)
    (flag, condition), rest = flags[0], flags[1:]
    return merge_if(condition, _conditional(build, rest, {**chosen, flag: True}),
                    _conditional(build, rest, {**chosen, flag: False}))


def _pascal(key: str) -> str:
    return key[:1].upper() + key[1:]


def to_cloudformation(doc: Any, *, verbatim: bool = False) -> Any:
    """API JSON (camelCase keys, `${...}` symbols) -> CloudFormation properties (PascalCase, Ref/Fn::Sub)."""
    if isinstance(doc, dict):
        if _intrinsic(doc):
            (fn, args), = doc.items()
            if fn == "Fn::If":
                return {fn: [args[0], *(to_cloudformation(a, verbatim=verbatim) for a in args[1:])]}
            return doc
        return {(k if verbatim else _pascal(k)): to_cloudformation(v, verbatim=k in _VERBATIM) for k, v in doc.items()}
    if isinstance(doc, list):
        return [to_cloudformation(v, verbatim=verbatim) for v in doc]
    if isinstance(doc, str) and "${" in doc:
        whole = _SYMBOL.fullmatch(doc)
        return _ref(whole.group(1)) if whole else {"Fn::Sub": doc}
    return doc


def _policy(document: Any) -> Any:
    """IAM documents keep their own key names; only the symbols become Fn::Sub."""
    if isinstance(document, dict):
        if "Fn::If" in document:
            condition, a, b = document["Fn::If"]
            return {"Fn::If": [condition, _policy(a), _policy(b)]}
        return {k: _policy(v) for k, v in document.items()}
    if isinstance(document, list):
        return [_policy(v) for v in document]
    return to_cloudformation(document)


def _parameters(defaults: release.ReleaseDefaults) -> dict[str, Any]:
    return {
        AUTH_KEY_SECRET_ARN: {
            "Type": "String", "AllowedPattern": SECRET_ARN_PATTERN,
            "Description": "Full ARN of an EXISTING Secrets Manager secret holding the Tailscale auth key "
                           "(the key itself never goes into a parameter)",
            "ConstraintDescription": "must be a Secrets Manager secret ARN with its 6-character suffix, not a key",
        },
        VPC: {"Type": "AWS::EC2::VPC::Id", "Description": "VPC of the private subnets"},
        SUBNETS: {"Type": "List<AWS::EC2::Subnet::Id>",
                  "Description": "Private subnets (no route to an internet gateway; NAT for egress)"},
        SERVER_IMAGE: {"Type": "String", "Default": "",
                       "Description": "Empty: our EKS inspector. Else any unchanged SSE / Streamable HTTP MCP server "
                                      "image serving on 127.0.0.1:8080"},
        EKS_CLUSTER: {"Type": "String", "Default": "", "AllowedPattern": r"^$|^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$",
                      "Description": "EKS cluster the inspector reads (required without ServerImage)"},
        HOSTNAME: {"Type": "String", "Default": "", "AllowedPattern": r"^$|^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
                   "Description": "Tailnet hostname (empty: eks-inspector, or mcp-server with ServerImage)"},
        LOGIN_SERVER: {"Type": "String", "Default": "", "AllowedPattern": r"^$|^https?://\S+$",
                       "Description": "Control server URL, e.g. your headscale (empty: Tailscale's)"},
        KMS_KEY_ARN: {"Type": "String", "Default": "", "AllowedPattern": KMS_ARN_PATTERN,
                      "Description": "Customer-managed KMS key of the auth key secret, if any"},
        IMAGE_REGISTRY: {"Type": "String", "Default": defaults.registry,
                         "Description": "Registry of our images (images/release.env); ECR mirrors: use "
                                        "mcp-tailnet-ecs render --registry"},
        IMAGE_VERSION: {"Type": "String", "Default": defaults.version,
                        "Description": "Tag of our images (images/release.env)"},
        ARCHITECTURE: {"Type": "String", "Default": "X86_64", "AllowedValues": list(ARCHITECTURES),
                       "Description": "Fargate CPU architecture (the release builds both; ARM64 is Graviton)"},
        LOG_GROUP: {"Type": "String", "Default": DEFAULT_LOG_GROUP, "AllowedPattern": r"^[A-Za-z0-9_./#-]{1,512}$",
                    "Description": "CloudWatch log group the stack creates for every container"},
        LOG_RETENTION: {"Type": "Number", "Default": 30, "AllowedValues": list(LOG_RETENTION_DAYS)},
        CLUSTER: {"Type": "String", "Default": "",
                  "Description": "Existing ECS cluster name (empty: the stack creates one)"},
        IMPERSONATE: {"Type": "String", "Default": "off", "AllowedValues": list(IMPERSONATE_MODES),
                      "Description": "caller: the inspector makes every Kubernetes request as the tailnet caller; "
                                     "its role then needs only impersonate (docs/access-kubernetes.md)"},
        TOOL_GRANTS: {"Type": "String", "Default": "false", "AllowedValues": list(TOOL_GRANTS_VALUES),
                      "Description": "true: tool access from grants in the tailnet policy (docs/access.md)"},
    }


def _task_definition(td: Any, *, task_role: bool) -> dict[str, Any]:
    props = to_cloudformation(td)
    props["ExecutionRoleArn"] = {"Fn::GetAtt": [EXECUTION_ROLE, "Arn"]}
    if task_role:
        props["TaskRoleArn"] = {"Fn::GetAtt": [TASK_ROLE, "Arn"]}
    else:
        props.pop("TaskRoleArn", None)
    return props


def _role(trust: Any, policy: Any) -> dict[str, Any]:
    return {"AssumeRolePolicyDocument": _policy(trust),
            "Policies": [{"PolicyName": "mcp-tailnet", "PolicyDocument": _policy(policy)}]}


def _service(svc: Any) -> dict[str, Any]:
    props = to_cloudformation(svc)
    props["Cluster"] = {"Fn::If": [CREATE_CLUSTER, _ref(ECS_CLUSTER), _ref(CLUSTER)]}
    props["ServiceName"] = {"Ref": "AWS::StackName"}
    props["TaskDefinition"] = {"Fn::If": [USE_INSPECTOR, _ref(INSPECTOR_TASK), _ref(SERVER_TASK)]}
    vpc = props["NetworkConfiguration"]["AwsvpcConfiguration"]
    vpc["Subnets"] = _ref(SUBNETS)
    vpc["SecurityGroups"] = [_ref(SECURITY_GROUP)]
    return props


def template() -> dict[str, Any]:
    """The whole stack, as a dict (see `dump` for the committed YAML)."""
    flags = [("login", HAS_LOGIN_SERVER), ("kms", HAS_KMS_KEY), ("hostname", HAS_HOSTNAME)]
    bundle = _conditional(_symbolic, flags, {})
    resources: dict[str, Any] = {
        LOG_GROUP_RESOURCE: {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete",
                             "Properties": {"LogGroupName": _ref(LOG_GROUP), "RetentionInDays": _ref(LOG_RETENTION)}},
        SECURITY_GROUP: {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "mcp-tailnet: no inbound rule; the tailnet is the only way in",
            "VpcId": _ref(VPC),
            # No SecurityGroupIngress. Egress stays open: Tailscale dials the control server
            # (HTTPS), DERP relays and peers (UDP); images and logs go out too.
        }},
        EXECUTION_ROLE: {"Type": "AWS::IAM::Role", "Properties": _role(
            bundle[templates.TRUST_POLICY], bundle[templates.EXECUTION_POLICY])},
        TASK_ROLE: {"Type": "AWS::IAM::Role", "Condition": USE_INSPECTOR, "Properties": _role(
            bundle[templates.TRUST_POLICY], bundle[templates.TASK_POLICY])},
        INSPECTOR_TASK: {"Type": "AWS::ECS::TaskDefinition", "Condition": USE_INSPECTOR,
                         "Properties": _task_definition(bundle[templates.TASK_DEFINITION], task_role=True)},
        SERVER_TASK: {"Type": "AWS::ECS::TaskDefinition", "Condition": USE_SERVER,
                      "Properties": _task_definition(bundle[templates.STOCK_SERVER_TASK_DEFINITION], task_role=False)},
        ECS_CLUSTER: {"Type": "AWS::ECS::Cluster", "Condition": CREATE_CLUSTER},
        SERVICE: {"Type": "AWS::ECS::Service", "DependsOn": [LOG_GROUP_RESOURCE],
                  "Properties": _service(bundle[templates.SERVICE])},
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "mcp-tailnet: an MCP server reachable only over your tailnet, on ECS Fargate "
                       "(task definition, service, roles, security group, log group)",
        "Parameters": _parameters(release.defaults()),
        "Rules": {"InspectorNeedsItsCluster": {
            "RuleCondition": {"Fn::Equals": [_ref(SERVER_IMAGE), ""]},
            "Assertions": [{"Assert": _not_empty(EKS_CLUSTER),
                            "AssertDescription": "EksClusterName: the EKS cluster the inspector reads"}],
        }},
        "Conditions": {
            USE_SERVER: _not_empty(SERVER_IMAGE),
            USE_INSPECTOR: {"Fn::Equals": [_ref(SERVER_IMAGE), ""]},
            HAS_HOSTNAME: _not_empty(HOSTNAME),
            HAS_LOGIN_SERVER: _not_empty(LOGIN_SERVER),
            HAS_KMS_KEY: _not_empty(KMS_KEY_ARN),
            CREATE_CLUSTER: {"Fn::Equals": [_ref(CLUSTER), ""]},
        },
        "Resources": resources,
        "Outputs": {
            "ServiceName": {"Value": {"Fn::GetAtt": [SERVICE, "Name"]}},
            "TaskDefinitionArn": {"Value": {"Fn::If": [USE_INSPECTOR, _ref(INSPECTOR_TASK), _ref(SERVER_TASK)]}},
            "SecurityGroupId": {"Value": {"Fn::GetAtt": [SECURITY_GROUP, "GroupId"]}},
            "ExecutionRoleArn": {"Value": {"Fn::GetAtt": [EXECUTION_ROLE, "Arn"]}},
        },
    }


HEADER = """\
# GENERATED by `mcp-tailnet-ecs cloudformation` from ecs/task-definition*.json, ecs/service.json
# and ecs/iam/*.json (the templates `mcp-tailnet-ecs render` fills in): do not edit here; edit those
# and regenerate. tests/ecs/test_ecs_cloudformation.py fails when this file differs from the output.
#
# One `aws cloudformation deploy` (ecs/README.md): the task definition (our inspector, or any server
# image), the service (private subnets, no public IP, no load balancer, one task), a security group
# with no inbound rule, the execution and task roles, the log group. The auth key is read from an
# existing Secrets Manager secret by ARN; it is never a parameter value.
"""


def dump(doc: dict[str, Any] | None = None) -> str:
    """The committed YAML: the header, then the template (long-form intrinsics, stable order)."""
    body = yaml.safe_dump(copy.deepcopy(doc if doc is not None else template()), sort_keys=False, width=110,
                          default_flow_style=False)
    return HEADER + body


def stack_path() -> Path:
    return templates.template_dir() / STACK_FILE
