"""A hosted, read-only, kubectl-style Kubernetes/EKS inspector MCP server."""

__version__ = "0.1.0"
