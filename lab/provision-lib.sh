# Helpers shared by the lab/provision.d steps. Sourced, not executed.

progress() { printf '[provision %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# run_logged NAME CMD...: run a long command with its output in a log file,
# printing a heartbeat every 30 s so a cold provision never looks hung.
run_logged() {
  local name="$1"; shift
  local log="$MCP_TAILNET_CACHE/logs/$name.log"
  "$@" >"$log" 2>&1 &
  local pid=$! waited=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1; waited=$((waited + 1))
    if (( waited % 30 == 0 )); then progress "  $name: still running (${waited}s, log $log)"; fi
  done
  if ! wait "$pid"; then
    progress "  $name: failed; last lines of $log:"; tail -n 25 "$log" >&2
    return 1
  fi
}

# bin_dir COMPONENT VERSION: where a built component's binaries live.
bin_dir() { echo "$MCP_TAILNET_CACHE/bin/$1-$2"; }

# have_bins DIR NAME...: true when every named binary is present and executable.
have_bins() {
  local dir="$1"; shift
  local b; for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}
