import sys

from mcp_tailnet_sidecar.cli import main

sys.exit(main())
