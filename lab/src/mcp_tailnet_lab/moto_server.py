"""moto in server mode: a real HTTP AWS endpoint on loopback for the ECS and EKS tests.

Server mode (not moto's in-process mocks) so the code under test, and the AWS CLI or a
container sharing the host's network, reach AWS over HTTP exactly as they would in AWS.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mcp_tailnet_lab.ports import free_port

_LOG_TAIL_CHARS = 2000


class MotoError(RuntimeError):
    """moto_server exited or did not answer in time; the message carries its log tail."""


@contextlib.contextmanager
def running_moto(env: dict[str, str], log: Path, timeout: float = 60) -> Iterator[str]:
    """`python -m moto.server` on 127.0.0.1:<free port>; yields its URL once it answers, stops it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise MotoError(f"moto_server exited with {proc.returncode}: {log.read_text()[-_LOG_TAIL_CHARS:]}")
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise MotoError(f"moto_server did not answer on {url} within {timeout:.0f} s: "
                                    f"{log.read_text()[-_LOG_TAIL_CHARS:]}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

