"""Turn the templates into documents for one account, region and image version.

The templates carry bare upper-case placeholders (ACCOUNT_ID, REGION, VERSION,
OWNER, ...) so they stay valid JSON that botocore and our rules can check as they
are. Rendering substitutes them and applies the few structural choices (subnets,
secret ARN, state on EFS, registry) that a string substitution cannot express.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from mcp_tailnet_ecs import release, templates
from mcp_tailnet_ecs.templates import Bundle

#: placeholder -> the render option that fills it
PLACEHOLDERS = {
    "ACCOUNT_ID": "--account-id",
    "REGION": "--region",
    "VERSION": "--version",
    "OWNER": "--owner",
    "EKS_CLUSTER_NAME": "--eks-cluster",
    "ECS_CLUSTER": "--ecs-cluster",
    "PRIVATE_SUBNET_ID": "--subnet",
    "SECURITY_GROUP_ID": "--security-group",
    "MCP_SERVER_IMAGE": "--server-image",
}
_PLACEHOLDER_RE = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(PLACEHOLDERS) + r")(?![A-Za-z0-9_])")
TEMPLATE_REGISTRY = "ghcr.io/OWNER"
DEFAULT_SECRET_NAME = "mcp-tailnet/ts-authkey"
SIDECAR_IMAGE = "mcp-tailnet-sidecar"
INSPECTOR_IMAGE = "eks-inspector"
#: mcp-hub (tools/mcp-hub): in front of the inspector in the hub task; a derived image keeps this in its name.
HUB_IMAGE = "mcp-hub"
STATE_DIR = "/var/lib/tailscale"
STATE_VOLUME = "tailscale-state"
#: The log group the templates name (every container's awslogs-group, the execution role's logs resource).
DEFAULT_LOG_GROUP = "/ecs/mcp-tailnet"
#: Fargate's CPU architectures (runtimePlatform.cpuArchitecture); the release builds both.
ARCHITECTURES = ("X86_64", "ARM64")
#: INSPECTOR_IMPERSONATE values (--impersonate): the inspector's own identity, or each caller's.
IMPERSONATE_MODES = ("off", "caller")
#: SIDECAR_TAILNET_GRANTS values (--tool-grants sets "true").
TOOL_GRANTS = ("false", "true")

_ACCOUNT = re.compile(r"\d{12}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_REGISTRY = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*")
_ECR_REGISTRY = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:/(.*))?")
_OWNER = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*")
_EKS_NAME = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}")
_ECS_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_SUBNET = re.compile(r"subnet-[0-9a-f]{8,17}")
_SG = re.compile(r"sg-[0-9a-f]{8,17}")
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):(\d{12}):secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}")
_KMS_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}")
_EFS_ID = re.compile(r"fs-[0-9a-f]{8,40}")
_EFS_AP = re.compile(r"fsap-[0-9a-f]{8,40}")
_LOGIN_SERVER = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[^\s]*)?")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")
_LOG_GROUP = re.compile(r"[A-Za-z0-9_./#-]{1,512}")
#: The inspector's INSPECTOR_CLUSTERS shapes (tools/eks-inspector clusters_config.py), ASCII only.
_CLUSTER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_ROLE_ARN = re.compile(r"arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}")
#: The inspector's own cluster (the task's --eks-cluster); no entry may take the name.
DEFAULT_CLUSTER = "default"
MAX_CLUSTERS = 100
#: Where the inspector task's clusters file is written at start (its /tmp task volume) and the
#: variable that carries it there: Fargate has no file a task definition can provide.
CLUSTERS_FILE = "/tmp/eks-inspector-clusters.json"
CLUSTERS_JSON_VARIABLE = "INSPECTOR_CLUSTERS_JSON"
#: The inspector container's entryPoint with --cluster: parse the JSON from the environment (it
#: came from render), write it to INSPECTOR_CLUSTERS (never through a link), drop the variable,
#: then exec the image's own program with the task's command.
CLUSTERS_ENTRYPOINT = [
    "python3", "-I", "-c",
    "import json, os, sys; doc = json.loads(os.environ.pop('" + CLUSTERS_JSON_VARIABLE + "')); "
    "fd = os.open(os.environ['INSPECTOR_CLUSTERS'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600); "
    "os.write(fd, json.dumps(doc).encode()); os.close(fd); "
    "os.execvp('eks-inspector', ['eks-inspector', *sys.argv[1:]])",
]


@dataclass(frozen=True)
class ClusterEntry:
    """One more EKS cluster for the inspector task (`--cluster NAME EKS_CLUSTER REGION [ROLE_ARN]`):
    an entry of the inspector's INSPECTOR_CLUSTERS file. Fargate has no kubeconfig to offer, so
    only EKS entries: the task role's credentials, or the role it assumes for that account."""

    name: str
    eks_cluster: str
    region: str
    role_arn: str | None = None

    @classmethod
    def parse(cls, words: list[str]) -> ClusterEntry:
        if len(words) not in (3, 4):
            raise RenderError(f"--cluster: expected NAME EKS_CLUSTER REGION [ROLE_ARN], got {len(words)} value(s)")
        return cls(*words)

    def as_entry(self) -> dict[str, str]:
        entry = {"name": self.name, "eks_cluster": self.eks_cluster, "region": self.region}
        return entry | ({"role_arn": self.role_arn} if self.role_arn else {})


class RenderError(ValueError):
    """A render option is invalid; str() is one line naming the option."""


@dataclass(frozen=True)
class RenderOptions:
    """Everything that differs between one deployment and another."""

    account_id: str
    region: str
    # Default: images/release.env, the version compose and manifests/ name too.
    version: str = field(default_factory=lambda: release.defaults().version)
    owner: str | None = None
    registry: str | None = None
    eks_cluster: str = "EKS_CLUSTER_NAME"
    ecs_cluster: str = "mcp-tailnet"
    subnets: tuple[str, ...] = ()
    security_group: str | None = None
    hostname: str | None = None
    secret_name: str = DEFAULT_SECRET_NAME
    secret_arn: str | None = None
    kms_key_arn: str | None = None
    login_server: str | None = None
    state: str = "ephemeral"
    efs_file_system_id: str | None = None
    efs_access_point_id: str | None = None
    server_image: str | None = None
    #: TS_HOSTNAME of the stock-server task (the template's `mcp-server` when None).
    server_hostname: str | None = None
    extra_env: tuple[tuple[str, str], ...] = field(default=())
    architecture: str = "X86_64"
    log_group: str = DEFAULT_LOG_GROUP
    #: INSPECTOR_IMPERSONATE of the inspector task (docs/access-kubernetes.md)
    impersonate: str = "off"
    #: SIDECAR_TAILNET_GRANTS of every sidecar (docs/access.md)
    tool_grants: str = "false"
    #: More EKS clusters for the inspector task (INSPECTOR_CLUSTERS); the hub task keeps one
    clusters: tuple[ClusterEntry, ...] = ()

    def check(self) -> None:
        """Raise RenderError naming the first bad option."""

        def need(ok: bool, option: str, value: object, what: str) -> None:
            if not ok:
                raise RenderError(f"{option}: {value!r} is not {what}")

        need(bool(_ACCOUNT.fullmatch(self.account_id)), "--account-id", self.account_id, "a 12-digit AWS account id")
        need(bool(_REGION.fullmatch(self.region)), "--region", self.region, "an AWS region name")
        need(bool(_TAG.fullmatch(self.version)), "--version", self.version, "an image tag")
        if self.owner is not None:
            need(bool(_OWNER.fullmatch(self.owner)), "--owner", self.owner, "a lower-case registry namespace")
        if self.registry is not None:
            need(bool(_REGISTRY.fullmatch(self.registry)), "--registry", self.registry, "a registry[/path]")
        if self.eks_cluster != "EKS_CLUSTER_NAME":
            need(bool(_EKS_NAME.fullmatch(self.eks_cluster)), "--eks-cluster", self.eks_cluster, "an EKS cluster name")
        need(bool(_ECS_NAME.fullmatch(self.ecs_cluster)), "--ecs-cluster", self.ecs_cluster, "an ECS cluster name")
        for subnet in self.subnets:
            need(bool(_SUBNET.fullmatch(subnet)), "--subnet", subnet, "a subnet id (subnet-...)")
        if self.security_group is not None:
            need(bool(_SG.fullmatch(self.security_group)), "--security-group", self.security_group, "a security group id (sg-...)")
        if self.hostname is not None:
            need(bool(_HOSTNAME.fullmatch(self.hostname)), "--hostname", self.hostname, "a lower-case DNS label")
        if self.server_hostname is not None:
            need(bool(_HOSTNAME.fullmatch(self.server_hostname)), "--server-hostname", self.server_hostname,
                 "a lower-case DNS label")
        need(self.architecture in ARCHITECTURES, "--architecture", self.architecture, " or ".join(ARCHITECTURES))
        need(bool(_LOG_GROUP.fullmatch(self.log_group)), "--log-group", self.log_group, "a CloudWatch log group name")
        need(self.impersonate in IMPERSONATE_MODES, "--impersonate", self.impersonate, " or ".join(IMPERSONATE_MODES))
        need(self.tool_grants in TOOL_GRANTS, "--tool-grants", self.tool_grants, " or ".join(TOOL_GRANTS))
        need(bool(_SECRET_NAME.fullmatch(self.secret_name)), "--secret-name", self.secret_name, "a Secrets Manager secret name")
        if self.secret_arn is not None:
            m = _SECRET_ARN.fullmatch(self.secret_arn)
            need(bool(m), "--secret-arn", "<arn>", "a full Secrets Manager secret ARN (with its 6-character suffix)")
            assert m
            if m.group(1) != self.region:
                raise RenderError(f"--secret-arn: the secret is in {m.group(1)}, the task in {self.region}")
        if self.kms_key_arn is not None:
            need(bool(_KMS_ARN.fullmatch(self.kms_key_arn)), "--kms-key-arn", self.kms_key_arn, "a KMS key ARN")
        if self.login_server is not None:
            need(bool(_LOGIN_SERVER.fullmatch(self.login_server)), "--login-server", self.login_server, "an http(s) URL")
        need(self.state in ("ephemeral", "efs"), "--state", self.state, "ephemeral or efs")
        if self.state == "efs":
            need(bool(self.efs_file_system_id and _EFS_ID.fullmatch(self.efs_file_system_id)),
                 "--efs-file-system-id", self.efs_file_system_id, "an EFS file system id (fs-...), required with --state efs")
            need(bool(self.efs_access_point_id and _EFS_AP.fullmatch(self.efs_access_point_id)),
                 "--efs-access-point-id", self.efs_access_point_id, "an EFS access point id (fsap-...), required with --state efs")
        elif self.efs_file_system_id or self.efs_access_point_id:
            raise RenderError("--efs-file-system-id: only meaningful with --state efs")
        if self.server_image is not None:
            need(bool(_IMAGE.fullmatch(self.server_image)), "--server-image", self.server_image, "an image reference")
        for name, _ in self.extra_env:
            if "AUTHKEY" in name.upper() or "AUTH_KEY" in name.upper():
                raise RenderError(f"--env: {name} belongs in Secrets Manager, never in environment")
            if name in ("INSPECTOR_CLUSTERS", CLUSTERS_JSON_VARIABLE):
                raise RenderError(f"--env: {name} is set by --cluster (on the inspector, not the sidecar)")
        self._check_clusters()

    def _check_clusters(self) -> None:
        if len(self.clusters) > MAX_CLUSTERS:
            raise RenderError(f"--cluster: at most {MAX_CLUSTERS} clusters")
        seen: set[str] = set()
        for c in self.clusters:
            where = f"--cluster {c.name[:64]!r}"
            if not _CLUSTER_NAME.fullmatch(c.name):
                raise RenderError(f"--cluster: {c.name[:100]!r} is not a lower-case DNS label")
            if c.name == DEFAULT_CLUSTER:
                raise RenderError(f"{where}: {DEFAULT_CLUSTER!r} is the task's own cluster (--eks-cluster); choose another name")
            if c.name in seen:
                raise RenderError(f"{where}: the name is used twice")
            seen.add(c.name)
            if not _EKS_NAME.fullmatch(c.eks_cluster):
                raise RenderError(f"{where}: {c.eks_cluster[:100]!r} is not an EKS cluster name")
            if not _REGION.fullmatch(c.region):
                raise RenderError(f"{where}: {c.region[:100]!r} is not an AWS region name")
            if c.role_arn is not None and not _ROLE_ARN.fullmatch(c.role_arn):
                raise RenderError(f"{where}: {c.role_arn[:100]!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")

    @property
    def clusters_document(self) -> str:
        """The INSPECTOR_CLUSTERS file the inspector task writes at start (compact JSON)."""
        return json.dumps({"clusters": [c.as_entry() for c in self.clusters]}, separators=(",", ":"))

    @property
    def image_registry(self) -> str:
        """--registry, else ghcr.io/--owner, else the release's registry (images/release.env)."""
        if self.registry:
            return self.registry
        return f"ghcr.io/{self.owner}" if self.owner else release.defaults().registry

    @property
    def secret_value_from(self) -> str:
        """What the task definition's `valueFrom` names: the full ARN, or the partial one."""
        if self.secret_arn:
            return self.secret_arn
        return f"arn:aws:secretsmanager:{self.region}:{self.account_id}:secret:{self.secret_name}"

    @property
    def secret_policy_resource(self) -> str:
        """The IAM resource for exactly that secret (`-??????` matches the random suffix)."""
        if self.secret_arn:
            return self.secret_arn
        return f"{self.secret_value_from}-??????"


def strings(doc: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON document with its JSON path."""
    if isinstance(doc, str):
        yield path, doc
    elif isinstance(doc, dict):
        for key, value in doc.items():
            yield from strings(value, f"{path}.{key}" if path else key)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from strings(value, f"{path}[{i}]")


def leftover_placeholders(doc: Any) -> list[str]:
    """JSON paths that still hold a template placeholder."""
    return [f"{path}: {m.group(1)} (pass {PLACEHOLDERS[m.group(1)]})" for path, text in strings(doc) for m in [_PLACEHOLDER_RE.search(text)] if m]


def _substitute(doc: Any, values: dict[str, str]) -> Any:
    if isinstance(doc, str):
        return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(1)), doc)
    if isinstance(doc, dict):
        return {k: _substitute(v, values) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_substitute(v, values) for v in doc]
    return doc


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = container.setdefault("environment", [])
    for item in env:
        if item["name"] == name:
            item["value"] = value
            return
    env.append({"name": name, "value": value})


def sidecar_of(task_definition: dict[str, Any]) -> dict[str, Any] | None:
    """The Tailscale sidecar container: the one running our sidecar image."""
    for c in task_definition.get("containerDefinitions", []):
        if SIDECAR_IMAGE in str(c.get("image", "")).rsplit("/", 1)[-1]:
            return c
    return None


def _set_inspector_env(task_definition: dict[str, Any], name: str, value: str) -> None:
    """An env entry of the inspector container (the one running our inspector image). Only in the
    inspector's own task: behind mcp-hub no caller headers reach it (the hub task keeps it off)."""
    for c in task_definition.get("containerDefinitions", []):
        if str(c.get("image", "")).rsplit("/", 1)[-1].split(":", 1)[0] == INSPECTOR_IMAGE:
            _set_env(c, name, value)


def _apply_clusters(task_definition: dict[str, Any], opts: RenderOptions) -> None:
    """--cluster: the inspector writes its clusters file at start (CLUSTERS_ENTRYPOINT) and reads it."""
    if not opts.clusters:
        return
    for c in task_definition.get("containerDefinitions", []):
        if str(c.get("image", "")).rsplit("/", 1)[-1].split(":", 1)[0] == INSPECTOR_IMAGE:
            c["entryPoint"] = list(CLUSTERS_ENTRYPOINT)
            _set_env(c, "INSPECTOR_CLUSTERS", CLUSTERS_FILE)
            _set_env(c, CLUSTERS_JSON_VARIABLE, opts.clusters_document)


def _retarget_images(task_definition: dict[str, Any], registry: str) -> None:
    for c in task_definition.get("containerDefinitions", []):
        image = c.get("image", "")
        if image.startswith(TEMPLATE_REGISTRY + "/"):
            c["image"] = registry + image[len(TEMPLATE_REGISTRY):]


def _retarget_platform(td: dict[str, Any], opts: RenderOptions) -> None:
    """The CPU architecture, and the log group every container writes to."""
    td.setdefault("runtimePlatform", {"operatingSystemFamily": "LINUX"})["cpuArchitecture"] = opts.architecture
    for c in td.get("containerDefinitions", []):
        options = (c.get("logConfiguration") or {}).get("options") or {}
        if options.get("awslogs-group") == DEFAULT_LOG_GROUP:
            options["awslogs-group"] = opts.log_group


def _apply_sidecar_options(td: dict[str, Any], opts: RenderOptions, *, primary: bool,
                           hostname: str | None) -> None:
    """The auth key, hostname, login server and extra env on the sidecar; EFS state only for
    the primary task (one state directory is one node: two tasks must never share it)."""
    sidecar = sidecar_of(td)
    if sidecar is None:
        return
    for secret in sidecar.get("secrets", []):
        if secret["name"] in ("TS_AUTHKEY", "TS_AUTH_KEY"):
            secret["valueFrom"] = opts.secret_value_from
    if hostname:
        _set_env(sidecar, "TS_HOSTNAME", hostname)
    if opts.login_server:
        _set_env(sidecar, "SIDECAR_LOGIN_SERVER", opts.login_server)
    _set_env(sidecar, "SIDECAR_TAILNET_GRANTS", opts.tool_grants)
    for name, value in opts.extra_env:
        _set_env(sidecar, name, value)
    if opts.state == "efs" and primary:
        td.setdefault("volumes", []).append({
            "name": STATE_VOLUME,
            "efsVolumeConfiguration": {
                "fileSystemId": opts.efs_file_system_id,
                "transitEncryption": "ENABLED",
                "authorizationConfig": {"accessPointId": opts.efs_access_point_id, "iam": "ENABLED"},
            },
        })
        sidecar.setdefault("mountPoints", []).append(
            {"sourceVolume": STATE_VOLUME, "containerPath": STATE_DIR, "readOnly": False}
        )
        _set_env(sidecar, "TS_STATE_DIR", STATE_DIR)
        # With state kept, the key is needed only for the first login.
        _set_env(sidecar, "TS_AUTH_ONCE", "true")


def _execution_policy(policy: dict[str, Any], opts: RenderOptions, images: list[str]) -> dict[str, Any]:
    statements = []
    ecr = _ECR_REGISTRY.fullmatch(opts.image_registry)
    for st in policy["Statement"]:
        sid = st.get("Sid", "")
        if sid.startswith("Ecr"):
            if not ecr:
                continue  # images come from another registry: no ECR rights at all
            if sid == "EcrPullOurImages":
                account, region = ecr.group(1), ecr.group(2)
                repos = sorted({
                    img.split(":", 1)[0].split("/", 1)[1]
                    for img in images
                    if img.startswith(opts.image_registry + "/")
                })
                st["Resource"] = [f"arn:aws:ecr:{region}:{account}:repository/{repo}" for repo in repos]
        if sid == "ReadTheTailscaleAuthKey":
            st["Resource"] = opts.secret_policy_resource
        if sid == "WriteTaskLogs" and isinstance(st.get("Resource"), str):
            st["Resource"] = st["Resource"].replace(f":log-group:{DEFAULT_LOG_GROUP}:", f":log-group:{opts.log_group}:")
        statements.append(st)
    if opts.kms_key_arn:
        statements.append({
            "Sid": "DecryptTheAuthKeyViaSecretsManager",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": opts.kms_key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{opts.region}.amazonaws.com"}},
        })
    policy["Statement"] = statements
    return policy


def _cluster_statements(policy: dict[str, Any], opts: RenderOptions) -> list[dict[str, Any]]:
    """--cluster: the task role reads the other clusters it reaches with its own credentials (the
    same actions as on its own cluster), and may assume exactly the configured roles, no other."""
    own = [c for c in opts.clusters if c.role_arn is None]
    roles = sorted({c.role_arn for c in opts.clusters if c.role_arn})
    out: list[dict[str, Any]] = []
    templates_by_sid = {st.get("Sid"): st for st in policy["Statement"]}
    if own:
        prefix = f"arn:aws:eks:{{region}}:{opts.account_id}"
        cluster_st = templates_by_sid["InspectorReadsItsCluster"]
        out.append({"Sid": "InspectorReadsItsOtherClusters", "Effect": "Allow", "Action": list(cluster_st["Action"]),
                    "Resource": [f"{prefix.format(region=c.region)}:cluster/{c.eks_cluster}" for c in own]})
        parts_st = templates_by_sid["InspectorReadsThatClustersParts"]
        out.append({"Sid": "InspectorReadsThoseClustersParts", "Effect": "Allow", "Action": list(parts_st["Action"]),
                    "Resource": [f"{prefix.format(region=c.region)}:{kind}/{c.eks_cluster}/*"
                                 for c in own for kind in ("nodegroup", "addon", "access-entry")]})
    if roles:
        out.append({"Sid": "InspectorAssumesItsClustersRoles", "Effect": "Allow", "Action": "sts:AssumeRole",
                    "Resource": roles})
    return out


def _task_policy(policy: dict[str, Any], opts: RenderOptions) -> dict[str, Any]:
    policy["Statement"].extend(_cluster_statements(policy, opts))
    if opts.state == "efs":
        arn = f"arn:aws:elasticfilesystem:{opts.region}:{opts.account_id}"
        policy["Statement"].append({
            "Sid": "TailscaleStateOnEfs",
            "Effect": "Allow",
            "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
            "Resource": f"{arn}:file-system/{opts.efs_file_system_id}",
            "Condition": {"StringEquals": {"elasticfilesystem:AccessPointArn": f"{arn}:access-point/{opts.efs_access_point_id}"}},
        })
    return policy


def render(opts: RenderOptions, source: Bundle | None = None) -> Bundle:
    """Render every template (the hub task too); the stock-server variant only when --server-image is given."""
    opts.check()
    return render_unchecked(opts, source)


def render_unchecked(opts: RenderOptions, source: Bundle | None = None) -> Bundle:
    """`render` without the option checks: cloudformation.py renders with symbolic values
    (`${AWS::Region}`, `${ImageVersion}`, ...) through this same code, so the stack and
    `render` share every container definition and policy statement."""
    source = source if source is not None else templates.load_bundle()
    values = {
        "ACCOUNT_ID": opts.account_id,
        "REGION": opts.region,
        "VERSION": opts.version,
        "EKS_CLUSTER_NAME": opts.eks_cluster,
        "ECS_CLUSTER": opts.ecs_cluster,
    }
    if opts.security_group:
        values["SECURITY_GROUP_ID"] = opts.security_group
    if opts.server_image:
        values["MCP_SERVER_IMAGE"] = opts.server_image
    if opts.owner:
        values["OWNER"] = opts.owner
    #: the hub task keeps its template's TS_HOSTNAME (mcp-hub): no option names it yet
    hostnames = {templates.TASK_DEFINITION: opts.hostname, templates.STOCK_SERVER_TASK_DEFINITION: opts.server_hostname}
    out: Bundle = {}
    for name, doc in source.items():
        if name == templates.STOCK_SERVER_TASK_DEFINITION and not opts.server_image:
            continue
        doc = copy.deepcopy(doc)
        if name == templates.TASK_DEFINITION:
            _set_inspector_env(doc, "INSPECTOR_IMPERSONATE", opts.impersonate)
            _apply_clusters(doc, opts)
        if name in templates.TASK_DEFINITIONS:
            _retarget_images(doc, opts.image_registry)
            _retarget_platform(doc, opts)
            _apply_sidecar_options(doc, opts, primary=name == templates.TASK_DEFINITION,
                                   hostname=hostnames.get(name))
        if name == templates.SERVICE and opts.subnets:
            doc["networkConfiguration"]["awsvpcConfiguration"]["subnets"] = list(opts.subnets)
        out[name] = _substitute(doc, values)
    images = [
        c["image"]
        for name in templates.TASK_DEFINITIONS
        if name in out
        for c in out[name]["containerDefinitions"]
    ]
    if templates.EXECUTION_POLICY in out:
        out[templates.EXECUTION_POLICY] = _execution_policy(out[templates.EXECUTION_POLICY], opts, images)
    if templates.TASK_POLICY in out:
        out[templates.TASK_POLICY] = _task_policy(out[templates.TASK_POLICY], opts)
    return out
