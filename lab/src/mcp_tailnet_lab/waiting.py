"""Bounded polling for tests: every wait has a deadline and names what it waited for."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx

# What a service that is not up yet raises: "not yet", retried, the last one reported.
NOT_YET: tuple[type[BaseException], ...] = (OSError, httpx.HTTPError, subprocess.SubprocessError)
try:  # the SDK's transport (mcp 2.x) has its own HTTP error family
    import httpx2
except ImportError:  # pragma: no cover - the lab venv has it
    pass
else:
    NOT_YET += (httpx2.HTTPError,)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.25, *,
             proc: subprocess.Popen | None = None,
             retry_on: tuple[type[BaseException], ...] = NOT_YET) -> Any:
    """Poll `check` until it returns a truthy value, which is returned.

    AssertionError naming `what` after `timeout` s (with the last value or error), or at
    once when `proc` has exited: a process that died will not become ready.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}")
        try:
            last = check()
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
