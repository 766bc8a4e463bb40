"""Fixtures for the reliability tests: one stock MCP server, gateways that must survive.

The bad-input gateway is module scoped on purpose: every hostile request in a module
hits the same process, and the module ends by proving that process still serves a full
MCP session and never logged a stack trace.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability_support import GatewayProc, StockServer, start_gateway, start_stock_server, stop


@pytest.fixture(scope="session")
def rel_tmp() -> Iterator[Path]:
    """A short directory (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rel-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def stock(rel_tmp: Path) -> Iterator[StockServer]:
    server = start_stock_server(log=rel_tmp / "stock.log")
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture
def gateway_factory(stock: StockServer, rel_tmp: Path):
    made: list[GatewayProc] = []

    def start(upstream: str | None = None, **env: str) -> GatewayProc:
        gw = start_gateway(upstream or stock.url, rel_tmp, **env)
        made.append(gw)
        return gw

    yield start
    for gw in made:
        stop(gw.proc)
