"""The environment of `mcp-tailnet-sidecar run` (the image's entrypoint) in the lab.

Tests and benchmarks start the real entrypoint (containerboot + tailscaled + gateway)
in a network namespace against the lab's headscale; one definition of that environment
keeps them all starting it the same way: plain-HTTP DERP (headscale's embedded DERP has
no TLS here), no port mapping, no log upload, state in the work directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from mcp_tailnet_lab.paths import binary

# Where the stock MCP server listens inside the sidecar's namespace (the images' default).
STOCK_PORT = 8080


def sidecar_run_env(workdir: Path, *, login_server: str, hostname: str, authkey: str | None = None,
                    run_dir: Path | None = None, path: str | None = None, upstream_port: int = STOCK_PORT,
                    **extra: str) -> dict[str, str]:
    """Variables for `mcp-tailnet-sidecar run` with its state and sockets under `workdir`.

    The lab's stock server listens on 127.0.0.1 under the lab's allow-all tailnet policy:
    an upstream the node's packet filter exposes past serve, which readiness refuses by
    default (docs/design.md fact 1). Runs that start it that way accept the exposure on
    purpose; tests/sidecar/test_isolation.py shows the refusal and the override.

    `run_dir` holds the gateway/health sockets and the serve config (default: `workdir`);
    `path` replaces this process's PATH (a non-root run cannot use the venv's); `extra`
    adds or overrides variables. No TS_AUTHKEY when `authkey` is empty (a restart that
    must reuse the node's state).
    """
    containerboot = binary("containerboot")
    run_dir = run_dir or workdir
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{containerboot.parent}:{path or os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(workdir),
        "TS_HOSTNAME": hostname,
        "TS_STATE_DIR": str(workdir / "state"),
        "TS_SOCKET": str(workdir / "ts.sock"),
        "TS_DEBUG_USE_DERP_HTTP": "true",
        "TS_DISABLE_PORTMAPPER": "1",
        "SIDECAR_LOGIN_SERVER": login_server,
        "SIDECAR_CONTAINERBOOT": str(containerboot),
        "SIDECAR_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}",
        "SIDECAR_GATEWAY_SOCKET": str(run_dir / "gw.sock"),
        "SIDECAR_HEALTH_SOCKET": str(run_dir / "health.sock"),
        "SIDECAR_SERVE_CONFIG": str(run_dir / "serve" / "serve.json"),
        "SIDECAR_ACCEPT_UPSTREAM_EXPOSURE": "true",
        **extra,
    }
    if authkey:
        env["TS_AUTHKEY"] = authkey
    return env
