"""Several clusters behind one inspector: a configured name -> its own Inspector, built on first use.

A caller picks a cluster only by a name from the operator's INSPECTOR_CLUSTERS file (or
`default`, the single-cluster settings). The context, EKS cluster, region and IAM role behind a
name come from that file, never from the call, so no argument can point the server at another
cluster or make it assume another role (awslabs/mcp declined caller-chosen cross-account roles
for the same blast-radius reason). Each cluster has its own client, discovery cache and AWS
session, so one that cannot be built or does not answer fails only its own calls.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Any

from eks_inspector import kube
from eks_inspector.clusters_config import DEFAULT_CLUSTER, ClusterSpec
from eks_inspector.config import ConfigError, Settings
from eks_inspector.deadline import remaining
from eks_inspector.discovery import Discovery
from eks_inspector.errors import InspectorError

if TYPE_CHECKING:
    from eks_inspector.context import Inspector

#: A cluster that could not be built is not tried again sooner than this (a caller retrying in
#: a loop must not turn into an AssumeRole/DescribeCluster storm).
RETRY_AFTER = 5.0
#: The session name CloudTrail shows for the server's AssumeRole calls.
ROLE_SESSION_NAME = "eks-inspector"


def aws_session(region: str, role_arn: str | None, timeout: float) -> Any:
    """A boto3 session for one cluster's region, with the configured role's credentials (assumed
    from the ambient ones on first use, refreshed before they expire), every client bounded by
    the call timeout."""
    import boto3
    import botocore.session
    from botocore.config import Config
    from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

    config = Config(connect_timeout=min(timeout, 10), read_timeout=timeout, retries={"max_attempts": 2})

    def core_session() -> Any:
        s = botocore.session.Session()
        s.set_config_variable("region", region)
        s.set_default_client_config(config)
        return s

    core = core_session()
    if role_arn:
        source = core_session()
        ambient = source.get_credentials()
        if ambient is None:
            raise InspectorError(f"no AWS credentials to assume {role_arn} with")
        fetcher = AssumeRoleCredentialFetcher(client_creator=source.create_client, source_credentials=ambient,
                                              role_arn=role_arn, extra_args={"RoleSessionName": ROLE_SESSION_NAME})
        # botocore has no public setter for a session's credentials; this is how its own
        # assume-role profiles end up (a refreshable credentials object on the session)
        core._credentials = DeferredRefreshableCredentials(refresh_using=fetcher.fetch_credentials,
                                                           method="assume-role")
    return boto3.Session(botocore_session=core)


def cluster_settings(base: Settings, spec: ClusterSpec) -> Settings:
    """The single-cluster settings that describe `spec` (everything else as configured)."""
    return dataclasses.replace(
        base, auth="kubeconfig" if spec.via_kubeconfig else "eks",
        kubeconfig=spec.kubeconfig or base.kubeconfig, kube_context=spec.context,
        eks_cluster=spec.eks_cluster, aws_region=spec.region, clusters=())


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, (InspectorError, ConfigError)) else text


class Registry:
    """The configured clusters; `inspector(name)` is what a tool call runs against."""

    def __init__(self, default: Inspector) -> None:
        self.default = default
        self.specs = {s.name: s for s in default.settings.clusters}
        self._built: dict[str, Inspector] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self._locks = {name: threading.Lock() for name in self.specs}
        default.clusters = self

    @property
    def names(self) -> list[str]:
        return [DEFAULT_CLUSTER, *self.specs]

    def spec(self, name: str) -> ClusterSpec | None:
        return self.specs.get(name)

    def inspector(self, name: str | None) -> Inspector:
        """The Inspector of a configured cluster; InspectorError for an unknown name or one that
        cannot be built (that cluster's error only)."""
        if name is None or name == DEFAULT_CLUSTER:
            return self.default
        spec = self.specs.get(name) if isinstance(name, str) else None
        if spec is None:
            shown = str(name)[:100]
            raise InspectorError(f"unknown cluster {shown!r}: this server serves {', '.join(self.names)} "
                                 f"(the clusters tool lists them)")
        built = self._built.get(name)
        if built is not None:
            return built
        lock = self._locks[name]
        if not lock.acquire(timeout=remaining(self.default.settings.call_timeout, f"cluster {name}")):
            raise InspectorError(f"cluster {name}: still connecting; retry")
        try:
            if name in self._built:
                return self._built[name]
            failed = self._failed.get(name)
            if failed and time.monotonic() - failed[0] < RETRY_AFTER:
                raise InspectorError(failed[1])
            try:
                ins = self._build(spec)
            except Exception as exc:  # kubeconfig, STS or EKS failures: this cluster's error only
                message = f"cluster {name}: cannot connect: {_reason(exc)}"
                self._failed[name] = (time.monotonic(), message)
                raise InspectorError(message) from None
            self._failed.pop(name, None)
            self._built[name] = ins
            return ins
        finally:
            lock.release()

    def _build(self, spec: ClusterSpec) -> Inspector:
        from eks_inspector.context import Inspector

        base = self.default
        settings = cluster_settings(base.settings, spec)
        session = aws_session(spec.region, spec.role_arn, settings.call_timeout) if spec.region else None
        client = kube.connect(settings, session)
        return Inspector(settings, client, Discovery(client, settings.discovery_ttl), base.renderer,
                         clusters=self, aws=session)


def registry_of(ins: Inspector) -> Registry:
    """The Registry of `ins`'s clusters, made on first use (an Inspector built without one, as in tests)."""
    return ins.clusters if ins.clusters is not None else Registry(ins)


def pick(ins: Inspector, kwargs: dict[str, Any], eks_tool: bool) -> Inspector:
    """Take `cluster` (a configured name) out of a call's arguments and return that cluster's
    Inspector. An EKS tool is handed the EKS cluster name the operator configured for it,
    so its own `cluster` argument can never be set by the caller."""
    name = kwargs.pop("cluster", None)
    target = registry_of(ins).inspector(name)
    if eks_tool:
        if not target.settings.eks_cluster:
            shown = name or DEFAULT_CLUSTER
            raise InspectorError(f"cluster {shown!r} is not an EKS cluster: " + (
                "set INSPECTOR_EKS_CLUSTER" if shown == DEFAULT_CLUSTER else "its entry names no eks_cluster"))
        kwargs["cluster"] = target.settings.eks_cluster
    return target
