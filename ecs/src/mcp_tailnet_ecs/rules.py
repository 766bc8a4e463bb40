"""Our own rules for the task and service definitions: Fargate's limits and the tailnet-only shape.

botocore's model checks types; it does not know that Fargate refuses a 256 CPU /
4096 MiB task, that a privileged container will not start, or that a public IP
would put the MCP server one security-group mistake away from the internet. Each
rule has a short id so a test can break exactly one thing and see exactly it fail.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from mcp_tailnet_ecs.render import (
    CLUSTERS_ENTRYPOINT,
    CLUSTERS_FILE,
    CLUSTERS_JSON_VARIABLE,
    HUB_IMAGE,
    INSPECTOR_IMAGE,
    sidecar_of,
    strings,
)

#: Fargate task sizes: CPU units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}
AUTH_KEY_NAMES = ("TS_AUTHKEY", "TS_AUTH_KEY")
_AUTH_KEY_VALUE = re.compile(r"tskey-[A-Za-z0-9-]+|hskey-[A-Za-z0-9-]+")
_SECRET_SOURCE = re.compile(r"arn:aws[a-z-]*:(secretsmanager|ssm):")
#: Docker health check limits as ECS enforces them (field: (min, max)).
HEALTH_LIMITS = {"interval": (5, 300), "timeout": (2, 60), "retries": (1, 10), "startPeriod": (0, 300)}
#: containerboot waits up to 25 s for a consistent state write / logout on SIGTERM.
SIDECAR_MIN_STOP_TIMEOUT = 30
FARGATE_MAX_STOP_TIMEOUT = 120
#: Container keys Fargate or awsvpc refuse, or that reach the host.
#: The sidecar's default upstream (sidecar settings.DEFAULT_UPSTREAM).
DEFAULT_UPSTREAM = "http://127.0.0.1:8080"
#: Where userspace tailscaled forwards unserved tailnet ports (docs/design.md facts 1, 7), and the gateway's alias.
FORWARDER_TARGETS = ("127.0.0.1", "::1")
GATEWAY_ALIAS = "127.0.0.2"
UNSUPPORTED_CONTAINER_KEYS = ("links", "hostname", "extraHosts", "dockerSecurityOptions", "systemControls", "volumesFrom")


@dataclass(frozen=True)
class Finding:
    """One broken rule: which rule, where in the document, and what to do."""

    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"


TaskDef = dict[str, Any]
Rule = Callable[[dict[str, Any]], list[Finding]]
TASK_RULES: dict[str, Rule] = {}
SERVICE_RULES: dict[str, Rule] = {}


def _rule_in(table: dict[str, Rule], rule_id: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        table[rule_id] = fn
        return fn
    return register


def _task_rule(rule_id: str) -> Callable[[Rule], Rule]:
    return _rule_in(TASK_RULES, rule_id)


def _service_rule(rule_id: str) -> Callable[[Rule], Rule]:
    return _rule_in(SERVICE_RULES, rule_id)


def _containers(td: TaskDef) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"containerDefinitions[{i}]({c.get('name', '?')})", c)
        for i, c in enumerate(td.get("containerDefinitions", []))
    ]


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


@_task_rule("fargate")
def _fargate(td: TaskDef) -> list[Finding]:
    if "FARGATE" not in td.get("requiresCompatibilities", []):
        return [Finding("fargate", "requiresCompatibilities", "must include FARGATE")]
    return []


@_task_rule("awsvpc")
def _awsvpc(td: TaskDef) -> list[Finding]:
    if td.get("networkMode") != "awsvpc":
        return [Finding("awsvpc", "networkMode", f"Fargate needs awsvpc, got {td.get('networkMode')!r}")]
    return []


@_task_rule("cpu-memory")
def _cpu_memory(td: TaskDef) -> list[Finding]:
    cpu, memory = _int(td.get("cpu")), _int(td.get("memory"))
    if cpu is None or memory is None:
        return [Finding("cpu-memory", "cpu/memory", "Fargate needs task-level cpu and memory (as strings of numbers)")]
    if cpu not in FARGATE_SIZES:
        return [Finding("cpu-memory", "cpu", f"{cpu} is not a Fargate CPU size ({', '.join(map(str, FARGATE_SIZES))})")]
    if memory not in FARGATE_SIZES[cpu]:
        allowed = FARGATE_SIZES[cpu]
        return [Finding("cpu-memory", "memory", f"{memory} MiB is not allowed with cpu {cpu} ({allowed[0]}..{allowed[-1]} MiB)")]
    found = []
    containers = td.get("containerDefinitions", [])
    if sum(_int(c.get("cpu", 0)) or 0 for c in containers) > cpu:
        found.append(Finding("cpu-memory", "containerDefinitions[*].cpu", f"containers reserve more than the task's {cpu} CPU"))
    for key in ("memory", "memoryReservation"):
        if sum(_int(c.get(key, 0)) or 0 for c in containers) > memory:
            found.append(Finding("cpu-memory", f"containerDefinitions[*].{key}", f"containers ask more than the task's {memory} MiB"))
    return found


@_task_rule("privileged")
def _privileged(td: TaskDef) -> list[Finding]:
    return [Finding("privileged", where, "privileged containers are refused on Fargate and never needed here")
            for where, c in _containers(td) if c.get("privileged")]


@_task_rule("capabilities")
def _capabilities(td: TaskDef) -> list[Finding]:
    found = []
    for where, c in _containers(td):
        added = ((c.get("linuxParameters") or {}).get("capabilities") or {}).get("add") or []
        if added:
            found.append(Finding("capabilities", f"{where}.linuxParameters.capabilities.add",
                                 f"adds {', '.join(added)}: the sidecar runs in userspace mode and needs no capability"))
    return found


@_task_rule("devices")
def _devices(td: TaskDef) -> list[Finding]:
    found = []
    for where, c in _containers(td):
        lp = c.get("linuxParameters") or {}
        if lp.get("devices"):
            found.append(Finding("devices", f"{where}.linuxParameters.devices", "no devices on Fargate (no /dev/net/tun: use userspace mode)"))
        if lp.get("tmpfs"):
            found.append(Finding("devices", f"{where}.linuxParameters.tmpfs", "tmpfs mounts are refused on Fargate; use a task volume"))
    return found


@_task_rule("host-resources")
def _host_resources(td: TaskDef) -> list[Finding]:
    found = []
    for i, v in enumerate(td.get("volumes", [])):
        if (v.get("host") or {}).get("sourcePath"):
            found.append(Finding("host-resources", f"volumes[{i}].host.sourcePath", "host paths do not exist on Fargate"))
        if v.get("dockerVolumeConfiguration"):
            found.append(Finding("host-resources", f"volumes[{i}].dockerVolumeConfiguration", "Docker volumes are refused on Fargate"))
    if td.get("pidMode") not in (None, "task"):
        found.append(Finding("host-resources", "pidMode", f"{td.get('pidMode')!r} is not allowed on Fargate"))
    if td.get("ipcMode"):
        found.append(Finding("host-resources", "ipcMode", "ipcMode is not supported on Fargate"))
    for where, c in _containers(td):
        for key in UNSUPPORTED_CONTAINER_KEYS:
            if c.get(key):
                found.append(Finding("host-resources", f"{where}.{key}", "not supported with Fargate/awsvpc"))
    return found


@_task_rule("logging")
def _logging(td: TaskDef) -> list[Finding]:
    found = []
    for where, c in _containers(td):
        lc = c.get("logConfiguration") or {}
        if lc.get("logDriver") != "awslogs":
            found.append(Finding("logging", f"{where}.logConfiguration", "every container logs to CloudWatch (logDriver awslogs)"))
            continue
        options = lc.get("options") or {}
        missing = [k for k in ("awslogs-group", "awslogs-region", "awslogs-stream-prefix") if not options.get(k)]
        if missing:
            found.append(Finding("logging", f"{where}.logConfiguration.options", f"missing {', '.join(missing)}"))
    return found


@_task_rule("auth-key-in-secrets")
def _auth_key(td: TaskDef) -> list[Finding]:
    found = []
    for where, c in _containers(td):
        for item in c.get("environment") or []:
            name = str(item.get("name", ""))
            if name.upper() in AUTH_KEY_NAMES or "AUTHKEY" in name.upper():
                found.append(Finding("auth-key-in-secrets", f"{where}.environment[{name}]",
                                     "the auth key comes from Secrets Manager via secrets/valueFrom, never environment"))
        for path, text in strings({k: v for k, v in c.items() if k != "secrets"}):
            if _AUTH_KEY_VALUE.search(text):
                found.append(Finding("auth-key-in-secrets", f"{where}.{path}", "holds a literal auth key (value not shown)"))
        for item in c.get("secrets") or []:
            if item.get("name") in AUTH_KEY_NAMES and not _SECRET_SOURCE.match(str(item.get("valueFrom", ""))):
                found.append(Finding("auth-key-in-secrets", f"{where}.secrets[{item.get('name')}]",
                                     "valueFrom must be a Secrets Manager (or SSM parameter) ARN"))
    sidecar = sidecar_of(td)
    if sidecar is not None and not any(s.get("name") in AUTH_KEY_NAMES for s in sidecar.get("secrets") or []):
        found.append(Finding("auth-key-in-secrets", "sidecar.secrets", "the sidecar gets TS_AUTHKEY from secrets"))
    return found


@_task_rule("sidecar-essential")
def _sidecar_essential(td: TaskDef) -> list[Finding]:
    sidecar = sidecar_of(td)
    if sidecar is None:
        return [Finding("sidecar-essential", "containerDefinitions", "no mcp-tailnet-sidecar container: nothing puts the server on the tailnet")]
    if sidecar.get("essential") is not True:
        return [Finding("sidecar-essential", f"container {sidecar.get('name')}", "the sidecar must be essential: without it the task is unreachable")]
    return []


@_task_rule("userspace")
def _userspace(td: TaskDef) -> list[Finding]:
    sidecar = sidecar_of(td) or {}
    for item in sidecar.get("environment") or []:
        if item.get("name") == "TS_USERSPACE" and str(item.get("value")).lower() not in ("true", "1"):
            return [Finding("userspace", "sidecar.environment[TS_USERSPACE]", "Fargate has no /dev/net/tun or NET_ADMIN: must be true")]
    return []


@_task_rule("health-checks")
def _health_checks(td: TaskDef) -> list[Finding]:
    found = []
    for where, c in _containers(td):
        hc = c.get("healthCheck")
        if not hc:
            found.append(Finding("health-checks", where, "no healthCheck: ECS cannot tell a hung container"))
            continue
        cmd = hc.get("command") or []
        if len(cmd) < 2 or cmd[0] not in ("CMD", "CMD-SHELL"):
            found.append(Finding("health-checks", f"{where}.healthCheck.command", "must start with CMD or CMD-SHELL and name a check"))
        for key, (lo, hi) in HEALTH_LIMITS.items():
            if key in hc and not lo <= int(hc[key]) <= hi:
                found.append(Finding("health-checks", f"{where}.healthCheck.{key}", f"{hc[key]} outside ECS's {lo}..{hi}"))
    return found


@_task_rule("depends-on")
def _depends_on(td: TaskDef) -> list[Finding]:
    found = []
    by_name = {c.get("name"): c for c in td.get("containerDefinitions", [])}
    for where, c in _containers(td):
        for dep in c.get("dependsOn") or []:
            target = by_name.get(dep.get("containerName"))
            if target is None:
                found.append(Finding("depends-on", f"{where}.dependsOn", f"no container named {dep.get('containerName')!r}"))
            elif dep.get("condition") == "HEALTHY" and not target.get("healthCheck"):
                found.append(Finding("depends-on", f"{where}.dependsOn", f"{dep.get('containerName')} has no healthCheck to become HEALTHY"))
    sidecar = sidecar_of(td)
    if sidecar is not None:
        healthy = [d for d in sidecar.get("dependsOn") or [] if d.get("condition") == "HEALTHY"]
        if not healthy:
            found.append(Finding("depends-on", "sidecar.dependsOn",
                                 "the sidecar waits for the MCP server to be HEALTHY (and so stops first)"))
    # a cycle would keep the task from ever starting
    seen: dict[str, int] = {}

    def visit(name: str) -> bool:
        if seen.get(name) == 1:
            return True
        if seen.get(name) == 2 or name not in by_name:
            return False
        seen[name] = 1
        cyclic = any(visit(d.get("containerName")) for d in by_name[name].get("dependsOn") or [])
        seen[name] = 2
        return cyclic

    if any(visit(name) for name in list(by_name)):
        found.append(Finding("depends-on", "containerDefinitions[*].dependsOn", "dependency cycle"))
    return found


@_task_rule("no-ingress-ports")
def _no_ports(td: TaskDef) -> list[Finding]:
    return [Finding("no-ingress-ports", f"{where}.portMappings",
                    "no port mappings: the tailnet is the only way in, through the sidecar")
            for where, c in _containers(td) if c.get("portMappings")]


def _env_of(container: dict[str, Any]) -> dict[str, str]:
    return {str(e.get("name")): str(e.get("value")) for e in container.get("environment") or []}


@dataclass(frozen=True)
class OurServer:
    """A server of ours in a task: its image, the variables that place it, their defaults."""

    name: str
    image: str
    host_variable: str
    port_variable: str
    default_host: str  # what it listens on when the env says nothing (its settings module)
    alias: str  # the loopback alias the shipped task definitions give it


INSPECTOR = OurServer("inspector", INSPECTOR_IMAGE, "INSPECTOR_HOST", "INSPECTOR_PORT", "127.0.0.1", "127.0.0.3")
HUB = OurServer("hub", HUB_IMAGE, "HUB_HOST", "HUB_PORT", "127.0.0.3", "127.0.0.3")


def _placed(td: TaskDef, server: OurServer) -> list[tuple[str, str, str]]:
    """(where, host, port) of each container running `server`'s image."""
    out = []
    for where, c in _containers(td):
        if server.image in str(c.get("image", "")).rsplit("/", 1)[-1]:
            env = _env_of(c)
            out.append((where, env.get(server.host_variable, server.default_host), env.get(server.port_variable, "8080")))
    return out


def _reachable_past_the_gateway(host: str) -> bool:
    """127.0.0.1/::1 (the userspace forwarder dials them), a wildcard, the gateway's own alias, a
    name, or anything not loopback: a server of ours there is reachable without the gateway."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    return ip.is_unspecified or not ip.is_loopback or host in FORWARDER_TARGETS + (GATEWAY_ALIAS,)


def _points_at(url: str, host: str, port: str) -> bool:
    """Whether the sidecar's upstream URL is exactly http://host:port (a trailing / allowed)."""
    parts = urlsplit(url)
    try:
        url_port = str(parts.port or 80)
    except ValueError:
        return False
    return (parts.scheme, parts.hostname, url_port, parts.path, parts.query) in {("http", host, port, p, "") for p in ("", "/")}


@_task_rule("upstream-address")
def _upstream_address(td: TaskDef) -> list[Finding]:
    """The MCP server stays on loopback; ours on an alias the userspace forwarder never dials.

    With mcp-hub in the task the sidecar forwards to the hub (HUB_HOST:HUB_PORT) and the hub
    to the inspector: both must be off the forwarded addresses, and the sidecar must point at
    the hub, not past it (aimed at the inspector it would skip the hub's other servers; aimed
    anywhere else it forwards to whatever listens there).
    """
    sidecar = sidecar_of(td)
    if sidecar is None:
        return []
    url = _env_of(sidecar).get("SIDECAR_UPSTREAM_URL", DEFAULT_UPSTREAM)
    host_of_url = urlsplit(url).hostname
    try:
        loopback = host_of_url == "localhost" or ipaddress.ip_address(host_of_url or "").is_loopback
    except ValueError:
        loopback = False
    found = []
    if not loopback:  # reported once; the servers' own addresses are still checked below
        found.append(Finding("upstream-address", "sidecar.environment[SIDECAR_UPSTREAM_URL]",
                             f"{url!r}: the MCP server listens on loopback in the task (an address on the task's "
                             f"ENI is reachable from the VPC, past the sidecar)"))
    placed = {server: _placed(td, server) for server in (HUB, INSPECTOR)}
    front = HUB if placed[HUB] else INSPECTOR  # whom the sidecar forwards to
    for server, places in placed.items():
        for where, host, port in places:
            if _reachable_past_the_gateway(host):
                found.append(Finding("upstream-address", f"{where}.environment[{server.host_variable}]",
                                     f"{host!r}: userspace tailscaled forwards every unserved tailnet port to "
                                     f"127.0.0.1, so the {server.name} listens on a loopback alias of its own "
                                     f"({server.alias}), not 127.0.0.1, ::1, a wildcard or the gateway's "
                                     f"{GATEWAY_ALIAS}"))
            elif server is front and loopback and not _points_at(url, host, port):
                found.append(Finding("upstream-address", "sidecar.environment[SIDECAR_UPSTREAM_URL]",
                                     f"{url!r} is not where the {server.name} listens ({host}:{port})"))
    return found


#: What an entry of the inspector's clusters may hold on Fargate: EKS clusters only (no kubeconfig
#: file exists in the task; `kubeconfig`/`context` would name files or contexts nobody provides).
FARGATE_CLUSTER_KEYS = frozenset({"name", "eks_cluster", "region", "role_arn"})


def _inspectors(td: TaskDef) -> list[tuple[str, dict[str, Any]]]:
    return [(w, c) for w, c in _containers(td) if INSPECTOR_IMAGE in str(c.get("image", "")).rsplit("/", 1)[-1]]


def _clusters_entries(value: str) -> list[Any] | None:
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    if not isinstance(doc, dict) or set(doc) != {"clusters"} or not isinstance(doc["clusters"], list):
        return None
    return doc["clusters"]


def cluster_roles(td: TaskDef) -> set[str]:
    """The IAM roles the inspector's clusters name (what the task role may assume)."""
    roles = set()
    for _where, c in _inspectors(td):
        for entry in _clusters_entries(_env_of(c).get(CLUSTERS_JSON_VARIABLE, "")) or []:
            if isinstance(entry, dict) and isinstance(entry.get("role_arn"), str):
                roles.add(entry["role_arn"])
    return roles


def inspector_clusters(td: TaskDef) -> list[Finding]:
    """--cluster: the JSON is well formed, EKS entries only, written by CLUSTERS_ENTRYPOINT to where
    INSPECTOR_CLUSTERS points (a hand edit that drops either leaves the inspector one cluster or none).
    Not a TASK_RULE: it concerns only a task rendered with --cluster (validate runs it on each)."""
    found = []
    for where, c in _inspectors(td):
        env = _env_of(c)
        if CLUSTERS_JSON_VARIABLE not in env and "INSPECTOR_CLUSTERS" not in env:
            continue
        entries = _clusters_entries(env.get(CLUSTERS_JSON_VARIABLE, ""))
        if entries is None:
            found.append(Finding("inspector-clusters", f"{where}.environment[{CLUSTERS_JSON_VARIABLE}]",
                                 'a JSON object {"clusters": [...]}, as render --cluster writes it'))
            continue
        for i, entry in enumerate(entries):
            extra = sorted(set(entry) - FARGATE_CLUSTER_KEYS) if isinstance(entry, dict) else ["(not a mapping)"]
            if extra or not isinstance(entry, dict) or "eks_cluster" not in entry:
                found.append(Finding("inspector-clusters", f"{where}.environment[{CLUSTERS_JSON_VARIABLE}].clusters[{i}]",
                                     f"EKS entries only on Fargate (name, eks_cluster, region, role_arn); not {extra}"))
        if env.get("INSPECTOR_CLUSTERS") != CLUSTERS_FILE or c.get("entryPoint") != CLUSTERS_ENTRYPOINT:
            found.append(Finding("inspector-clusters", f"{where}.entryPoint",
                                 f"the clusters file is written at start to {CLUSTERS_FILE} (INSPECTOR_CLUSTERS) by "
                                 f"render's entryPoint; re-render with --cluster"))
    return found


@_task_rule("readonly-root")
def _readonly_root(td: TaskDef) -> list[Finding]:
    found = []
    volumes = {v.get("name") for v in td.get("volumes", [])}
    for where, c in _containers(td):
        if c.get("readonlyRootFilesystem") is not True:
            found.append(Finding("readonly-root", where, "readonlyRootFilesystem true; give writable paths a task volume"))
        for mp in c.get("mountPoints") or []:
            if mp.get("sourceVolume") not in volumes:
                found.append(Finding("readonly-root", f"{where}.mountPoints", f"volume {mp.get('sourceVolume')!r} is not declared"))
    return found


@_task_rule("stop-timeout")
def _stop_timeout(td: TaskDef) -> list[Finding]:
    found = []
    for where, c in _containers(td):
        if "stopTimeout" in c and not 0 < int(c["stopTimeout"]) <= FARGATE_MAX_STOP_TIMEOUT:
            found.append(Finding("stop-timeout", f"{where}.stopTimeout", f"Fargate allows 1..{FARGATE_MAX_STOP_TIMEOUT} s"))
    sidecar = sidecar_of(td)
    if sidecar is not None and int(sidecar.get("stopTimeout", 30)) < SIDECAR_MIN_STOP_TIMEOUT:
        found.append(Finding("stop-timeout", "sidecar.stopTimeout",
                             f"at least {SIDECAR_MIN_STOP_TIMEOUT} s so tailscaled logs out / saves state before SIGKILL"))
    return found


@_task_rule("state-dir")
def _state_dir(td: TaskDef) -> list[Finding]:
    sidecar = sidecar_of(td) or {}
    state = next((e.get("value") for e in sidecar.get("environment") or [] if e.get("name") == "TS_STATE_DIR"), None)
    if not state:
        return []
    efs = {v.get("name") for v in td.get("volumes", []) if v.get("efsVolumeConfiguration")}
    for mp in sidecar.get("mountPoints") or []:
        if mp.get("containerPath") == state and mp.get("sourceVolume") in efs:
            return []
    return [Finding("state-dir", "sidecar.environment[TS_STATE_DIR]",
                    "state outside EFS dies with the task; drop TS_STATE_DIR (ephemeral) or mount EFS there")]


@_service_rule("public-ip")
def _public_ip(svc: dict[str, Any]) -> list[Finding]:
    vpc = (svc.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
    if vpc.get("assignPublicIp") != "DISABLED":
        return [Finding("public-ip", "networkConfiguration.awsvpcConfiguration.assignPublicIp",
                        f"must be DISABLED (explicitly), got {vpc.get('assignPublicIp')!r}")]
    return []


@_service_rule("private-network")
def _private_network(svc: dict[str, Any]) -> list[Finding]:
    vpc = (svc.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
    found = []
    if not vpc.get("subnets"):
        found.append(Finding("private-network", "awsvpcConfiguration.subnets", "name the private subnets"))
    if not vpc.get("securityGroups"):
        found.append(Finding("private-network", "awsvpcConfiguration.securityGroups",
                             "name a security group with no inbound rules (the VPC default group admits its members)"))
    return found


@_service_rule("no-load-balancer")
def _no_lb(svc: dict[str, Any]) -> list[Finding]:
    if svc.get("loadBalancers"):
        return [Finding("no-load-balancer", "loadBalancers", "no load balancer: the server is reachable only over the tailnet")]
    return []


@_service_rule("fargate-launch")
def _fargate_launch(svc: dict[str, Any]) -> list[Finding]:
    providers = [p.get("capacityProvider") for p in svc.get("capacityProviderStrategy") or []]
    if svc.get("launchType") == "FARGATE" or (providers and all(p in ("FARGATE", "FARGATE_SPOT") for p in providers)):
        return []
    return [Finding("fargate-launch", "launchType", "launch on FARGATE")]


@_service_rule("single-node")
def _single_node(svc: dict[str, Any]) -> list[Finding]:
    found = []
    if int(svc.get("desiredCount", 1)) > 1:
        found.append(Finding("single-node", "desiredCount", "one task per tailnet hostname (a second one becomes hostname-1)"))
    max_pct = int((svc.get("deploymentConfiguration") or {}).get("maximumPercent", 200))
    if max_pct > 100:
        found.append(Finding("single-node", "deploymentConfiguration.maximumPercent",
                             "100: the old task leaves the tailnet before the new one joins under the same name"))
    return found


@_service_rule("exec-disabled")
def _exec(svc: dict[str, Any]) -> list[Finding]:
    if svc.get("enableExecuteCommand"):
        return [Finding("exec-disabled", "enableExecuteCommand", "ECS Exec is a side door into the task; keep it off")]
    return []


def check_task_definition(td: TaskDef) -> list[Finding]:
    return [f for rule in TASK_RULES.values() for f in rule(td)]


def check_service(svc: dict[str, Any]) -> list[Finding]:
    return [f for rule in SERVICE_RULES.values() for f in rule(svc)]
