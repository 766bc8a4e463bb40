"""`eks-inspector`: validate settings, connect, serve; SIGTERM drains and exits 0."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from eks_inspector import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eks-inspector", description="Read-only kubectl-style MCP server.")
    parser.add_argument("--version", action="version", version=f"eks-inspector {__version__}")
    parser.add_argument("--check-config", action="store_true", help="validate settings and the cluster connection (with INSPECTOR_CLUSTERS: ask each cluster for its version), then exit")
    args = parser.parse_args(argv)

    from eks_inspector import config, jsonlog

    try:
        settings = config.load()
    except config.ConfigError as exc:
        print(f"eks-inspector: {exc}", file=sys.stderr)
        return 2
    jsonlog.setup(settings.log_level)
    log = logging.getLogger("eks_inspector")

    import uvicorn

    from eks_inspector import app, kube, server
    from eks_inspector.context import Inspector
    from eks_inspector.discovery import Discovery
    from eks_inspector.render import Renderer

    try:
        client = kube.connect(settings)
    except config.ConfigError as exc:
        print(f"eks-inspector: {exc}", file=sys.stderr)
        return 2
    ins = Inspector(settings, client, Discovery(client, settings.discovery_ttl),
                    Renderer(settings.output_cap, settings.configmap_values))
    mcp = server.build(ins)
    if args.check_config:
        print(f"eks-inspector: settings valid; cluster via {client.identity}")
        if not settings.clusters:
            return 0
        from eks_inspector.check import check_clusters

        outcomes = check_clusters(ins)
        for outcome in outcomes:
            print(f"eks-inspector: {outcome.line}")
        return 1 if any(o.version is None for o in outcomes) else 0
    starlette_app = app.build_app(settings, mcp)
    log.info("starting", extra={"outcome": f"listening on {settings.host}:{settings.port} "
                                           f"({', '.join(settings.transports)}); cluster via {client.identity}"})
    uv = uvicorn.Server(uvicorn.Config(
        starlette_app, host=settings.host, port=settings.port, log_config=None, access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace) or None, lifespan="on",
        server_header=False,
    ))
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal through the handlers that
    # were installed before it: make those no-ops so a drained shutdown exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uv.run()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
