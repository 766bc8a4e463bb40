"""Size budgets of our images, measured against the images they are made of.

The budgets (docs/benchmarks.md, "Image size budget"):
- sidecar: the Python base, plus the three tailscale binaries it copies from the
  tailscale image, plus at most GATEWAY_ALLOWANCE for the gateway (its locked
  Python packages in /opt/venv, the user, two directories);
- inspector: at most INSPECTOR_FACTOR x the Python base;
- mcp-hub: the Python base plus at most HUB_ALLOWANCE (the hub, the mcp SDK and
  the stdio servers it carries, mcp-server-time, in /opt/venv; its default config).
Sizes are Docker's uncompressed image sizes (`docker image inspect .Size`), in
the local engine: here the bases are the lab's stand-ins, tagged like upstream.
`python -m mcp_tailnet_lab.size_budget` prints the table for the docs.
"""

from __future__ import annotations

import sys
import tarfile
from dataclasses import dataclass
from typing import Any

from mcp_tailnet_lab import release

MB = 1_000_000
GATEWAY_ALLOWANCE = 16 * MB
INSPECTOR_FACTOR = 1.5
HUB_ALLOWANCE = 40 * MB
TAILSCALE_BINARIES = ("/usr/local/bin/containerboot", "/usr/local/bin/tailscaled", "/usr/local/bin/tailscale")
VENV = "/opt/venv"


@dataclass(frozen=True)
class Row:
    image: str
    size: int
    budget: int | None
    rule: str

    @property
    def ok(self) -> bool:
        return self.budget is None or self.size <= self.budget


def image_size(client: Any, ref: str) -> int:
    return int(client.images.get(ref).attrs["Size"])


def tree_bytes(client: Any, ref: str, *paths: str) -> int:
    """Bytes of regular files under `paths` inside an image (read from a created, never started, container)."""
    container = client.containers.create(ref, entrypoint=["/nonexistent"], network_disabled=True)
    try:
        total = 0
        for path in paths:
            stream, _ = container.get_archive(path)
            with tarfile.open(fileobj=_Reader(stream), mode="r|") as tar:
                total += sum(m.size for m in tar if m.isfile())
        return total
    finally:
        container.remove(force=True)


class _Reader:
    """A file object over docker-py's chunk iterator, for tarfile's stream mode."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


@dataclass(frozen=True)
class Measurement:
    python_base: str
    tailscale_base: str
    python_size: int
    tailscale_size: int
    tailscale_binaries: int
    sidecar: Row
    sidecar_venv: int
    inspector: Row
    inspector_venv: int
    hub: Row
    hub_venv: int


def _bases(rel: release.Release) -> tuple[str, str]:
    python = next(b for b in rel.bases if b.startswith("python:"))
    tailscale = next(b for b in rel.bases if b.startswith("tailscale/"))
    return python, tailscale


def measure(client: Any, refs: dict[str, str], rel: release.Release | None = None) -> Measurement:
    """Measure `refs` (images/<dir> -> image ref) against the bases release.env names."""
    rel = rel or release.load()
    python, tailscale = _bases(rel)
    py_size, ts_size = image_size(client, python), image_size(client, tailscale)
    ts_bins = tree_bytes(client, tailscale, *TAILSCALE_BINARIES)
    sidecar_budget = py_size + ts_bins + GATEWAY_ALLOWANCE
    inspector_budget = int(INSPECTOR_FACTOR * py_size)
    return Measurement(
        python_base=python, tailscale_base=tailscale,
        python_size=py_size, tailscale_size=ts_size, tailscale_binaries=ts_bins,
        sidecar=Row(refs["sidecar"], image_size(client, refs["sidecar"]), sidecar_budget,
                    f"python base + tailscale binaries ({ts_bins / MB:.1f} MB) + {GATEWAY_ALLOWANCE / MB:.0f} MB gateway"),
        sidecar_venv=tree_bytes(client, refs["sidecar"], VENV),
        inspector=Row(refs["eks-inspector"], image_size(client, refs["eks-inspector"]), inspector_budget,
                      f"{INSPECTOR_FACTOR} x python base"),
        inspector_venv=tree_bytes(client, refs["eks-inspector"], VENV),
        hub=Row(refs["mcp-hub"], image_size(client, refs["mcp-hub"]), py_size + HUB_ALLOWANCE,
                f"python base + {HUB_ALLOWANCE / MB:.0f} MB hub and its stdio servers"),
        hub_venv=tree_bytes(client, refs["mcp-hub"], VENV),
    )


def markdown(m: Measurement) -> str:
    def mb(n: int) -> str:
        return f"{n / MB:.1f} MB"

    lines = [
        "| image | size | budget | rule | within budget |",
        "|---|---:|---:|---|---|",
        f"| `{m.python_base}` (lab stand-in) | {mb(m.python_size)} | | base of our three images | |",
        f"| `{m.tailscale_base}` (lab stand-in) | {mb(m.tailscale_size)} | | the sidecar copies its three binaries: {mb(m.tailscale_binaries)} | |",
    ]
    for row, venv in ((m.sidecar, m.sidecar_venv), (m.inspector, m.inspector_venv), (m.hub, m.hub_venv)):
        lines.append(
            f"| `{row.image}` | {mb(row.size)} | {mb(row.budget or 0)} | {row.rule}; /opt/venv is {mb(venv)} | "
            f"{'yes' if row.ok else f'**no**, over by {mb(row.size - (row.budget or 0))}'} |"
        )
    return "\n".join(lines)


def main() -> int:
    from mcp_tailnet_lab.docker_engine import connect

    rel = release.load()
    client = connect()
    print(markdown(measure(client, {d: rel.ref(d) for d in rel.names}, rel)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
