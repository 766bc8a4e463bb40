"""Go's `httputil.ReverseProxy` set up the way `tailscale serve` sets it up, for tests and bench.

The program is bench/serve_body_race/main.go (standard library only). It is built with the
machine's Go toolchain, the one lab/provision builds tailscaled with, offline (GOPROXY=off,
GOTOOLCHAIN=local), into the lab cache under the hash of its source, so an edited main.go
gets a binary of its own; lab/provision (step 42-race-proxy) builds it ahead of the tests.
`TAIL_DELAY` widens the window in which serve cuts an answer (golang/go#40747,
docs/design.md fact 20) so that a test can hit it every time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from mcp_tailnet_lab.gateway_process import stop
from mcp_tailnet_lab.paths import REPO_DIR, MissingComponent, cache_dir
from mcp_tailnet_lab.ports import free_port
from mcp_tailnet_lab.waiting import wait_for

SOURCE = REPO_DIR / "bench" / "serve_body_race"
LISTEN_HOST = "127.0.0.9"
STOP_TIMEOUT = 10


def binary() -> Path:
    """The built proxy, building it first when this source has not been built yet."""
    digest = hashlib.sha256()
    for name in ("go.mod", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    out = cache_dir() / "race-proxy" / digest.hexdigest()[:16] / "serve_body_race"
    if out.is_file():
        return out
    go = shutil.which("go")
    if go is None:
        raise MissingComponent("the Go toolchain (`go` on PATH), which lab/provision builds tailscaled with")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    subprocess.run([go, "build", "-trimpath", "-o", str(tmp), "."], cwd=SOURCE, check=True,
                   env={**os.environ, "GOFLAGS": "-mod=mod -buildvcs=false", "GOTOOLCHAIN": "local",
                        "GOPROXY": "off"})
    tmp.replace(out)
    return out


@contextlib.contextmanager
def running(backend: str, host: str, log: Path, *, tail_delay: str = "") -> Iterator[str]:
    """The proxy in front of `backend` (a unix socket path or tcp:HOST:PORT), sending `Host: host`;
    yields its base URL. `tail_delay` (a Go duration) delays its read past a body's declared length."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([str(binary()), backend, f"{LISTEN_HOST}:{port}", host], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "TAIL_DELAY": tail_delay})
    try:
        wait_for(lambda: socket.create_connection((LISTEN_HOST, port), timeout=1).close() or True,
                 f"the race proxy to listen (log: {log})", timeout=30, interval=0.05, proc=proc)
        yield f"http://{LISTEN_HOST}:{port}"
    finally:
        stop(proc, STOP_TIMEOUT)
