"""Every setting of the inspector, read from the environment and validated in one place.

A bad value stops the process before it listens, with one line naming the variable,
so a typo in a manifest fails the pod at start instead of at the first tool call.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from eks_inspector.clusters_config import ClusterSpec
from eks_inspector.clusters_config import parse as parse_clusters

TRANSPORTS = ("sse", "streamable-http")
AUTH_MODES = ("auto", "kubeconfig", "in-cluster", "eks")
#: Hard ceiling for one tool answer: the 2.x client refuses SSE events over 1 MiB and
#: proxies cap a `data:` line there too, so even the largest cap stays far below it.
MAX_OUTPUT_CAP = 256 * 1024
MIN_OUTPUT_CAP = 4 * 1024
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOST_PATTERN = re.compile(r"^[A-Za-z0-9.\-\[\]:*]+$")


class ConfigMapValues(enum.StrEnum):
    """What answers show of a ConfigMap's values (INSPECTOR_CONFIGMAP_VALUES)."""

    SUMMARY = "summary"  # each key with its size: config often carries credentials by mistake
    SHOW = "show"  # the values, still scrubbed for credential-shaped text


class Impersonate(enum.StrEnum):
    """Whose identity Kubernetes requests carry (INSPECTOR_IMPERSONATE)."""

    OFF = "off"  # the inspector's own (its ServiceAccount / IAM role)
    CALLER = "caller"  # the tailnet caller's, via Kubernetes impersonation (docs/access-kubernetes.md)


class ConfigError(ValueError):
    """A setting is invalid; str() is the one line printed at start."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    transports: tuple[str, ...] = TRANSPORTS
    output_cap: int = 64 * 1024
    namespaces: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    call_timeout: float = 20.0
    discovery_ttl: float = 300.0
    shutdown_grace: float = 10.0
    auth: str = "auto"
    kubeconfig: Path | None = None
    kube_context: str | None = None
    eks_cluster: str | None = None
    aws_region: str | None = None
    eks_tools: str = "auto"
    log_level: str = "INFO"
    configmap_values: ConfigMapValues = ConfigMapValues.SUMMARY
    clusters: tuple[ClusterSpec, ...] = ()  # INSPECTOR_CLUSTERS: more clusters besides `default`
    impersonate: Impersonate = Impersonate.OFF

    def namespace_allowed(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw.strip().replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name}: expected an integer between {lo} and {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: must be between {lo} and {hi}, got {value}")
    return value


def _size(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    m = re.fullmatch(r"\s*(\d+)\s*([KkMm]i?[Bb]?)?\s*", raw)
    if not m:
        raise ConfigError(f"{name}: expected a byte count like 65536 or 64KiB, got {raw!r}")
    value = int(m.group(1))
    unit = (m.group(2) or "").lower()
    if unit.startswith("k"):
        value *= 1024
    elif unit.startswith("m"):
        value *= 1024 * 1024
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: must be between {lo} and {hi} bytes, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip().lower().removesuffix("s")
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}: expected seconds (e.g. 20 or 2.5s), got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: must be between {lo:g} and {hi:g} seconds, got {value:g}")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise ConfigError(f"{name}: must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every INSPECTOR_* variable (plus KUBECONFIG / AWS_REGION fallbacks)."""
    env = os.environ if env is None else env

    host = env.get("INSPECTOR_HOST", "").strip() or "127.0.0.1"
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"INSPECTOR_HOST: expected an IP address or 'localhost', got {host!r}") from None
    port = _int(env, "INSPECTOR_PORT", 8080, 1, 65535)

    transports = _list(env, "INSPECTOR_TRANSPORTS") or TRANSPORTS
    for t in transports:
        if t not in TRANSPORTS:
            raise ConfigError(f"INSPECTOR_TRANSPORTS: unknown transport {t!r} (known: {', '.join(TRANSPORTS)})")

    output_cap = _size(env, "INSPECTOR_OUTPUT_CAP", 64 * 1024, MIN_OUTPUT_CAP, MAX_OUTPUT_CAP)

    namespaces = _list(env, "INSPECTOR_NAMESPACES")
    for ns in namespaces:
        if not _DNS_LABEL.match(ns):
            raise ConfigError(f"INSPECTOR_NAMESPACES: {ns!r} is not a valid namespace name")

    allowed_hosts = _list(env, "INSPECTOR_ALLOWED_HOSTS")
    for h in allowed_hosts:
        if not _HOST_PATTERN.match(h):
            raise ConfigError(f"INSPECTOR_ALLOWED_HOSTS: {h!r} is not a host[:port] pattern")
    allowed_origins = _list(env, "INSPECTOR_ALLOWED_ORIGINS")
    for o in allowed_origins:
        if not re.match(r"^https?://[A-Za-z0-9.\-\[\]:*]+$", o):
            raise ConfigError(f"INSPECTOR_ALLOWED_ORIGINS: {o!r} is not an http(s)://host[:port] origin")

    call_timeout = _seconds(env, "INSPECTOR_CALL_TIMEOUT", 20.0, 0.5, 600)
    discovery_ttl = _seconds(env, "INSPECTOR_DISCOVERY_TTL", 300.0, 0, 86400)
    shutdown_grace = _seconds(env, "INSPECTOR_SHUTDOWN_GRACE", 10.0, 0, 300)

    auth = _choice(env, "INSPECTOR_AUTH", "auto", AUTH_MODES)
    kubeconfig_raw = env.get("INSPECTOR_KUBECONFIG", "").strip()
    kubeconfig: Path | None = None
    if kubeconfig_raw:
        kubeconfig = Path(kubeconfig_raw)
        if not kubeconfig.is_file():
            raise ConfigError(f"INSPECTOR_KUBECONFIG: no such file {kubeconfig_raw!r}")
    kube_context = env.get("INSPECTOR_KUBE_CONTEXT", "").strip() or None

    eks_cluster = env.get("INSPECTOR_EKS_CLUSTER", "").strip() or None
    if eks_cluster and not re.fullmatch(r"[0-9A-Za-z][A-Za-z0-9\-_]{0,99}", eks_cluster):
        raise ConfigError(f"INSPECTOR_EKS_CLUSTER: {eks_cluster!r} is not a valid EKS cluster name")
    aws_region = (
        env.get("INSPECTOR_AWS_REGION", "").strip()
        or env.get("AWS_REGION", "").strip()
        or env.get("AWS_DEFAULT_REGION", "").strip()
        or None
    )
    if aws_region and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", aws_region):
        raise ConfigError(f"INSPECTOR_AWS_REGION: {aws_region!r} is not an AWS region name")
    if auth == "eks" and not eks_cluster:
        raise ConfigError("INSPECTOR_EKS_CLUSTER: required when INSPECTOR_AUTH=eks")
    if (auth == "eks" or (auth == "auto" and eks_cluster)) and not aws_region:
        raise ConfigError("INSPECTOR_AWS_REGION: required to reach EKS cluster (or set AWS_REGION)")
    eks_tools = _choice(env, "INSPECTOR_EKS_TOOLS", "auto", ("auto", "on", "off"))

    log_level = env.get("INSPECTOR_LOG_LEVEL", "").strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"INSPECTOR_LOG_LEVEL: must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")

    configmap_values = ConfigMapValues(_choice(env, "INSPECTOR_CONFIGMAP_VALUES", ConfigMapValues.SUMMARY,
                                               tuple(ConfigMapValues)))

    clusters_file = env.get("INSPECTOR_CLUSTERS", "").strip()
    try:
        clusters = parse_clusters(Path(clusters_file)) if clusters_file else ()
    except ValueError as exc:
        raise ConfigError(f"INSPECTOR_CLUSTERS: {exc}") from None

    return Settings(
        host=host,
        port=port,
        transports=transports,
        output_cap=output_cap,
        namespaces=namespaces,
        allowed_hosts=allowed_hosts,
        allowed_origins=allowed_origins,
        call_timeout=call_timeout,
        discovery_ttl=discovery_ttl,
        shutdown_grace=shutdown_grace,
        auth=auth,
        kubeconfig=kubeconfig,
        kube_context=kube_context,
        eks_cluster=eks_cluster,
        aws_region=aws_region,
        eks_tools=eks_tools,
        log_level=log_level,
        configmap_values=configmap_values,
        clusters=clusters,
        impersonate=Impersonate(_choice(env, "INSPECTOR_IMPERSONATE", Impersonate.OFF.value,
                                        tuple(m.value for m in Impersonate))),
    )
