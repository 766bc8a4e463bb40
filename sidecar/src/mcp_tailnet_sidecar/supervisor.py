"""The entrypoint's process model: containerboot, the gateway, the health listener.

`run` (the image entrypoint) starts Tailscale's containerboot unchanged (it owns auth
keys, state, userspace/TUN, and applying the serve config file), the gateway (on a unix
socket as root, on a loopback alias as non-root: settings.GatewayListen) and the health
listener, then watches tailscaled until the node's DNS name is
known and renders the serve config for containerboot to apply.

`gateway` is the same minus containerboot, for a tailscaled someone else runs (the lab's
network-namespace tests, or a host install): it can apply the serve config itself.

Shutdown order on SIGTERM/SIGINT: the gateway stops accepting and drains (in-flight
tool calls finish, idle event streams end) within SIDECAR_DRAIN_TIMEOUT while tailscaled
still carries the answers; then containerboot gets SIGTERM (it saves state and stops
tailscaled); exit 0. Exit codes: 0 clean stop, 1 internal failure, 2 configuration
error, 3 containerboot could not be started, 4 a listener could not be created, and
otherwise containerboot's own code if it exits by itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from mcp_tailnet_sidecar import serveconfig
from mcp_tailnet_sidecar.access import CAPABILITY
from mcp_tailnet_sidecar.exposure import ExposureMonitor
from mcp_tailnet_sidecar.funnel import RefuseFunnel
from mcp_tailnet_sidecar.gateway import Gateway, GatewayConfig
from mcp_tailnet_sidecar.health import HealthApp
from mcp_tailnet_sidecar.identity import IdentityResolver
from mcp_tailnet_sidecar.localapi import LocalAPI, LocalAPIError
from mcp_tailnet_sidecar.metrics import Metrics
from mcp_tailnet_sidecar.names import NodeNames
from mcp_tailnet_sidecar.serving import Server, make_server, tcp_socket, unix_socket
from mcp_tailnet_sidecar.settings import Settings

logger = logging.getLogger("mcp_tailnet_sidecar")

EXIT_OK, EXIT_INTERNAL, EXIT_CONFIG, EXIT_CONTAINERBOOT, EXIT_LISTENER = 0, 1, 2, 3, 4
CONTAINERBOOT_STOP_SECONDS = 30.0  # containerboot waits up to 25 s for a state write
NAME_POLL_SECONDS = 2.0


def containerboot_env(settings: Settings, base: dict[str, str]) -> dict[str, str]:
    """containerboot's environment: the user's TS_* unchanged, plus what we own."""
    env = dict(base)
    env["TS_SERVE_CONFIG"] = str(settings.serve_config)
    env["TS_SOCKET"] = str(settings.ts_socket)
    env["TS_USERSPACE"] = "true" if settings.userspace else "false"
    if settings.hostname:
        env["TS_HOSTNAME"] = settings.hostname
    extra = env.get("TS_EXTRA_ARGS", "").split()
    if settings.login_server and not any(a.startswith("--login-server") for a in extra):
        extra.append(f"--login-server={settings.login_server}")
    if settings.tags and not any(a.startswith("--advertise-tags") for a in extra):
        extra.append(f"--advertise-tags={','.join(settings.tags)}")
    env["TS_EXTRA_ARGS"] = " ".join(extra)
    if settings.no_logs_no_support:
        env["TS_NO_LOGS_NO_SUPPORT"] = "true"
        daemon = env.get("TS_TAILSCALED_EXTRA_ARGS", "").split()
        if "--no-logs-no-support" not in daemon:
            daemon.append("--no-logs-no-support")
        env["TS_TAILSCALED_EXTRA_ARGS"] = " ".join(daemon)
    return env


class Sidecar:
    """The gateway, its health app and the name watcher, wired from Settings."""

    def __init__(self, settings: Settings, *, publish_serve: str = "file") -> None:
        self.settings = settings
        self.publish_serve = publish_serve  # "file" (containerboot applies), "localapi", or "none"
        self.metrics = Metrics()
        self.localapi = LocalAPI(settings.ts_socket)
        self.gateway = Gateway(
            GatewayConfig.from_settings(settings),
            names=NodeNames(extra=settings.allowed_hosts),
            resolver=IdentityResolver(whois=self.localapi.whois),
            metrics=self.metrics,
        )
        self.wanted_serve: dict[str, Any] | None = None
        self.exposure = ExposureMonitor(self.localapi, self.metrics.registry, upstream_url=settings.upstream_url,
                                        accept_risk=settings.accept_upstream_exposure, served=self.served_ports)
        self.health = HealthApp(self.metrics, {
            "tailnet": self._check_tailnet,
            "serve": self._check_serve,
            "upstream": self._check_upstream,
            "exposure": self.exposure.check,
        })
        self._upstream_probe = httpx.AsyncClient(timeout=2.0)

    # -- readiness checks ------------------------------------------------------------

    async def _check_tailnet(self) -> tuple[bool, str]:
        status = await self.localapi.status()
        state = status.get("BackendState")
        return state == "Running", f"BackendState={state}"

    def served_ports(self) -> list[int]:
        """The tailnet ports serve answers on (80, and 443 with HTTPS certs)."""
        if self.wanted_serve is None:
            return [80]
        return sorted(int(port) for port in self.wanted_serve["TCP"])

    async def _check_serve(self) -> tuple[bool, str]:
        if self.wanted_serve is None:
            return False, "the node's DNS name is not known yet, no serve config rendered"
        live = await self.localapi.serve_config()
        if funnel := serveconfig.funnel(live):
            return False, (f"Funnel is on for {', '.join(funnel)}: the server would be on the public internet; "
                           f"turn it off (`tailscale funnel reset`); the gateway refuses Funnel requests")
        if serveconfig.applied(live, self.wanted_serve):
            return True, f"serving {', '.join(self.wanted_serve['Web'])}"
        return False, ("tailscaled has not applied the rendered serve config yet"
                       + (f" (with AcceptAppCaps {CAPABILITY})" if self.settings.tailnet_grants else ""))

    async def _check_upstream(self) -> tuple[bool, str]:
        try:
            resp = await self._upstream_probe.get(self.settings.upstream_url + "/")
        except httpx.HTTPError as exc:
            return False, f"{self.settings.upstream_url}: {type(exc).__name__}"
        return True, f"{self.settings.upstream_url} answered HTTP {resp.status_code}"

    # -- names and serve config --------------------------------------------------------

    async def watch_names(self) -> None:
        """Poll tailscaled; when our DNS name is known (or changes), update the gateway
        and publish the serve config."""
        last_error = ""
        while True:
            try:
                status = await self.localapi.status()
                last_error = ""
            except LocalAPIError as exc:
                if str(exc) != last_error:
                    logger.info("waiting for tailscaled: %s", exc)
                    last_error = str(exc)
                await asyncio.sleep(0.5)
                continue
            names = NodeNames.from_status(status, extra=self.settings.allowed_hosts)
            if names.dns_name and names.backend_state == "Running":
                self.gateway.names = names
                wanted = serveconfig.render(names.dns_name, self.settings.gateway_listen.proxy, https=names.https,
                                            accept_caps=(CAPABILITY,) if self.settings.tailnet_grants else ())
                if wanted != self.wanted_serve:
                    await self._publish(wanted)
                    self.wanted_serve = wanted
                    logger.info("serve config rendered for %s", names.dns_name,
                                extra={"dns_name": names.dns_name, "https": names.https,
                                       "ips": list(names.ips), "published": self.publish_serve})
            await asyncio.sleep(NAME_POLL_SECONDS if self.wanted_serve else 0.5)

    async def _publish(self, config: dict[str, Any]) -> None:
        if self.publish_serve == "file":
            serveconfig.write(self.settings.serve_config, config)
        elif self.publish_serve == "localapi":
            await self.localapi.set_serve_config(config)

    async def aclose(self) -> None:
        await self._upstream_probe.aclose()
        await self.localapi.aclose()


async def _serve(server: Server, sockets: list) -> None:
    await server.serve(sockets=sockets)


def _listeners(settings: Settings) -> tuple[list, list]:
    listen = settings.gateway_listen
    if listen.kind == "unix":
        assert listen.path is not None
        gateway_sockets = [unix_socket(listen.path)]
    else:
        assert listen.host is not None and listen.port is not None
        try:
            gateway_sockets = [tcp_socket(listen.host, listen.port)]
        except OSError as exc:
            raise OSError(exc.errno, f"SIDECAR_GATEWAY_LISTEN={listen}: {exc.strerror}") from None
    health_sockets = [unix_socket(settings.health_socket)]
    if settings.health_listen is not None:
        health_sockets.append(tcp_socket(*settings.health_listen))
    return gateway_sockets, health_sockets


async def _pump_lines(stream: asyncio.StreamReader, secret: str | None) -> None:
    """Re-emit containerboot's plain-text lines as JSON log lines (key redacted, always)."""
    log = logging.getLogger("containerboot")
    while line := await stream.readline():
        text = line.decode("utf-8", errors="replace").rstrip()
        if secret:
            text = text.replace(secret, "[redacted]")
        log.info(text)


async def run(settings: Settings, *, with_containerboot: bool = True, publish_serve: str = "file") -> int:
    sidecar = Sidecar(settings, publish_serve=publish_serve)
    try:
        gateway_sockets, health_sockets = _listeners(settings)
    except OSError as exc:
        logger.error("cannot create a listener: %s", exc)
        return EXIT_LISTENER
    if with_containerboot:
        settings.serve_config.parent.mkdir(parents=True, exist_ok=True)  # containerboot watches this dir

    gateway_server = make_server(RefuseFunnel(sidecar.gateway), drain_timeout=settings.drain_timeout)
    health_server = make_server(sidecar.health, drain_timeout=1.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    proc: asyncio.subprocess.Process | None = None
    tasks: list[asyncio.Task] = []
    if with_containerboot:
        secret = settings.authkey if settings.authkey and not settings.authkey.startswith("file:") else None
        try:
            proc = await asyncio.create_subprocess_exec(
                settings.containerboot, env=containerboot_env(settings, dict(os.environ)),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            logger.error("cannot start containerboot (%s): %s; set SIDECAR_CONTAINERBOOT to its path",
                         settings.containerboot, exc.strerror or exc)
            return EXIT_CONTAINERBOOT
        assert proc.stdout is not None and proc.stderr is not None
        tasks += [asyncio.create_task(_pump_lines(proc.stdout, secret)),
                  asyncio.create_task(_pump_lines(proc.stderr, secret))]

    gateway_task = asyncio.create_task(_serve(gateway_server, gateway_sockets))
    health_task = asyncio.create_task(_serve(health_server, health_sockets))
    watch_task = asyncio.create_task(sidecar.watch_names())
    exposure_task = asyncio.create_task(sidecar.exposure.watch())
    if settings.gateway_listen.kind == "unix" and os.geteuid() != 0:
        logger.warning("the gateway listens on a unix socket as uid %s: tailscaled applies a serve config "
                       "that proxies to a unix socket only for root; leave SIDECAR_GATEWAY_LISTEN=auto",
                       os.geteuid())
    logger.info("sidecar started", extra={"gateway_listen": str(settings.gateway_listen),
                                          "health_socket": str(settings.health_socket),
                                          "upstream": settings.upstream_url,
                                          "policy": str(settings.policy_file) if settings.policy_file else None,
                                          "tailnet_grants": settings.tailnet_grants,
                                          "server_name": settings.server_name})

    waiters: dict[asyncio.Future, str] = {asyncio.ensure_future(stop.wait()): "signal",
                                          gateway_task: "gateway", health_task: "health"}
    if proc is not None:
        waiters[asyncio.ensure_future(proc.wait())] = "containerboot"
    done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    reason = waiters[next(iter(done))]
    code = EXIT_OK
    if reason == "signal":
        logger.info("signal %s: draining for up to %s s", received[0] if received else "?", settings.drain_timeout)
    elif reason == "containerboot":
        assert proc is not None
        code = proc.returncode or EXIT_INTERNAL
        logger.error("containerboot exited by itself with code %s; stopping", proc.returncode)
    else:
        code = EXIT_INTERNAL
        logger.error("the %s listener stopped unexpectedly; stopping", reason)

    # 1. drain the gateway while tailscaled still carries answers
    started = time.monotonic()
    sidecar.gateway.drain()
    gateway_server.should_exit = True
    try:
        await asyncio.wait_for(asyncio.shield(gateway_task), settings.drain_timeout + 5)
    except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - reported, shutdown continues
        if not isinstance(exc, asyncio.TimeoutError):
            logger.error("gateway stopped with an error: %r", exc)
        gateway_task.cancel()
    logger.info("gateway drained in %.1f s", time.monotonic() - started)
    watch_task.cancel()
    exposure_task.cancel()
    # 2. stop containerboot (it writes state and stops tailscaled)
    if proc is not None and proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), CONTAINERBOOT_STOP_SECONDS)
        except asyncio.TimeoutError:
            logger.error("containerboot did not stop within %s s; killing it", CONTAINERBOOT_STOP_SECONDS)
            proc.kill()
            await proc.wait()
    # 3. the health listener last, so probes see us until the end
    health_server.should_exit = True
    try:
        await asyncio.wait_for(health_task, 5)
    except (asyncio.TimeoutError, Exception):  # noqa: BLE001
        health_task.cancel()
    for t in tasks:
        t.cancel()
    await sidecar.aclose()
    for path in (settings.gateway_listen.path, settings.health_socket):
        if path is not None:
            Path(path).unlink(missing_ok=True)
    logger.info("stopped", extra={"exit_code": code})
    return code

