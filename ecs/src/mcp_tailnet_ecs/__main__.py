"""`python -m mcp_tailnet_ecs` = the `mcp-tailnet-ecs` console script."""

import sys

from mcp_tailnet_ecs.cli import main

sys.exit(main())
