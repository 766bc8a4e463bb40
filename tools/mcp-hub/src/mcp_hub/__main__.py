"""`python -m mcp_hub` runs the hub."""

import sys

from mcp_hub.cli import main

sys.exit(main())
