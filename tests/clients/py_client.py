"""One MCP session with the Python SDK: list the tools, call one, print one JSON line.

Run inside a tailnet client node's namespace by tests/clients (the compatibility matrix),
so the name in the URL is resolved by MagicDNS exactly as on a user's machine.

    python py_client.py --url URL --transport http|sse --mode auto|legacy --tool NAME --arguments JSON

`--mode auto` is the SDK's default (probe `server/discover`, the 2026-07-28 era, falling
back to the `initialize` handshake); `--mode legacy` forces the 2025-11-25 handshake.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version

import anyio
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client


def _jsonable(value: object) -> object:
    return json.loads(json.dumps(value, default=lambda o: o.model_dump(mode="json", by_alias=True, exclude_none=True)))


async def session(args: argparse.Namespace) -> dict[str, object]:
    transport = sse_client(args.url) if args.transport == "sse" else streamable_http_client(args.url)
    out: dict[str, object] = {"client": f"mcp {version('mcp')}", "transport": args.transport, "mode": args.mode}
    with anyio.fail_after(args.timeout):
        async with Client(transport, mode=args.mode) as client:
            out["protocolVersion"] = client.protocol_version
            info = client.session.server_info  # optional at 2026-07-28; both servers here send it
            out["serverInfo"] = _jsonable(info) if info is not None else None
            out["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
            result = await client.call_tool(args.tool, json.loads(args.arguments))
            out["call"] = {"isError": bool(result.is_error), "content": _jsonable(result.content),
                           "structuredContent": _jsonable(result.structured_content)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--transport", choices=["http", "sse"], required=True)
    parser.add_argument("--mode", choices=["auto", "legacy"], default="auto")
    parser.add_argument("--tool", required=True)
    parser.add_argument("--arguments", default="{}")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    try:
        out = anyio.run(session, args)
    except BaseException as exc:  # noqa: BLE001 - the report is the point; the exit code says it failed
        print(json.dumps({"client": f"mcp {version('mcp')}", "transport": args.transport, "mode": args.mode,
                          "error": f"{type(exc).__name__}: {exc}"[:2000]}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
