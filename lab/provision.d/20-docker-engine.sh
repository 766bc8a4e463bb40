# A running Docker engine (Debian's docker.io, dockerd 20.10) for image builds
# and container tests. Left alone when one already answers; otherwise dockerd
# is started in the background with its log in $MCP_TAILNET_CACHE/logs, and we
# wait (bounded) until it answers. dockerd starts its own containerd.
if docker info >/dev/null 2>&1; then
  progress "  docker engine already answering ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
  return 0
fi
if ! command -v dockerd >/dev/null; then
  progress "  dockerd not installed (10-host-packages installs docker.io)"; return 1
fi
log="$MCP_TAILNET_CACHE/logs/dockerd.log"
progress "  starting dockerd (log $log)"
# setsid: the engine outlives this provisioning shell and its process group.
setsid nohup dockerd --host=unix:///var/run/docker.sock >>"$log" 2>&1 </dev/null &
echo $! >"$MCP_TAILNET_CACHE/logs/dockerd.pid"
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    progress "  docker engine $(docker version -f '{{.Server.Version}}') answering"
    # The engine was down, so no test run is using anything: remove what runs
    # that were killed with it left behind (containers and networks carry the
    # lab's per-run label).
    stale="$(docker ps -aq --filter label=org.mcp-tailnet.lab.run)"
    [[ -z "$stale" ]] || docker rm -fv $stale >/dev/null
    docker network prune -f --filter label=org.mcp-tailnet.lab.run >/dev/null
    return 0
  fi
  if ! kill -0 "$(cat "$MCP_TAILNET_CACHE/logs/dockerd.pid")" 2>/dev/null; then
    progress "  dockerd exited; last lines of $log:"; tail -n 20 "$log" >&2; return 1
  fi
  sleep 1
done
progress "  dockerd did not answer within 60s; last lines of $log:"; tail -n 20 "$log" >&2
return 1
