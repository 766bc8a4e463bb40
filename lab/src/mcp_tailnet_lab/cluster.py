"""A real local Kubernetes control plane: etcd + kube-apiserver, envtest-style.

No kubelet, scheduler or controller-manager: tests exercise what the API server
itself does (authentication, RBAC, impersonation with an audit log, admission incl. PodSecurity, pods/log proxying
to a node's kubelet endpoint). Every cluster gets fresh ports, a fresh CA and a
temp dir, all removed by stop(), so parallel test runs never collide.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import kubernetes.client
import kubernetes.config
import yaml
from kubernetes.client.rest import ApiException

from mcp_tailnet_lab import pki
from mcp_tailnet_lab.headscale import _log_events as json_lines  # one reader of JSON-lines logs
from mcp_tailnet_lab.paths import MissingComponent, binary, versions
from mcp_tailnet_lab.ports import free_port

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
_KUBERNETES_SERVICE_IP = "10.0.0.1"
_SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
_STOP_GRACE_S = 15.0
_LOG_TAIL_LINES = 30
#: The API server's audit policy: who did what (Metadata: no request or response bodies),
#: once per request (ResponseComplete only), without the loopback client and health probes.
_AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "users": ["system:apiserver"]},
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*"]},
        {"level": "Metadata"},
    ],
}
_AUDIT_MAX_MB = 50


class ClusterStartError(RuntimeError):
    """etcd or kube-apiserver did not come up; the message names which and why."""


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; unlike CalledProcessError, str() includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()}"


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _stop_process(proc: subprocess.Popen | None) -> None:
    """SIGTERM, wait a bounded time, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=_STOP_GRACE_S)


@dataclass
class LocalCluster:
    """A running etcd + kube-apiserver pair; use start() and stop() (or `with`)."""

    server: str
    ca_file: Path
    kubeconfig: Path
    version: str
    workdir: Path
    _kubectl: Path
    _etcd: subprocess.Popen | None = field(default=None, repr=False)
    _apiserver: subprocess.Popen | None = field(default=None, repr=False)
    _admin: pki.KeyPair | None = field(default=None, repr=False)
    _token_kubeconfigs: int = field(default=0, repr=False)

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def start(cls, *, bind_address: str = "127.0.0.1", ready_timeout_s: float = 180.0) -> LocalCluster:
        """Start etcd and kube-apiserver and wait until the API server is ready.

        Raises MissingComponent naming every lab binary that is not provisioned,
        ClusterStartError (with the component's log tail) if one does not come up.
        """
        bins, missing = {}, []
        for name in ("etcd", "kube-apiserver", "kubectl"):
            try:
                bins[name] = binary(name)
            except MissingComponent as exc:
                missing.append(str(exc))
        if missing:
            raise MissingComponent("local cluster cannot start: " + "; ".join(missing))

        workdir = Path(tempfile.mkdtemp(prefix="mcp-tailnet-k8s-"))
        cluster = cls(
            server="", ca_file=workdir / "pki" / "ca.crt", kubeconfig=workdir / "admin.kubeconfig",
            version="", workdir=workdir, _kubectl=bins["kubectl"],
        )
        atexit.register(cluster.stop)
        try:
            cluster._write_pki(bind_address)
            etcd_url = cluster._start_etcd(bins["etcd"])
            cluster._start_apiserver(bins["kube-apiserver"], etcd_url, bind_address, ready_timeout_s)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd, and remove the temp dir. Safe to call twice."""
        _stop_process(self._apiserver)
        _stop_process(self._etcd)
        shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use ------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the lab-built kubectl (same minor as the server) as admin unless told otherwise."""
        argv = [str(self._kubectl), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        env = {**os.environ, "KUBECACHEDIR": str(self.workdir / "kubectl-cache")}
        env.pop("KUBECONFIG", None)
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, ["kubectl", *args], proc.stdout, proc.stderr)
        return proc

    def api_client(self) -> kubernetes.client.ApiClient:
        """A Python client authenticated as the admin (O=system:masters)."""
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def mint_token(self, namespace: str, service_account: str, expiration_seconds: int = 3600) -> str:
        """A bound ServiceAccount token from the TokenRequest API; creates the SA if missing.

        Nothing creates default ServiceAccounts here (no controller-manager), hence the create.
        """
        if expiration_seconds < 600:
            raise ValueError("expiration_seconds must be at least 600 (TokenRequest minimum)")
        with self.api_client() as api:
            core = kubernetes.client.CoreV1Api(api)
            try:
                core.create_namespaced_service_account(
                    namespace, kubernetes.client.V1ServiceAccount(
                        metadata=kubernetes.client.V1ObjectMeta(name=service_account)))
            except ApiException as exc:
                if exc.status != 409:  # 409: it exists already, fine
                    raise
            request = kubernetes.client.AuthenticationV1TokenRequest(
                spec=kubernetes.client.V1TokenRequestSpec(
                    audiences=[_SA_ISSUER], expiration_seconds=expiration_seconds))
            response = core.create_namespaced_service_account_token(service_account, namespace, request)
        return response.status.token

    @property
    def audit_log(self) -> Path:
        """The API server's audit log: one JSON event per line (audit.k8s.io/v1 Event)."""
        return self.workdir / "audit.log"

    def audit_events(self) -> list[dict]:
        """Every audit event logged so far (a line cut by a concurrent write is skipped)."""
        return json_lines(self.audit_log)

    def kubeconfig_for_token(self, token: str, path: Path | None = None) -> Path:
        """A kubeconfig (mode 0600, CA embedded) that authenticates with a bearer token."""
        if not token:
            raise ValueError("token is empty")
        if path is None:
            self._token_kubeconfigs += 1
            path = self.workdir / f"token-{self._token_kubeconfigs}.kubeconfig"
        self._write_kubeconfig(path, "token-user", {"token": token})
        return path

    # -- internals -----------------------------------------------------------------

    @property
    def _pki(self) -> Path:
        return self.workdir / "pki"

    def _write_pki(self, bind_address: str) -> None:
        self._pki.mkdir(mode=0o700)
        ca = pki.CertificateAuthority()
        self.ca_file.write_bytes(ca.cert_pem)
        ca.issue(
            "kube-apiserver", server=True,
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local"),
            ip_addresses=tuple(dict.fromkeys(("127.0.0.1", bind_address, _KUBERNETES_SERVICE_IP))),
        ).write(self._pki / "apiserver.crt", self._pki / "apiserver.key")
        admin = ca.issue("lab-admin", organizations=("system:masters",), client=True)
        admin.write(self._pki / "admin.crt", self._pki / "admin.key")
        pki.signing_key().write(self._pki / "sa.pub", self._pki / "sa.key")
        self._admin = admin

    def _write_kubeconfig(self, path: Path, user: str, credentials: dict[str, str]) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": {
                "server": self.server, "certificate-authority-data": _b64(self.ca_file.read_bytes())}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
            "current-context": "lab",
        }
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _start_etcd(self, etcd: Path, attempts: int = 3) -> str:
        """Start etcd on free loopback ports (retrying if a port was taken meanwhile)."""
        log = self.workdir / "etcd.log"
        for attempt in range(1, attempts + 1):
            client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
            data = self.workdir / f"etcd-data-{attempt}"
            with log.open("ab") as out:
                self._etcd = subprocess.Popen(
                    [str(etcd), "--name=lab", f"--data-dir={data}",
                     f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                     f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                     f"--initial-cluster=lab={peer}", "--unsafe-no-fsync", "--log-level=warn"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                )
            if self._wait_etcd(client, timeout_s=30.0):
                return client
            _stop_process(self._etcd)
        raise ClusterStartError(f"etcd did not become healthy after {attempts} attempts; log tail:\n{_tail(log)}")

    def _wait_etcd(self, client_url: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._etcd is None or self._etcd.poll() is not None:
                return False
            try:
                if httpx.get(f"{client_url}/health", timeout=2.0).json().get("health") == "true":
                    return True
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        return False

    def _start_apiserver(self, apiserver: Path, etcd_url: str, bind_address: str, timeout_s: float) -> None:
        port = free_port(bind_address)
        self.server = f"https://{bind_address}:{port}"
        log = self.workdir / "kube-apiserver.log"
        p = self._pki
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(_AUDIT_POLICY, sort_keys=False))
        args = [
            str(apiserver),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={bind_address}", f"--advertise-address={bind_address}", f"--secure-port={port}",
            f"--cert-dir={p}", f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--service-account-issuer={_SA_ISSUER}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            # No controller-manager creates default ServiceAccounts, so their admission would
            # reject every pod. PodSecurity and the rest of the defaults stay on.
            "--disable-admission-plugins=ServiceAccount",
            # pods/log is proxied to the node's InternalIP + kubelet port; with no kubelet CA
            # configured the API server skips verifying the kubelet's serving cert.
            "--kubelet-preferred-address-types=InternalIP",
            # The default reconciler would publish the loopback advertise address as the
            # `kubernetes` Service's endpoint, which validation rejects (an error every 10 s).
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",  # as on EKS; PodSecurity decides per namespace
            "--profiling=false",
            f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
            f"--audit-log-maxsize={_AUDIT_MAX_MB}", "--audit-log-maxbackup=1",
        ]
        with log.open("ab") as out:
            self._apiserver = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        assert self._admin is not None
        self._write_kubeconfig(self.kubeconfig, "lab-admin", {
            "client-certificate-data": _b64(self._admin.cert_pem), "client-key-data": _b64(self._admin.key_pem)})
        self._wait_apiserver(log, timeout_s)

    def _wait_apiserver(self, log: Path, timeout_s: float) -> None:
        """Poll /readyz, then until the bootstrap namespaces exist (both bounded)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self._pki / "admin.crt"), str(self._pki / "admin.key"))
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        with httpx.Client(base_url=self.server, verify=ctx, timeout=5.0) as http:
            while True:
                if self._apiserver is not None and self._apiserver.poll() is not None:
                    raise ClusterStartError(
                        f"kube-apiserver exited with {self._apiserver.returncode}; log tail:\n{_tail(log)}")
                if time.monotonic() > deadline:
                    raise ClusterStartError(
                        f"kube-apiserver not ready after {timeout_s:.0f}s ({last}); log tail:\n{_tail(log)}")
                try:
                    ready = http.get("/readyz")
                    last = f"/readyz {ready.status_code}"
                    if ready.status_code == 200:
                        names = {ns["metadata"]["name"] for ns in http.get("/api/v1/namespaces").json()["items"]}
                        if {"default", "kube-system"} <= names:
                            self.version = http.get("/version").json()["gitVersion"]
                            return
                        last = f"bootstrap namespaces not there yet (have {sorted(names)})"
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.5)


def delete_namespace(core: kubernetes.client.CoreV1Api, name: str, timeout_s: float = 30.0) -> None:
    """Delete a namespace for good.

    No controller-manager runs, so nothing empties a Terminating namespace and removes
    its `kubernetes` finalizer; we clear the finalizer ourselves (its leftover objects
    die with the session's etcd).
    """
    try:
        core.delete_namespace(name)
        ns = core.read_namespace(name)
        ns.spec.finalizers = []
        core.replace_namespace_finalize(name, ns)
    except ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.2)
    raise TimeoutError(f"namespace {name} still exists {timeout_s:.0f}s after deletion")


def expected_version() -> str:
    """The Kubernetes version lab/versions.env pins (what the server must report)."""
    return versions()["KUBERNETES_VERSION"]
