"""Render, validate and register the mcp-tailnet ECS Fargate task definition."""
