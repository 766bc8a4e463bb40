"""The one place that talks to the Kubernetes API server.

Raw GETs through the official client's ApiClient (its auth, TLS and token refresh), so
every request can set its own Accept header (server-side Table, metadata-only lists)
and timeout, and every failure becomes an InspectorError naming what was refused.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from eks_inspector import caller
from eks_inspector.config import ConfigError, Impersonate, Settings
from eks_inspector.deadline import remaining
from eks_inspector.errors import InspectorError, Op, from_status

log = logging.getLogger(__name__)

ACCEPT_JSON = "application/json"
ACCEPT_TABLE = "application/json;as=Table;g=meta.k8s.io;v=v1,application/json"
ACCEPT_METADATA = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
ACCEPT_DISCOVERY = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
)

Query = Sequence[tuple[str, str]]


def _segment(value: str, what: str) -> str:
    """One path segment from the caller. The HTTP client resolves dot segments, so a name
    like `../../other/configmaps/x` would otherwise leave the namespace allow-list."""
    if value in (".", "..") or "/" in value or "%" in value:
        raise InspectorError(f"{what} {value[:100]!r} is not a valid Kubernetes name")
    return quote(value, safe="")


def api_path(group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        base += f"/namespaces/{_segment(namespace, 'namespace')}"
    base += f"/{plural}"
    if name:
        base += f"/{_segment(name, 'name')}"
    if subresource:
        base += f"/{subresource}"
    return base


class Kube:
    """A thin, thread-safe JSON client with per-request timeouts.

    With `impersonate`, every request is made as the tool call's caller (caller.acting()),
    except those run under caller.as_inspector(); a request with no caller is refused here,
    the one place every Kubernetes request passes, so no code path can fall back to our own
    identity by forgetting to set one.
    """

    def __init__(self, api_client: k8s.ApiClient, timeout: float, identity: str = "",
                 impersonate: bool = False) -> None:
        self.api = api_client
        self.timeout = timeout
        self.identity = identity
        self.impersonate = impersonate

    def _as_whom(self) -> caller.Caller | None:
        """The caller this request impersonates (None: the inspector's own identity)."""
        if not self.impersonate:
            return None
        who = caller.acting()
        if who is caller.INSPECTOR:
            return None
        if not isinstance(who, caller.Caller):
            raise InspectorError(caller.REFUSED_NO_IDENTITY)
        return who

    def _request(self, path: str, query: Query, accept: str, op: Op, timeout: float | None) -> bytes:
        import urllib3

        who = self._as_whom()
        t = remaining(timeout or self.timeout, f"{op.verb} {op.qualified}")
        try:
            method, url, headers, _body, _post = self.api.param_serialize(
                "GET", path, query_params=list(query), header_params={"Accept": accept},
                auth_settings=["BearerToken"],
            )
            if who is not None:
                # one Impersonate-Group header per group: a dict cannot repeat a name
                headers = urllib3.HTTPHeaderDict(headers)
                for name, value in caller.impersonation_headers(who):
                    headers.add(name, value)
            resp = self.api.call_api(method, url, header_params=headers, _request_timeout=(min(t, 10.0), t))
            data = resp.read()
        except k8s.ApiException as exc:
            if exc.status:
                raise from_status(exc.status, exc.body, op, who) from None
            reason = " ".join(str(exc.reason).split())[:200]
            raise InspectorError(f"{op.verb} {op.qualified}: cannot reach the API server ({reason})") from None
        except urllib3.exceptions.HTTPError as exc:
            kind = (f"did not answer within {t:.1f}s (INSPECTOR_CALL_TIMEOUT is {self.timeout:g}s)"
                    if "timed out" in str(exc).lower() else "is unreachable")
            raise InspectorError(f"{op.verb} {op.qualified}: the API server {kind}") from None
        if not 200 <= resp.status <= 299:
            raise from_status(resp.status, data, op, who)
        return data

    def get(self, path: str, op: Op, query: Query = (), accept: str = ACCEPT_JSON,
            timeout: float | None = None) -> dict[str, Any]:
        data = self._request(path, query, accept, op, timeout)
        try:
            doc = json.loads(data)
        except ValueError:
            raise InspectorError(f"{op.verb} {op.qualified}: the API server answered with something not JSON") from None
        if not isinstance(doc, dict):
            raise InspectorError(f"{op.verb} {op.qualified}: unexpected answer from the API server")
        return doc

    def get_text(self, path: str, op: Op, query: Query = (), timeout: float | None = None) -> str:
        return self._request(path, query, "*/*", op, timeout).decode("utf-8", "replace")


def _configuration(settings: Settings, session: Any = None) -> tuple[k8s.Configuration, str]:
    """Build the client configuration for the configured auth mode; raise ConfigError on failure.
    `session`: the boto3 session EKS is reached with (a configured cluster's region and role)."""
    cfg = k8s.Configuration()
    mode = settings.auth
    if mode == "auto":
        if settings.eks_cluster:
            mode = "eks"
        elif os.environ.get("KUBERNETES_SERVICE_HOST") and not (settings.kubeconfig or os.environ.get("KUBECONFIG")):
            mode = "in-cluster"
        else:
            mode = "kubeconfig"
    if mode == "in-cluster":
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)
        except k8s_config.ConfigException as exc:
            raise ConfigError(f"INSPECTOR_AUTH: in-cluster config unavailable: {exc}") from None
        return cfg, "in-cluster service account"
    if mode == "eks":
        from eks_inspector import eks_auth

        assert settings.eks_cluster and settings.aws_region
        try:
            endpoint = eks_auth.cluster_endpoint(settings.eks_cluster, settings.aws_region, session)
            token = eks_auth.mint_token(settings.eks_cluster, settings.aws_region, session)
        except Exception as exc:  # botocore raises many types; one line is what matters
            raise ConfigError(f"INSPECTOR_EKS_CLUSTER: cannot reach EKS cluster {settings.eks_cluster!r}: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        cfg.host = endpoint.server
        if endpoint.ca_data:
            cfg.ca_cert_data = endpoint.ca_data
        cfg.api_key = {"BearerToken": token.token}
        cfg.api_key_prefix = {"BearerToken": "Bearer"}
        state = {"minted": time.time()}
        lock = threading.Lock()

        def refresh(c: k8s.Configuration) -> None:
            with lock:
                if time.time() - state["minted"] < eks_auth.REFRESH_AFTER:
                    return
                fresh = eks_auth.mint_token(settings.eks_cluster or "", settings.aws_region or "", session)
                c.api_key = {"BearerToken": fresh.token}
                state["minted"] = time.time()

        cfg.refresh_api_key_hook = refresh
        return cfg, f"EKS cluster {settings.eks_cluster} ({settings.aws_region})"
    path = str(settings.kubeconfig) if settings.kubeconfig else None
    try:
        k8s_config.load_kube_config(config_file=path, context=settings.kube_context, client_configuration=cfg,
                                    persist_config=False)
    except (k8s_config.ConfigException, OSError, TypeError, ValueError) as exc:
        var = "INSPECTOR_KUBECONFIG" if settings.kubeconfig else "KUBECONFIG"
        raise ConfigError(f"{var}: cannot load kubeconfig: {' '.join(str(exc).split())[:200]}") from None
    return cfg, f"kubeconfig {path or os.environ.get('KUBECONFIG', '~/.kube/config')}"


def connect(settings: Settings, session: Any = None) -> Kube:
    cfg, identity = _configuration(settings, session)
    cfg.connection_pool_maxsize = 16
    cfg.retries = False
    return Kube(k8s.ApiClient(cfg), settings.call_timeout, identity,
                impersonate=settings.impersonate is Impersonate.CALLER)
