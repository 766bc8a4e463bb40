"""SBOMs of locally built images, written by syft (built from the Go module proxy).

A release gets its SBOM from BuildKit's attestation in the release workflow;
this is the local counterpart, so tests can check what an SBOM of our images
says against what the images really carry. SBOMs are build output, never
committed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from mcp_tailnet_lab.paths import binary

#: syft must not phone home from the lab (update check) nor pull: it reads the local engine.
_SYFT_ENV = {"SYFT_CHECK_FOR_APP_UPDATE": "false"}


class SbomError(RuntimeError):
    """syft failed or wrote something that is not an SPDX document."""


def canonical(name: str) -> str:
    """PEP 503 name normalisation, so `Foo_Bar` and `foo-bar` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def spdx(image: str, timeout: float = 600) -> dict[str, Any]:
    """SPDX 2.3 JSON document of `image` (a tag or id in the local Docker engine)."""
    syft = binary("syft")
    proc = subprocess.run(
        [str(syft), "scan", f"docker:{image}", "--output", "spdx-json", "--quiet"],
        capture_output=True, text=True, timeout=timeout, env=os.environ | _SYFT_ENV,
    )
    if proc.returncode != 0:
        raise SbomError(f"syft scan docker:{image} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise SbomError(f"syft scan docker:{image} printed no JSON ({exc})") from None
    if not str(doc.get("spdxVersion", "")).startswith("SPDX-"):
        raise SbomError(f"syft scan docker:{image}: not an SPDX document (keys {sorted(doc)[:8]})")
    return doc


def write_spdx(image: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spdx(image), indent=1) + "\n")
    return path


def purls(doc: dict[str, Any]) -> list[str]:
    """Every package URL in an SPDX document."""
    return [
        ref["referenceLocator"]
        for pkg in doc.get("packages", [])
        for ref in pkg.get("externalRefs", [])
        if ref.get("referenceType") == "purl"
    ]


def python_packages(doc: dict[str, Any]) -> dict[str, set[str]]:
    """canonical name -> versions of every PyPI package (pkg:pypi/...) the SBOM lists."""
    out: dict[str, set[str]] = {}
    for purl in purls(doc):
        m = re.match(r"pkg:pypi/([^@?#]+)@([^?#]+)", purl)
        if m:
            out.setdefault(canonical(m[1]), set()).add(m[2])
    return out
