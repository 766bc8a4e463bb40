"""Where the lab's pinned Node.js MCP clients live, and whether they are the pinned ones.

lab/provision.d/75-node-clients.sh installs lab/node-clients (package.json + lockfile) with
`npm ci` into a directory keyed by the lockfile's hash, so a changed lockfile never reuses
an old install. The step asks this module for that directory and for the pin checks, so
the key and the package -> lab/versions.env mapping have one definition. Tests ask here
too: a missing or different install fails with a message naming the step to run.

Standard library only: the provisioning step runs it with the system python3.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from mcp_tailnet_lab.paths import LAB_DIR, MissingComponent, cache_dir, versions

SOURCE_DIR = LAB_DIR / "node-clients"
STEP = "75-node-clients"
PROVISION_HINT = f"run `PROVISION_ONLY={STEP} lab/provision` (idempotent) to install it"
VERIFIED_STAMP = ".verified"  # written by the step once the install passed `verify`

# npm package -> its pin in lab/versions.env
PINS = {
    "@modelcontextprotocol/sdk": "MCP_TS_SDK_VERSION",
    "mcp-remote": "MCP_REMOTE_VERSION",
    "@modelcontextprotocol/server-everything": "MCP_SERVER_EVERYTHING_VERSION",
}
# the files the tests run, relative to the install's node_modules
MCP_REMOTE_BIN = "mcp-remote/dist/proxy.js"
SERVER_EVERYTHING_BIN = "@modelcontextprotocol/server-everything/dist/index.js"


class PinMismatch(RuntimeError):
    """The lockfile or an install does not hold the versions lab/versions.env pins."""


def lock_key(source: Path = SOURCE_DIR) -> str:
    return hashlib.sha256((source / "package-lock.json").read_bytes()).hexdigest()[:16]


def install_dir(source: Path = SOURCE_DIR) -> Path:
    return cache_dir() / "npm" / f"node-clients-{lock_key(source)}"


def pinned() -> dict[str, str]:
    """package -> version, from lab/versions.env."""
    env = versions()
    return {pkg: env[key] for pkg, key in PINS.items()}


def check_lock(source: Path = SOURCE_DIR) -> None:
    """package.json and package-lock.json name exactly the pinned versions."""
    manifest = json.loads((source / "package.json").read_text())
    lock = json.loads((source / "package-lock.json").read_text())
    problems = []
    for pkg, want in pinned().items():
        declared = manifest.get("dependencies", {}).get(pkg)
        locked = lock.get("packages", {}).get(f"node_modules/{pkg}", {}).get("version")
        if declared != want or locked != want:
            problems.append(f"{pkg}: lab/versions.env pins {want}, package.json says {declared}, lockfile {locked}")
    if problems:
        raise PinMismatch("lab/node-clients disagrees with lab/versions.env (edit package.json, then "
                          "`npm install --package-lock-only --omit-lockfile-registry-resolved` there): "
                          + "; ".join(problems))


def installed_versions(root: Path) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in PINS:
        try:
            out[pkg] = json.loads((root / "node_modules" / pkg / "package.json").read_text()).get("version")
        except (OSError, ValueError):
            out[pkg] = None
    return out


def verify(root: Path) -> None:
    """The install at `root` holds the pinned versions and the files the tests run."""
    problems = [f"{pkg} {have or 'missing'} (pinned {want})"
                for (pkg, want), have in zip(pinned().items(), installed_versions(root).values()) if have != want]
    problems += [f"{rel} missing" for rel in (MCP_REMOTE_BIN, SERVER_EVERYTHING_BIN)
                 if not (root / "node_modules" / rel).is_file()]
    if problems:
        raise PinMismatch(f"the node clients at {root} are not the pinned ones: " + "; ".join(problems))


@dataclass(frozen=True)
class NodeClients:
    """A verified install: where `node` is and how to start each pinned tool."""

    root: Path
    node: str

    @property
    def sdk_dir(self) -> Path:
        """The directory the TypeScript SDK resolves from (a script's createRequire anchor)."""
        return self.root

    def mcp_remote(self, url: str, *args: str) -> list[str]:
        """argv of `mcp-remote URL ARGS`, exactly as `npx mcp-remote` would run it, minus npx."""
        return [self.node, str(self.root / "node_modules" / MCP_REMOTE_BIN), url, *args]

    def server_everything(self, transport: str) -> list[str]:
        """argv of the everything server on `transport` (its CLI: stdio, sse or streamableHttp; port from $PORT)."""
        return [self.node, str(self.root / "node_modules" / SERVER_EVERYTHING_BIN), transport]

    @property
    def versions(self) -> dict[str, str]:
        return pinned()


def node_clients() -> NodeClients:
    """The provisioned install; raises MissingComponent naming the step when absent or stale."""
    root = install_dir()
    node = shutil.which("node")
    if node is None:
        raise MissingComponent(f"node (Node.js >= 18) is not on PATH: {PROVISION_HINT}")
    if not (root / VERIFIED_STAMP).is_file():
        raise MissingComponent(f"the pinned Node.js MCP clients ({', '.join(f'{p} {v}' for p, v in pinned().items())}) "
                               f"are missing at {root}: {PROVISION_HINT}")
    try:
        verify(root)
    except PinMismatch as exc:
        raise MissingComponent(f"{exc}: {PROVISION_HINT}") from None
    return NodeClients(root, node)


def main(argv: list[str]) -> int:
    """For the provisioning step: `install-dir`, `check-lock`, `verify DIR`."""
    try:
        if argv == ["install-dir"]:
            print(install_dir())
        elif argv == ["check-lock"]:
            check_lock()
        elif len(argv) == 2 and argv[0] == "verify":
            verify(Path(argv[1]))
        else:
            print("usage: python -m mcp_tailnet_lab.node_clients install-dir | check-lock | verify DIR", file=sys.stderr)
            return 2
    except PinMismatch as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
