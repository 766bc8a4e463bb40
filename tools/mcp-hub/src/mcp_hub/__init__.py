"""mcp-hub: every MCP server of a team behind one endpoint (and so one tailnet name)."""

__version__ = "0.1.0"
