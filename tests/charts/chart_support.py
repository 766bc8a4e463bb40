"""`helm` (lab-built, pinned) over charts/mcp-tailnet, for the tests in this folder."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from manifests_support import Doc, load_docs
from mcp_tailnet_lab.paths import REPO_DIR, binary

CHART = REPO_DIR / "charts" / "mcp-tailnet"
EXAMPLES = sorted(p.stem for p in (CHART / "examples").glob("*.yaml"))
RELEASE = "mcp-tailnet"
_HOME = Path(tempfile.mkdtemp(prefix="helm-home-"))


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The lab's helm, with its cache/config/data under a private directory (nothing in $HOME)."""
    env = {**os.environ, **{f"HELM_{k}_HOME": str(_HOME / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}
    proc = subprocess.run([str(binary("helm")), *args], capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def example(name: str) -> Path:
    return CHART / "examples" / f"{name}.yaml"


def values_args(name: str | None) -> list[str]:
    return [] if name is None else ["-f", str(example(name))]


def template(*args: str) -> list[Doc]:
    """`helm template mcp-tailnet charts/mcp-tailnet ARGS`: the objects an install would create."""
    return load_docs(helm("template", RELEASE, str(CHART), *args).stdout)
