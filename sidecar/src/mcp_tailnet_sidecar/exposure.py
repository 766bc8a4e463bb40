"""Keeps the packet-filter verdict (packetfilter.py) current in readiness, /metrics and the log.

Readiness asks on every /readyz; the watcher asks every few seconds as well, because not
every deployment polls /readyz (the ECS task's health check is `probe alive`) and a
policy change must reach the log and /metrics anyway. The log gets one line per change
of verdict, not one per poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Gauge

from mcp_tailnet_sidecar import packetfilter
from mcp_tailnet_sidecar.localapi import LocalAPI, LocalAPIError
from mcp_tailnet_sidecar.packetfilter import Exposure

logger = logging.getLogger("mcp_tailnet_sidecar")
WATCH_SECONDS = 5.0


class ExposureMonitor:
    def __init__(self, localapi: LocalAPI, registry: CollectorRegistry, *, upstream_url: str, accept_risk: bool,
                 served: Callable[[], Sequence[int]]) -> None:
        self.localapi = localapi
        self.upstream_url = upstream_url
        self.accept_risk = accept_risk
        self.served = served
        self.last: Exposure | None = None
        self._known = Gauge("mcp_sidecar_packet_filter_known",
                            "1 when the node's tailnet packet filter could be read", registry=registry)
        self._unserved = Gauge("mcp_sidecar_tailnet_unserved_tcp_ports",
                               "TCP ports of this node beyond the served ones that some tailnet peer may open",
                               registry=registry)
        self._exposed = Gauge("mcp_sidecar_upstream_reachable_past_serve",
                              "1 when peers may reach the upstream through userspace loopback forwarding",
                              registry=registry)

    async def assess(self) -> Exposure:
        try:
            status = await self.localapi.status()
            matches = await self.localapi.packet_filter()
        except LocalAPIError as exc:
            verdict = packetfilter.unknown(str(exc), self.upstream_url, self.accept_risk)
        else:
            verdict = packetfilter.assess(matches, status, served=self.served(), upstream_url=self.upstream_url,
                                          accept_risk=self.accept_risk)
        self._record(verdict)
        return verdict

    async def check(self) -> tuple[bool, str]:
        """The readiness check."""
        verdict = await self.assess()
        return verdict.ok, verdict.detail

    def _record(self, verdict: Exposure) -> None:
        self._known.set(1 if verdict.known else 0)
        if verdict.known:
            self._unserved.set(packetfilter.count(verdict.unserved))
            self._exposed.set(1 if verdict.upstream_exposed else 0)
        previous, self.last = self.last, verdict
        if previous is not None and (previous.ok, previous.known, previous.unserved, previous.upstream_exposed) == (
                verdict.ok, verdict.known, verdict.unserved, verdict.upstream_exposed):
            return
        extra = {"event": "tailnet_exposure", "ready": verdict.ok, "packet_filter_known": verdict.known,
                 "unserved_ports": packetfilter.describe(verdict.unserved),
                 "upstream_exposed": verdict.upstream_exposed}
        if not verdict.known:
            logger.info("tailnet exposure unknown: %s", verdict.detail, extra=extra)
        elif not verdict.ok:
            logger.error("not ready: %s", verdict.detail, extra=extra)
        elif verdict.upstream_exposed or verdict.unserved:
            logger.warning("tailnet exposure: %s", verdict.detail, extra=extra)
        else:
            logger.info("tailnet exposure: %s", verdict.detail, extra=extra)

    async def watch(self, interval: float = WATCH_SECONDS) -> None:
        while True:
            try:
                await self.assess()
            except Exception as exc:  # noqa: BLE001 - a watcher that dies would freeze the gauges
                logger.error("exposure check failed: %r", exc)
            await asyncio.sleep(interval)
