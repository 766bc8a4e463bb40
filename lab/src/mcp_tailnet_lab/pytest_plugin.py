"""Pytest plugin that exposes the lab's fixtures (loaded with -p from pyproject)."""

from mcp_tailnet_lab.fixtures.cluster import *  # noqa: F401,F403
from mcp_tailnet_lab.fixtures.docker import *  # noqa: F401,F403
from mcp_tailnet_lab.fixtures.tailnet import *  # noqa: F401,F403
