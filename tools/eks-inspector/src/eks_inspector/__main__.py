"""`python -m eks_inspector` runs the server."""

import sys

from eks_inspector.cli import main

sys.exit(main())
