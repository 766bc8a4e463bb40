# The two commands of the README. Both provision the lab first (idempotent,
# seconds when warm), so a fresh machine needs nothing else.
.PHONY: demo test provision

provision:
	lab/provision

demo: provision
	.venv/bin/python -m mcp_tailnet_lab.demo

test: provision
	.venv/bin/pytest
