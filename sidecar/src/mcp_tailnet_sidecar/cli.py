"""`mcp-tailnet-sidecar`: the image entrypoint and its helper commands.

    run                       containerboot + gateway + health (the image's default)
    gateway [--apply-serve]   gateway + health for a tailscaled run by someone else
    probe alive|ready         health check command (exec probes, ECS, compose)
    clients --host NAME       ready-to-paste client configuration
    doctor --url URL          step-by-step connectivity check from a tailnet machine

Imports are deferred per command so that `probe` stays a bare interpreter start.
"""

from __future__ import annotations

import argparse
import sys


def _load_settings(mode: str):  # noqa: ANN202
    from mcp_tailnet_sidecar import logs
    from mcp_tailnet_sidecar.settings import SettingsError, load

    try:
        return load(mode=mode)
    except SettingsError as exc:
        logs.emit(f"configuration error: {exc}", variable=exc.variable)
        raise SystemExit(2) from None


def _run(mode: str, apply_serve: bool) -> int:
    from mcp_tailnet_sidecar import logs, serving, supervisor

    settings = _load_settings(mode)
    logs.setup(settings.log_level)
    if mode == "run":
        return serving.run(supervisor.run(settings))
    return serving.run(supervisor.run(settings, with_containerboot=False,
                                      publish_serve="localapi" if apply_serve else "none"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-tailnet-sidecar", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="containerboot + gateway + health (default)")
    gw = sub.add_parser("gateway", help="gateway + health only, next to an existing tailscaled")
    gw.add_argument("--apply-serve", action="store_true",
                    help="apply the rendered serve config through tailscaled's LocalAPI")
    pr = sub.add_parser("probe", help="health check: exit 0 if alive/ready")
    pr.add_argument("kind", choices=["alive", "ready"])
    pr.add_argument("--socket", help="health socket (default $SIDECAR_HEALTH_SOCKET or /run/mcp-tailnet/health.sock)")
    cl = sub.add_parser("clients", help="print client configuration for a tailnet host")
    cl.add_argument("--host", required=True, help="the node's tailnet name, e.g. mcp-inspector")
    cl.add_argument("--transport", choices=["http", "sse"], default="http")
    cl.add_argument("--name", default="tailnet-mcp", help="the name clients list the server under")
    cl.add_argument("--https", action="store_true", help="the tailnet has HTTPS certificates; use https://")
    dr = sub.add_parser("doctor", help="check name resolution, reachability, handshake and tools")
    dr.add_argument("--url", required=True, help="e.g. http://mcp-inspector/mcp or http://mcp-inspector/sse")
    dr.add_argument("--transport", choices=["http", "sse"], help="default: from the URL path")
    dr.add_argument("--proxy", help="reach the tailnet through this HTTP proxy (userspace tailscaled)")
    dr.add_argument("--timeout", type=float, default=10.0)
    dr.add_argument("--call", metavar="TOOL", help="also call this tool and show the start of its answer")
    dr.add_argument("--arguments", default="{}", metavar="JSON", help="the tool's arguments (a JSON object)")
    args = parser.parse_args(argv)

    if args.command in (None, "run"):
        return _run("run", False)
    if args.command == "gateway":
        return _run("gateway", args.apply_serve)
    if args.command == "probe":
        from mcp_tailnet_sidecar.probe import probe

        return probe(args.kind, args.socket)
    if args.command == "clients":
        from mcp_tailnet_sidecar.clients import render

        print(render(args.host, args.transport, name=args.name, scheme="https" if args.https else "http"))
        return 0
    from mcp_tailnet_sidecar.doctor import Doctor, parse_arguments

    try:
        arguments = parse_arguments(args.arguments)
    except ValueError as exc:
        parser.error(str(exc))
    return Doctor(args.url, transport=args.transport, proxy=args.proxy, timeout=args.timeout,
                  call=args.call, arguments=arguments).run()


if __name__ == "__main__":
    sys.exit(main())
