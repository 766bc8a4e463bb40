"""`mcp-hub`: validate settings and the config file, serve; SIGTERM ends every session,
stops every child, and exits 0."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from mcp_hub import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-hub", description="Many MCP servers behind one endpoint.")
    parser.add_argument("--version", action="version", version=f"mcp-hub {__version__}")
    parser.add_argument("--check-config", action="store_true", help="validate settings and the config file, then exit")
    args = parser.parse_args(argv)

    from mcp_hub import config, jsonlog, settings as settings_mod

    try:
        settings = settings_mod.load()
        hub_config = config.load(settings.config)
    except (settings_mod.SettingsError, config.ConfigError) as exc:
        print(f"mcp-hub: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"mcp-hub: settings valid; servers: {', '.join(sorted(hub_config.servers))}")
        return 0
    jsonlog.setup(settings.log_level)
    log = logging.getLogger("mcp_hub")

    import uvicorn

    from mcp_hub.app import build_app
    from mcp_hub.hub import Hub

    app = build_app(settings, Hub(hub_config))
    log.info("starting", extra={"outcome": f"listening on {settings.host}:{settings.port}; "
                                           f"servers {', '.join(sorted(hub_config.servers))}"})
    uv = uvicorn.Server(uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace) or None, lifespan="on", server_header=False,
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
