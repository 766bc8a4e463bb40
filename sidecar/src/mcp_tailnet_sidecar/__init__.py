"""Tailscale sidecar: entrypoint around containerboot and the unix-socket MCP gateway."""
