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

# run_step NAME SCRIPT: source one provision.d step in a subshell with errexit on,
# its output shown and kept in logs/step-NAME.log; a failing command is recorded
# (file, line, command, exit code) in logs/step-NAME.failed for report_failed_step.
# Call it as a plain command (see lab/provision): inside a condition set -e is off.
run_step() {
  local name="$1" script="$2"
  local log="$MCP_TAILNET_CACHE/logs/step-$name.log" failed="$MCP_TAILNET_CACHE/logs/step-$name.failed"
  rm -f "$failed"
  (
    set -eE
    # The step's own `return 1` fails the `source` below: that is not a failing command.
    trap 'rc=$?; [[ $BASH_COMMAND == "source \"\$script\"" ]] ||
      printf "%s:%s: \`%s\` exited %s\n" "${BASH_SOURCE[0]}" "$LINENO" "$BASH_COMMAND" "$rc" >>"$failed"' ERR
    source "$script"
  ) 2>&1 | tee "$log" >&2
  return "${PIPESTATUS[0]}"
}

# report_failed_step NAME RC: say why a step failed, never only "see above": the failing
# command with its exit code (when one failed rather than the step returning an error
# it already explained) and the last lines of the step's own output.
report_failed_step() {
  local name="$1" rc="$2"
  local log="$MCP_TAILNET_CACHE/logs/step-$name.log" failed="$MCP_TAILNET_CACHE/logs/step-$name.failed"
  progress "$name: FAILED (exit $rc)"
  if [[ -s "$failed" ]]; then
    progress "  failing command: $(head -n1 "$failed")"
  else
    progress "  the step stopped with an error it reported itself (no command failed unexpectedly)"
  fi
  if [[ -s "$log" ]]; then
    progress "  last lines of the step's output ($log):"
    tail -n 20 "$log" | sed 's/^/    | /' >&2
  else
    progress "  the step printed nothing before failing"
  fi
  progress "  all logs: $MCP_TAILNET_CACHE/logs"
}
