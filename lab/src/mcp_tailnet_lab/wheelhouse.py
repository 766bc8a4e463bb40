"""The lab's wheelhouse, and the small HTTP server that hands it to image builds.

Containers here cannot verify TLS to PyPI, so images install Python packages
from wheels downloaded on the host (lab/provision.d/70-wheelhouse.sh, keyed by
uv.lock's hash). The classic builder runs each RUN step on the default docker
bridge, so a server bound to that bridge's gateway address reaches the builds
and nothing outside the machine. The Dockerfiles stay unchanged: the lab passes
PIP_NO_INDEX / PIP_FIND_LINKS / PIP_TRUSTED_HOST as build args; without them
pip uses PyPI as usual.

The address and port are stable on purpose: the classic builder keys its layer
cache on the build args, so a per-run port would rebuild every layer every run.
The server is a lab service like dockerd: started once, shared by every run.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mcp_tailnet_lab.docker_engine import connect
from mcp_tailnet_lab.paths import PROVISION_HINT, REPO_DIR, MissingComponent, cache_dir, versions

DEFAULT_PORT = 3141
PORT_ENV = "MCP_TAILNET_WHEELHOUSE_PORT"


def wheelhouse_root() -> Path:
    return cache_dir() / "wheelhouse"


def wheelhouse_dir() -> Path:
    """This checkout's wheelhouse (same key as 70-wheelhouse.sh); raises MissingComponent if absent."""
    lock_hash = hashlib.sha256((REPO_DIR / "uv.lock").read_bytes()).hexdigest()[:16]
    path = wheelhouse_root() / f"lock-{lock_hash}-hatchling-{versions()['HATCHLING_VERSION']}"
    if not (path / ".complete").is_file():
        raise MissingComponent(
            f"the wheelhouse for this uv.lock is missing at {path}: {PROVISION_HINT} (step 70-wheelhouse)"
        )
    return path


def port() -> int:
    raw = os.environ.get(PORT_ENV, str(DEFAULT_PORT))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{PORT_ENV}={raw!r} is not a TCP port number")
    return int(raw)


def bridge_gateway(client) -> str:  # noqa: ANN001 - docker.DockerClient
    """The default bridge's gateway: the host address build containers reach.

    Engine 20.10 leaves Gateway out of the default bridge's IPAM config, so fall
    back to the bridge interface's own IPv4 address (the engine is local here).
    """
    attrs = client.networks.get("bridge").attrs
    for entry in attrs["IPAM"].get("Config") or []:
        if "." in entry.get("Gateway", ""):
            return entry["Gateway"]
    ifname = attrs.get("Options", {}).get("com.docker.network.bridge.name", "docker0")
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", ifname], capture_output=True, text=True)
    if out.returncode == 0:
        for link in json.loads(out.stdout or "[]"):
            for addr in link.get("addr_info", []):
                return addr["local"]
    raise MissingComponent(f"the Docker engine's default bridge ({ifname}) has no IPv4 address")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + ".complete", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def ensure_server(client, timeout: float = 15.0) -> str:  # noqa: ANN001
    """URL of this checkout's wheelhouse as build containers see it; starts the server if needed.

    Tries the configured port and the next few: a port held by a server with
    another cache root (another checkout's) or by something else is skipped.
    """
    wheels = wheelhouse_dir()
    host, first = bridge_gateway(client), port()
    log = cache_dir() / "logs" / "wheelhouse-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for p in range(first, min(first + 10, 65536)):
        url = f"http://{host}:{p}/{wheels.name}/"
        if _answers(url):
            return url
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mcp_tailnet_lab.wheelhouse", "serve",
                 "--bind", host, "--port", str(p), "--root", str(wheelhouse_root())],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(url):
                return url
            time.sleep(0.2)
        if proc.poll() is None:  # started but never answered: not ours to keep
            proc.terminate()
            proc.wait(timeout=5)
    tail = log.read_text(errors="replace").splitlines()[-3:]
    raise MissingComponent(
        f"the lab wheelhouse server could not serve {wheels} on {host} ports {first}-{first + 9} "
        f"(set {PORT_ENV}); log {log}: {' | '.join(tail)}"
    )


def build_args(client) -> dict[str, str]:  # noqa: ANN001
    """Build args that make pip in our Dockerfiles install from the wheelhouse, offline."""
    url = ensure_server(client)
    host = url.split("//", 1)[1].split(":", 1)[0]
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": url, "PIP_TRUSTED_HOST": host}


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        print(json.dumps({"ts": time.time(), "client": self.client_address[0], "msg": format % args}),
              file=sys.stderr, flush=True)


def serve(bind: str, port_: int, root: Path) -> int:
    try:
        server = ThreadingHTTPServer((bind, port_), partial(_Handler, directory=str(root)))
    except OSError as exc:
        reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        print(json.dumps({"level": "error", "msg": f"cannot listen on {bind}:{port_}: {reason}"}), file=sys.stderr)
        return 1
    print(json.dumps({"level": "info", "msg": f"serving {root} on http://{bind}:{port_}/"}), file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcp_tailnet_lab.wheelhouse", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sv = sub.add_parser("serve", help="serve a wheelhouse directory over HTTP")
    sv.add_argument("--bind", required=True)
    sv.add_argument("--port", type=int, required=True)
    sv.add_argument("--root", type=Path, required=True)
    sub.add_parser("url", help="start the server if needed and print this checkout's wheelhouse URL")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.bind, args.port, args.root)
    print(ensure_server(connect()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
