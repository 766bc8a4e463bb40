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
  The cuts of step 5 (each undone by its own key, so rows can add them one at a time):
  anyio-timeouts     anyio.fail_after cancel scopes instead of asyncio.timeout on the JSON path
  label-lookups      metric.labels(...) looked up on every count instead of Metrics.of's memo
  log-record-fields  log records collect caller, thread and process fields; strftime per line
  httpx-request      UpstreamClient builds an httpx.Request (its URL parsed on every call)
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

if "anyio-timeouts" in STEPS:
    import asyncio
    import types

    import anyio

    from mcp_tailnet_sidecar import gateway, relay_json

    class _FailAfter:
        """`async with` over anyio.fail_after's cancel scope: what `with anyio.fail_after(...)` did."""

        def __init__(self, delay: float) -> None:
            self._scope = anyio.fail_after(delay)

        async def __aenter__(self) -> None:
            self._scope.__enter__()

        async def __aexit__(self, *exc) -> bool | None:  # noqa: ANN002
            return self._scope.__exit__(*exc)

    shim = types.SimpleNamespace(**{k: getattr(asyncio, k) for k in dir(asyncio) if not k.startswith("__")})
    shim.timeout = _FailAfter
    gateway.asyncio = relay_json.asyncio = shim

if "label-lookups" in STEPS:
    from mcp_tailnet_sidecar import metrics

    metrics.Metrics.of = lambda self, metric, *values: metric.labels(*values)

if "log-record-fields" in STEPS:
    import logging
    import time

    from mcp_tailnet_sidecar import logs

    _setup, _srcfile = logs.setup, logging._srcfile

    def _setup_with_fields(level: str = "info") -> None:  # noqa: D103
        _setup(level)
        logging._srcfile = _srcfile
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = True

    logs.setup = _setup_with_fields
    logs.JsonFormatter._ts = lambda self, record: (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z")

if "httpx-request" in STEPS:
    import httpx

    from mcp_tailnet_sidecar import upstream_client

    class _HttpxRequest(httpx.Request):
        """An httpx.Request with the head UpstreamClient wrote from it before UpstreamRequest."""

        def head(self) -> bytes:
            lines = [self.method.encode("ascii") + b" " + self.url.raw_path + b" HTTP/1.1"]
            lines += [k + b": " + v for k, v in self.headers.raw]
            return b"\r\n".join(lines) + b"\r\n\r\n"

    upstream_client.UpstreamClient.build_request = (
        lambda self, method, url, *, headers, content=b"": _HttpxRequest(method, url, headers=headers, content=content))

KNOWN = {"no-sniffio", "h11", "uvloop", "no-uvloop", "upstream-client", "httpx",
         "anyio-timeouts", "label-lookups", "log-record-fields", "httpx-request"}
for step in STEPS - KNOWN:
    raise SystemExit(f"BENCH_GATEWAY_STEPS: unknown step {step!r}")
