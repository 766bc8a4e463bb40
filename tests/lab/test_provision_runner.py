"""lab/provision says why a step failed: the failing command, its exit code, the step's last lines.

A first provisioning once failed with only "FAILED (exit 1; see messages above)" and nothing
above it (a pipeline under pipefail whose `ls` matched nothing). The real runner and its
library run here on made-up steps in a copy of lab/, so each kind of failure is shown
without building anything.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mcp_tailnet_lab.paths import LAB_DIR


def provision(tmp_path: Path, step: str) -> subprocess.CompletedProcess[str]:
    lab = tmp_path / "lab"
    (lab / "provision.d").mkdir(parents=True)
    for name in ("provision", "provision-lib.sh", "versions.env"):
        shutil.copy2(LAB_DIR / name, lab / name)
    (lab / "provision.d" / "10-step.sh").write_text(step)
    return subprocess.run([str(lab / "provision")], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "MCP_TAILNET_CACHE": str(tmp_path / "cache")})


def test_an_unexpected_failure_names_the_command_and_shows_the_last_lines(tmp_path: Path) -> None:
    # The first-run bug's shape: an unmatched glob in a pipeline under pipefail.
    result = provision(tmp_path, 'progress "  looking for an earlier cache"\n'
                                 'prev="$(ls -d "$MCP_TAILNET_CACHE"/nothing-*/ 2>/dev/null | grep -v partial)"\n'
                                 'progress "  never printed"\n')
    assert result.returncode == 1, result.stderr
    assert "10-step: FAILED (exit 1)" in result.stderr
    assert "failing command:" in result.stderr and "grep -v partial` exited 1" in result.stderr, result.stderr
    assert "| [provision" in result.stderr and "looking for an earlier cache" in result.stderr
    assert "never printed" not in result.stderr
    assert "see messages above" not in result.stderr


def test_a_step_that_explains_its_own_error_is_not_blamed_on_a_command(tmp_path: Path) -> None:
    result = provision(tmp_path, 'progress "  dockerd not installed"\nreturn 1\n')
    assert result.returncode == 1
    assert "reported itself" in result.stderr and "dockerd not installed" in result.stderr
    assert "failing command:" not in result.stderr


def test_a_silent_failure_says_so(tmp_path: Path) -> None:
    result = provision(tmp_path, "f() { false; echo unreachable; }\nf\n")
    assert result.returncode == 1
    assert "`false` exited 1" in result.stderr and "printed nothing" in result.stderr
    assert "unreachable" not in result.stderr + result.stdout


@pytest.mark.parametrize("step", ['progress "  fine"\n', 'x="$(ls /nonexistent 2>/dev/null || true)"\n'])
def test_a_passing_step_ends_with_lab_ready(tmp_path: Path, step: str) -> None:
    result = provision(tmp_path, step)
    assert result.returncode == 0, result.stderr
    assert "10-step: ok" in result.stderr and "lab ready in" in result.stderr


def test_a_private_cache_directory_is_opened_for_the_non_root_tests(tmp_path: Path) -> None:
    """CI's cache is a `mktemp -d` (mode 0700); uid 65532 must still reach the binaries in it."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    result = provision(tmp_path, 'progress "  fine"\n')
    assert result.returncode == 0, result.stderr
    for d in (cache, cache / "bin"):
        assert d.stat().st_mode & 0o055 == 0o055, oct(d.stat().st_mode)
