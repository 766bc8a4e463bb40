"""Prometheus metrics of the gateway, in a registry of its own (one per gateway instance)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self.requests = Counter("mcp_gateway_requests", "HTTP requests handled by the gateway",
                                ["route", "method", "status"], registry=r)
        self.tool_calls = Counter("mcp_gateway_tool_calls", "MCP tools/call requests by outcome",
                                  ["outcome"], registry=r)
        self.refused = Counter("mcp_gateway_refused", "Requests the gateway refused before relaying, by reason",
                               ["reason"], registry=r)
        self.sse_streams = Gauge("mcp_gateway_sse_streams_open", "Event streams being relayed now",
                                 registry=r)
        self.upstream_latency = Histogram(
            "mcp_gateway_upstream_latency_seconds", "Time until the upstream MCP server sent response headers",
            ["route"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

    def of(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, remembered: finding a child costs more than counting on it,
        and a relayed call counts three times. Every label set is bounded (routes, methods
        httptools parses, statuses, outcomes, reasons), so the memo is too."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
