"""The README's first lines are the two commands a fresh machine needs, and CI runs the second.

If someone renames a Makefile target or changes .ci/run, the README would silently lie;
these checks keep the three in step.
"""

from __future__ import annotations

import os
import re
import subprocess

from mcp_tailnet_lab.paths import REPO_DIR


def _first_code_block_commands() -> list[str]:
    text = (REPO_DIR / "README.md").read_text()
    head = "\n".join(text.splitlines()[:8])
    block = re.search(r"```(?:sh|bash)?\n(.*?)```", head, re.S)
    assert block, "README.md must open with a code block holding the two commands"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands() -> None:
    assert _first_code_block_commands() == ["make demo", "make test"]


def test_make_targets_run_what_the_readme_says() -> None:
    # Under `make test` itself, MAKELEVEL/MAKEFLAGS would make the inner make print
    # "Entering directory" lines: run it as a fresh, top-level make.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    dry = subprocess.run(["make", "--no-print-directory", "-n", "demo", "test"], cwd=REPO_DIR,
                         capture_output=True, text=True, check=True, env=env).stdout.splitlines()
    assert dry[0] == "lab/provision", dry  # both provision first (make runs it once)
    assert ".venv/bin/python -m mcp_tailnet_lab.demo" in dry
    assert ".venv/bin/pytest" in dry


def test_ci_runs_the_readme_commands_from_an_empty_lab_cache() -> None:
    """CI proves the first-run path every time: both README commands on a fresh MCP_TAILNET_CACHE."""
    ci = (REPO_DIR / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci
    lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert 'MCP_TAILNET_CACHE="$(mktemp -d ' in "\n".join(lines), ci
    assert "export MCP_TAILNET_CACHE" in lines, ci
    assert lines[-2:] == ["make demo", "make test"], ci
