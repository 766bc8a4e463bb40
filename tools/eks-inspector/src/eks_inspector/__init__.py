"""A hosted, read-only, kubectl-style Kubernetes/EKS inspector MCP server."""
