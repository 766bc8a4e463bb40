# The race proxy: bench/serve_body_race/main.go, Go's httputil.ReverseProxy set up the way
# `tailscale serve` sets it up (tests/sidecar/test_serve_body_race.py, bench/serve_body_race.py).
# Standard library only, built offline with the machine's Go toolchain into
# $MCP_TAILNET_CACHE/race-proxy/<hash of its source>/ by lab/src/mcp_tailnet_lab/race_proxy.py,
# the same function the test calls; a warm run only hashes two files.
out="$("$REPO_DIR/.venv/bin/python" -c 'from mcp_tailnet_lab import race_proxy; print(race_proxy.binary())')" \
  || { progress "  race proxy: go build of bench/serve_body_race failed"; return 1; }
progress "  race proxy: $out"
