"""Every environment variable the sidecar reads, validated in one place.

Why one place: a container that starts with a typo'd variable should stop at once with
one line naming that variable, not fail minutes later deep inside containerboot or on the
first client request. The auth key is only ever checked, never echoed: errors about it
name the variable (and a `file:` path), never the value.

Tailscale's own `TS_*` variables keep their containerboot meaning and are passed through
to it unchanged; ours are `SIDECAR_*`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mcp_tailnet_sidecar.policy import Policy, PolicyError, load_policy

# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107
DEFAULT_UPSTREAM = "http://127.0.0.1:8080"
DEFAULT_RUN_DIR = "/run/mcp-tailnet"
DEFAULT_TS_SOCKET = "/tmp/tailscaled.sock"  # containerboot's own default
# Non-root gateway address: a loopback alias, never 127.0.0.1 (see GatewayListen).
DEFAULT_GATEWAY_ALIAS = "127.0.0.2"
DEFAULT_GATEWAY_PORT = 9080

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", re.IGNORECASE)
_TAG = re.compile(r"^tag:[a-z0-9]([a-z0-9-]*[a-z0-9])?$", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A bad or missing variable; `str()` is the one line to print."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


class Secret(str):
    """A string that never shows its value in repr/format-by-repr (auth keys)."""

    def __repr__(self) -> str:
        return "Secret('<redacted>')"


@dataclass(frozen=True)
class GatewayListen:
    """Where the gateway listens, and so what serve proxies to.

    A unix socket when the sidecar runs as root: no TCP port at all. As non-root a unix
    socket cannot be used: tailscaled (v1.102, ipn/localapi/serve.go
    `authorizeServeConfigForGOOSAndUserContext`) accepts a serve config proxying to
    `unix:` only from a root LocalAPI caller (ipn/ipnserver/actor.go `connIsLocalAdmin`).
    Then the gateway takes a TCP port on a loopback ALIAS (127.0.0.2 by default): the
    userspace forwarder rewrites every unserved tailnet connection to 127.0.0.1:<port>
    (wgengine/netstack/netstack.go, `dialIP = ipv4Loopback`), never to another 127/8
    address, and in TUN mode the kernel delivers no outside packet to a loopback
    address. So the only way from the tailnet to the alias is serve itself.
    """

    kind: str  # "unix" or "tcp"
    path: Path | None = None
    host: str | None = None
    port: int | None = None

    @property
    def proxy(self) -> str:
        """serve's `Proxy` value for this listener."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"http://{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"tcp:{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    # Tailscale / containerboot side
    authkey: Secret | None = None
    hostname: str | None = None
    tags: tuple[str, ...] = ()
    userspace: bool = True
    state_dir: Path | None = None
    kube_secret: str | None = None
    ts_socket: Path = Path(DEFAULT_TS_SOCKET)
    login_server: str | None = None
    no_logs_no_support: bool = True
    containerboot: str = "containerboot"
    # Gateway side
    upstream_url: str = DEFAULT_UPSTREAM
    gateway_socket: Path = Path(DEFAULT_RUN_DIR) / "gateway.sock"
    gateway_listen: GatewayListen = GatewayListen("unix", path=Path(DEFAULT_RUN_DIR) / "gateway.sock")
    health_socket: Path = Path(DEFAULT_RUN_DIR) / "health.sock"
    health_listen: tuple[str, int] | None = None
    serve_config: Path = Path(DEFAULT_RUN_DIR) / "serve" / "serve.json"
    policy_file: Path | None = None
    policy: Policy | None = field(default=None, compare=False)
    tailnet_grants: bool = False  # SIDECAR_TAILNET_GRANTS: tools from the tailnet policy's grants (access.py)
    server_name: str | None = None  # SIDECAR_SERVER_NAME; None: the first label of the node's tailnet name
    allowed_hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ("/sse", "/messages/", "/mcp")
    max_body_bytes: int = 4 * 1024 * 1024
    max_event_bytes: int = 16 * 1024 * 1024
    connect_timeout: float = 5.0
    request_timeout: float = 300.0
    keepalive_interval: float = 15.0
    drain_timeout: float = 20.0
    log_level: str = "info"
    # Gateway bounds (sidecar/README.md "Limits"): 0 per source means no per-source limit.
    body_read_timeout: float = 30.0
    max_concurrent_per_source: int = 64
    max_json_response_bytes: int = 64 * 1024 * 1024
    max_pending: int = 1000
    accept_upstream_exposure: bool = False  # SIDECAR_ACCEPT_UPSTREAM_EXPOSURE (packetfilter.py)


@dataclass(frozen=True)
class Number:
    """A numeric gateway setting: its Settings field (whose default is the only one), variable and minimum."""

    field: str
    variable: str
    minimum: float
    integer: bool = False


# GatewayConfig (gateway.py) takes its defaults from Settings too: one source per default.
NUMBERS = (
    Number("max_body_bytes", "SIDECAR_MAX_BODY_BYTES", 1024, integer=True),
    Number("max_event_bytes", "SIDECAR_MAX_EVENT_BYTES", 1024, integer=True),
    Number("connect_timeout", "SIDECAR_CONNECT_TIMEOUT", 0.1),
    Number("request_timeout", "SIDECAR_REQUEST_TIMEOUT", 1.0),
    Number("keepalive_interval", "SIDECAR_KEEPALIVE_INTERVAL", 0.0),
    Number("drain_timeout", "SIDECAR_DRAIN_TIMEOUT", 0.0),
    Number("body_read_timeout", "SIDECAR_BODY_READ_TIMEOUT", 0.1),
    Number("max_concurrent_per_source", "SIDECAR_MAX_CONCURRENT_PER_SOURCE", 0, integer=True),
    Number("max_json_response_bytes", "SIDECAR_MAX_JSON_RESPONSE_BYTES", 1024, integer=True),
    Number("max_pending", "SIDECAR_MAX_PENDING", 1, integer=True),
)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(name, f"must be true or false, got {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float, integer: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number of seconds"
        raise SettingsError(name, f"must be {kind}, got {raw!r}") from None
    if value < minimum or value != value:  # NaN check
        raise SettingsError(name, f"must be at least {minimum:g}, got {raw!r}")
    return value


def _abs_path(env: Mapping[str, str], name: str, default: str | None, *, socket: bool = False) -> Path | None:
    raw = env.get(name, "").strip() or default
    if raw is None:
        return None
    if not raw.startswith("/"):
        raise SettingsError(name, f"must be an absolute path, got {raw!r}")
    if socket and len(raw.encode()) > MAX_UNIX_SOCKET_PATH:
        raise SettingsError(name, f"unix socket path is longer than {MAX_UNIX_SOCKET_PATH} bytes")
    return Path(raw)


def _http_url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = env.get(name, "").strip() or default
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(name, f"must be an http:// or https:// URL with a host, got {raw!r}")
    try:
        parts.port
    except ValueError:
        raise SettingsError(name, f"has an invalid port: {raw!r}") from None
    if parts.query or parts.fragment:
        raise SettingsError(name, f"must not carry a query or fragment: {raw!r}")
    return raw.rstrip("/")


def _authkey(env: Mapping[str, str], required: bool) -> Secret | None:
    name = "TS_AUTHKEY" if env.get("TS_AUTHKEY") else "TS_AUTH_KEY"
    raw = (env.get("TS_AUTHKEY") or env.get("TS_AUTH_KEY") or "").strip()
    if not raw:
        if required:
            raise SettingsError(
                "TS_AUTHKEY",
                "is required (an auth key, or file:/path/to/key) when no saved node state exists; "
                "create one in the admin console or with `headscale preauthkeys create`",
            )
        return None
    if raw.startswith("file:"):
        path = Path(raw[len("file:") :])
        try:
            content = path.read_text().strip()
        except OSError as exc:
            raise SettingsError(name, f"cannot read key file {path}: {exc.strerror}") from None
        if not content:
            raise SettingsError(name, f"key file {path} is empty")
        if any(c.isspace() for c in content):
            raise SettingsError(name, f"key file {path} holds more than one word")
    elif any(c.isspace() for c in raw):
        raise SettingsError(name, "contains whitespace; the value looks garbled (not shown)")
    return Secret(raw)


def _state_exists(state_dir: Path | None) -> bool:
    return state_dir is not None and (state_dir / "tailscaled.state").is_file()


def _host_port(env: Mapping[str, str], name: str, userspace: bool) -> tuple[str, int] | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    host, sep, port_s = raw.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise SettingsError(name, f"must be IP:PORT, got {raw!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SettingsError(name, f"must be an IP address and port (the pod IP), got {raw!r}") from None
    if userspace and (ip.is_loopback or ip.is_unspecified):
        # docs/design.md fact 1: in userspace mode tailscaled forwards any unserved tailnet port to
        # 127.0.0.1, so a loopback or wildcard listener would be a way in from the tailnet.
        raise SettingsError(
            name,
            f"{raw!r} would be reachable from the tailnet in userspace mode (unserved tailnet ports are "
            "forwarded to loopback); bind the pod/task IP instead, or leave it empty and use the health socket",
        )
    return (str(ip), int(port_s))


def _gateway_alias(name: str, host: str, port_s: str) -> tuple[str, int]:
    """A TCP address for the gateway that no tailnet peer can reach except through serve."""
    raw = f"{host}:{port_s}"
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise SettingsError(name, f"tcp: needs ADDRESS:PORT with a port 1-65535, got {raw!r}")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise SettingsError(name, f"tcp: needs an IP address (a loopback alias such as "
                                  f"{DEFAULT_GATEWAY_ALIAS}), got {host!r}") from None
    if ip.is_unspecified:
        raise SettingsError(name, f"{raw!r} listens on every interface: reachable from the pod/task network "
                                  f"and, via the userspace forwarder, from the tailnet; use a loopback alias "
                                  f"such as {DEFAULT_GATEWAY_ALIAS}")
    if ip == ipaddress.ip_address("127.0.0.1"):
        raise SettingsError(name, f"{raw!r} is where userspace tailscaled forwards every unserved tailnet port "
                                  f"(a peer would bypass serve and forge identity headers); use a loopback "
                                  f"alias such as {DEFAULT_GATEWAY_ALIAS}")
    if ip == ipaddress.ip_address("::1"):
        raise SettingsError(name, f"{raw!r}: IPv6 has no loopback alias and tailscaled's forwarder dials ::1 too; "
                                  f"use an IPv4 loopback alias such as {DEFAULT_GATEWAY_ALIAS}")
    if ip.version != 4 or not ip.is_loopback:
        raise SettingsError(name, f"{raw!r} is not an IPv4 loopback alias (127.0.0.2-127.255.255.254): any "
                                  f"other address is reachable from outside the pod/task")
    return str(ip), int(port_s)


def _gateway_listen(env: Mapping[str, str], socket_path: Path, euid: int) -> GatewayListen:
    name = "SIDECAR_GATEWAY_LISTEN"
    raw = env.get(name, "").strip()
    kind, _, rest = raw.partition(":")
    if raw in ("", "auto"):
        kind, rest = ("unix" if euid == 0 else "tcp"), ""
    if kind == "unix":
        if not rest:
            return GatewayListen("unix", path=socket_path)
        path = _abs_path({name: rest}, name, None, socket=True)
        return GatewayListen("unix", path=path)
    if kind == "tcp":
        if not rest:
            return GatewayListen("tcp", host=DEFAULT_GATEWAY_ALIAS, port=DEFAULT_GATEWAY_PORT)
        host, sep, port_s = rest.rpartition(":")
        if not sep:
            raise SettingsError(name, f"tcp: needs ADDRESS:PORT, e.g. tcp:{DEFAULT_GATEWAY_ALIAS}:"
                                      f"{DEFAULT_GATEWAY_PORT}, got {raw!r}")
        host, port = _gateway_alias(name, host, port_s)
        return GatewayListen("tcp", host=host, port=port)
    raise SettingsError(name, f"must be auto, unix[:/path] or tcp[:127.0.0.x:PORT], got {raw!r}")


def _routes_cover(env: Mapping[str, str], address: str) -> str | None:
    """The variable whose advertised routes (or exit node) would route tailnet traffic to
    `address`: netstack dials subnet-routed destinations as they are, not via serve."""
    ip = ipaddress.ip_address(address)
    extra = env.get("TS_EXTRA_ARGS", "").split()
    if "--advertise-exit-node" in extra or "--advertise-exit-node=true" in extra:
        return "TS_EXTRA_ARGS"
    candidates = [("TS_ROUTES", env.get("TS_ROUTES", ""))]
    for i, arg in enumerate(extra):
        if arg.startswith("--advertise-routes="):
            candidates.append(("TS_EXTRA_ARGS", arg.split("=", 1)[1]))
        elif arg == "--advertise-routes" and i + 1 < len(extra):
            candidates.append(("TS_EXTRA_ARGS", extra[i + 1]))
    for variable, value in candidates:
        for route in (r.strip() for r in value.split(",") if r.strip()):
            try:
                if ip in ipaddress.ip_network(route, strict=False):
                    return variable
            except ValueError:
                continue  # containerboot reports malformed routes itself
    return None


# Tailscale settings that would open another listener to the tailnet (issue 12 §6; Funnel
# is refused by funnel.py and the readiness check): in userspace mode every loopback port is one the forwarder
# reaches (docs/design.md fact 1), and the sidecar is ingress only.
_PROXY_VARIABLES = ("TS_SOCKS5_SERVER", "TS_OUTBOUND_HTTP_PROXY_LISTEN")
_UP_FLAGS_REFUSED = {"--ssh": "Tailscale SSH on port 22", "--webclient": "the web client on port 5252"}
_DAEMON_FLAGS_REFUSED = ("--socks5-server", "--outbound-http-proxy-listen", "--debug")


def _flag_on(args: list[str], flag: str) -> bool:
    """Whether `flag` is given and not explicitly false (`--ssh`, `--ssh=true`, `--ssh true`)."""
    for i, arg in enumerate(args):
        if arg == flag:
            nxt = args[i + 1].lower() if i + 1 < len(args) else ""
            if nxt not in _FALSE:
                return True
        elif arg.startswith(flag + "=") and arg.split("=", 1)[1].strip().lower() not in _FALSE | {""}:
            return True
    return False


def _local_listener(name: str, raw: str, userspace: bool) -> None:
    """containerboot's health/metrics/debug listener: a loopback address the forwarder never dials."""
    host, sep, port_s = raw.strip().rpartition(":")
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise SettingsError(name, f"must be a loopback IP:PORT such as 127.0.0.3:9002, got {raw!r}") from None
    if not sep or not port_s.isdigit():
        raise SettingsError(name, f"must be a loopback IP:PORT such as 127.0.0.3:9002, got {raw!r}")
    if not ip.is_loopback:
        raise SettingsError(name, f"{raw!r} is not a loopback address: containerboot's health/metrics/debug "
                                  f"listener would be open beyond the pod/task (and on every interface for a "
                                  f"wildcard); use a loopback alias such as 127.0.0.3, or the sidecar's own "
                                  f"/metrics on SIDECAR_HEALTH_SOCKET / SIDECAR_HEALTH_LISTEN")
    if userspace and ip in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")):
        raise SettingsError(name, f"{raw!r} is where userspace tailscaled forwards every unserved tailnet port: "
                                  f"the listener would be on the tailnet; use a loopback alias such as 127.0.0.3")


def _refuse_tailnet_listeners(env: Mapping[str, str], userspace: bool) -> None:
    """Stop at settings that would open another listener (or Funnel) to the tailnet."""
    for name in _PROXY_VARIABLES:
        if env.get(name, "").strip():
            raise SettingsError(name, "would open a proxy listener; in userspace mode tailscaled forwards unserved "
                                      "tailnet ports to loopback, so tailnet peers could use it to reach the pod/task "
                                      "network as this node. The sidecar is ingress only: unset it")
    health = _bool(env, "TS_ENABLE_HEALTH_CHECK", False) or _bool(env, "TS_ENABLE_METRICS", False)
    if health:
        _local_listener("TS_LOCAL_ADDR_PORT", env.get("TS_LOCAL_ADDR_PORT", "").strip() or "[::]:9002", userspace)
    for name in ("TS_HEALTHCHECK_ADDR_PORT", "TS_DEBUG_ADDR_PORT"):
        if env.get(name, "").strip():
            _local_listener(name, env[name], userspace)
    up_args = env.get("TS_EXTRA_ARGS", "").split()
    for flag, service in _UP_FLAGS_REFUSED.items():
        if _flag_on(up_args, flag):
            raise SettingsError("TS_EXTRA_ARGS", f"{flag} opens {service} of the node's tailnet address, past "
                                                 f"serve and the gateway: remove it")
    daemon_args = env.get("TS_TAILSCALED_EXTRA_ARGS", "").split()
    for flag in _DAEMON_FLAGS_REFUSED:
        if any(a == flag or a.startswith(flag + "=") for a in daemon_args):
            raise SettingsError("TS_TAILSCALED_EXTRA_ARGS", f"{flag} opens another listener that userspace "
                                                            f"tailscaled's forwarder (or the pod network) reaches: "
                                                            f"remove it")


def _csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in env.get(name, "").split(",") if p.strip())


def load(env: Mapping[str, str] | None = None, *, mode: str = "run", euid: int | None = None) -> Settings:
    """Read and check the environment. `mode="run"` also needs the Tailscale side.
    `euid` (default: this process's) decides what SIDECAR_GATEWAY_LISTEN=auto means.

    Raises SettingsError naming the first bad variable.
    """
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    in_kubernetes = bool(env.get("KUBERNETES_SERVICE_HOST"))

    userspace = _bool(env, "TS_USERSPACE", True)
    state_dir = _abs_path(env, "TS_STATE_DIR", None)
    if state_dir is not None and mode == "run" and not state_dir.is_dir():
        raise SettingsError("TS_STATE_DIR", f"{state_dir} is not a directory (mount a volume there)")
    kube_secret = env.get("TS_KUBE_SECRET", "tailscale" if in_kubernetes else "").strip() or None
    if kube_secret is not None and not _LABEL.match(kube_secret.replace(".", "-")):
        raise SettingsError("TS_KUBE_SECRET", f"must be a Kubernetes Secret name, got {kube_secret!r}")

    authkey = _authkey(env, required=mode == "run" and not _state_exists(state_dir) and kube_secret is None)

    hostname = env.get("TS_HOSTNAME", "").strip() or None
    if hostname is None and mode == "run":
        raise SettingsError("TS_HOSTNAME", "is required: the tailnet name clients connect to (e.g. mcp-inspector)")
    if hostname is not None and not _LABEL.match(hostname):
        raise SettingsError(
            "TS_HOSTNAME", f"must be one DNS label (letters, digits, '-', at most 63), got {hostname!r}"
        )

    tags = _csv(env, "SIDECAR_TAGS")
    for tag in tags:
        if not _TAG.match(tag):
            raise SettingsError("SIDECAR_TAGS", f"each tag must look like tag:name, got {tag!r}")

    if mode == "run":
        _refuse_tailnet_listeners(env, userspace)

    if env.get("TS_SERVE_CONFIG", "").strip() and mode == "run":
        raise SettingsError(
            "TS_SERVE_CONFIG",
            "is managed by the sidecar (it renders the serve config from the node's DNS name); unset it",
        )

    policy_file = _abs_path(env, "SIDECAR_POLICY_FILE", None)
    policy = None
    if policy_file is not None:
        try:
            policy = load_policy(policy_file)
        except PolicyError as exc:
            raise SettingsError("SIDECAR_POLICY_FILE", str(exc)) from None

    tailnet_grants = _bool(env, "SIDECAR_TAILNET_GRANTS", False)
    server_name = env.get("SIDECAR_SERVER_NAME", "").strip().lower() or None
    if server_name is not None:
        if not tailnet_grants:
            raise SettingsError("SIDECAR_SERVER_NAME", "only names this server for tailnet grants' 'servers' globs; "
                                                       "set SIDECAR_TAILNET_GRANTS=true or unset it")
        if not _LABEL.match(server_name):
            raise SettingsError("SIDECAR_SERVER_NAME", f"must be one DNS label (letters, digits, '-', at most 63), "
                                                       f"got {server_name!r}")

    paths = _csv(env, "SIDECAR_PATHS") or Settings.paths
    for p in paths:
        if not p.startswith("/"):
            raise SettingsError("SIDECAR_PATHS", f"each path must start with '/', got {p!r}")

    allowed_hosts = tuple(h.lower().rstrip(".") for h in _csv(env, "SIDECAR_ALLOWED_HOSTS"))
    for h in allowed_hosts:
        if not all(_LABEL.match(label) for label in h.split(".")):
            raise SettingsError("SIDECAR_ALLOWED_HOSTS", f"not a DNS name: {h!r}")

    log_level = env.get("SIDECAR_LOG_LEVEL", "info").strip().lower() or "info"
    if log_level not in ("debug", "info", "warning", "error"):
        raise SettingsError("SIDECAR_LOG_LEVEL", f"must be debug, info, warning or error, got {log_level!r}")

    containerboot = env.get("SIDECAR_CONTAINERBOOT", "containerboot").strip() or "containerboot"

    gateway_socket = _abs_path(env, "SIDECAR_GATEWAY_SOCKET", f"{DEFAULT_RUN_DIR}/gateway.sock", socket=True)
    assert gateway_socket is not None
    gateway_listen = _gateway_listen(env, gateway_socket, euid)
    if gateway_listen.kind == "tcp" and (variable := _routes_cover(env, gateway_listen.host or "")):
        raise SettingsError(variable, f"advertises a route or exit node that covers the gateway's address "
                                      f"{gateway_listen.host}: tailnet peers could reach it without serve")

    return Settings(
        authkey=authkey,
        hostname=hostname,
        tags=tags,
        userspace=userspace,
        state_dir=state_dir,
        kube_secret=kube_secret,
        ts_socket=_abs_path(env, "TS_SOCKET", DEFAULT_TS_SOCKET, socket=True),  # type: ignore[arg-type]
        login_server=_http_url(env, "SIDECAR_LOGIN_SERVER", None),
        no_logs_no_support=_bool(env, "TS_NO_LOGS_NO_SUPPORT", True),
        containerboot=containerboot,
        upstream_url=_http_url(env, "SIDECAR_UPSTREAM_URL", DEFAULT_UPSTREAM),  # type: ignore[arg-type]
        gateway_socket=gateway_socket,
        gateway_listen=gateway_listen,
        health_socket=_abs_path(  # type: ignore[arg-type]
            env, "SIDECAR_HEALTH_SOCKET", f"{DEFAULT_RUN_DIR}/health.sock", socket=True
        ),
        health_listen=_host_port(env, "SIDECAR_HEALTH_LISTEN", userspace),
        serve_config=_abs_path(env, "SIDECAR_SERVE_CONFIG", f"{DEFAULT_RUN_DIR}/serve/serve.json"),  # type: ignore[arg-type]
        policy_file=policy_file,
        policy=policy,
        tailnet_grants=tailnet_grants,
        server_name=server_name,
        allowed_hosts=allowed_hosts,
        paths=paths,
        log_level=log_level,
        **{n.field: _number(env, n.variable, getattr(Settings, n.field), minimum=n.minimum, integer=n.integer)
           for n in NUMBERS},  # type: ignore[arg-type]
        accept_upstream_exposure=_bool(env, "SIDECAR_ACCEPT_UPSTREAM_EXPOSURE", False),
    )
