"""tests/charts reuses tests/manifests' readers and its docker-pod kubelet (never copies of them)."""

from __future__ import annotations

import sys

from mcp_tailnet_lab.paths import REPO_DIR

sys.path.insert(0, str(REPO_DIR / "tests" / "manifests"))
