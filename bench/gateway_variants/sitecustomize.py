"""Bench only: undo or add one speed step in a gateway process, so that every step is timed
against the same code in one run (bench/gateway_steps.py puts this directory first on the
gateway's PYTHONPATH; Python imports `sitecustomize` at start-up).

BENCH_GATEWAY_STEPS is a comma list of:
  no-sniffio  `import sniffio` fails after searching sys.path, as before sniffio was a dependency
  h11         uvicorn's h11 parser instead of httptools (as before httptools was a dependency)
  uvloop      the process runs on uvloop (the CLI's `serving.run` does that when uvloop is installed)
  no-uvloop   asyncio's own loop even where uvloop is installed (the image ships without it)
  upstream-client  the gateway talks to its upstream through upstream_client.UpstreamClient instead
              of httpx.AsyncClient (what gateway.py's `client` property builds for a plain-http upstream)
  httpx       httpx.AsyncClient for every upstream, as before gateway.py used UpstreamClient
"""

from __future__ import annotations

import os
import sys

STEPS = {s for s in os.environ.get("BENCH_GATEWAY_STEPS", "").split(",") if s}


class _NoSniffio:
    """Make `import sniffio` fail the way it did when it was not installed: after a full search."""

    @staticmethod
    def find_spec(name, path=None, target=None):  # noqa: ANN001, ANN205 - importlib's finder protocol
        if name != "sniffio":
            return None
        from importlib.machinery import PathFinder

        PathFinder.find_spec(name, [p for p in sys.path if "site-packages" not in p])
        raise ModuleNotFoundError("No module named 'sniffio' (bench: no-sniffio)", name=name)


if "no-sniffio" in STEPS:
    sys.meta_path.insert(0, _NoSniffio())

if "h11" in STEPS:
    from mcp_tailnet_sidecar import serving

    serving.http_protocol = lambda: "h11"

if "uvloop" in STEPS:
    import asyncio

    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

if "no-uvloop" in STEPS:
    from mcp_tailnet_sidecar import serving

    serving.loop_factory = lambda: None

if "httpx" in STEPS:
    from mcp_tailnet_sidecar import gateway

    gateway.supports = lambda url: False  # the client property then builds httpx.AsyncClient

if "upstream-client" in STEPS:
    from mcp_tailnet_sidecar import gateway, upstream_client

    def _client(self):  # noqa: ANN001, ANN202 - replaces Gateway.client for this process
        if self._client is None:
            self._client = upstream_client.UpstreamClient(self.upstream,
                                                          connect_timeout=self.config.connect_timeout)
        return self._client

    gateway.Gateway.client = property(_client)

for step in STEPS - {"no-sniffio", "h11", "uvloop", "no-uvloop", "upstream-client", "httpx"}:
    raise SystemExit(f"BENCH_GATEWAY_STEPS: unknown step {step!r}")
