"""Bench only: undo or add one speed step in a gateway process, so that every step is timed
against the same code in one run (bench/gateway_steps.py puts this directory first on the
gateway's PYTHONPATH; Python imports `sitecustomize` at start-up).

BENCH_GATEWAY_STEPS is a comma list of:
  no-sniffio  `import sniffio` fails after searching sys.path, as before sniffio was a dependency
  h11         uvicorn's h11 parser instead of httptools (as before httptools was a dependency)
  uvloop      the process runs on uvloop (what `serving.run` does once the CLI calls it)
  upstream-client  the gateway talks to its upstream through upstream_client.UpstreamClient instead
              of httpx.AsyncClient (what gateway.py's `client` property would build; also used to run
              tests/sidecar against it: `PYTHONPATH=bench/gateway_variants BENCH_GATEWAY_STEPS=upstream-client`)
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

if "upstream-client" in STEPS:
    from mcp_tailnet_sidecar import gateway, upstream_client

    def _client(self):  # noqa: ANN001, ANN202 - replaces Gateway.client for this process
        if self._client is None:
            self._client = upstream_client.UpstreamClient(self.upstream,
                                                          connect_timeout=self.config.connect_timeout)
        return self._client

    gateway.Gateway.client = property(_client)

for step in STEPS - {"no-sniffio", "h11", "uvloop", "upstream-client"}:
    raise SystemExit(f"BENCH_GATEWAY_STEPS: unknown step {step!r}")
