# Docker Compose v2 (`docker compose`), built from the Go module proxy at the
# pinned version and installed as a CLI plugin, so tests run what users run:
# the Compose Specification through `docker compose`. The machine's docker
# CLI ships no compose plugin and no registry can hand us a binary.
dir="$(bin_dir compose "$COMPOSE_VERSION")"
plugin_dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
if ! have_bins "$dir" docker-compose; then
  progress "  building docker compose $COMPOSE_VERSION (go build from the module proxy, several minutes cold)"
  # Compose's go.mod has exclude directives, which `go install pkg@version`
  # refuses; build inside the downloaded module instead, so its own go.mod
  # (excludes and go.sum) is the main module, exactly as upstream builds it.
  src="$(go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" || return 1
  mkdir -p "$dir"
  ( cd "$src" && run_logged compose-build go build -trimpath -o "$dir/docker-compose.tmp" \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" ./cmd ) \
    || return 1
  mv "$dir/docker-compose.tmp" "$dir/docker-compose"
fi
mkdir -p "$plugin_dir"
if [[ "$(readlink "$plugin_dir/docker-compose" 2>/dev/null)" != "$dir/docker-compose" ]]; then
  ln -sfn "$dir/docker-compose" "$plugin_dir/docker-compose"
fi
out="$(docker compose version 2>&1)" || { progress "  docker compose does not run: $out"; return 1; }
progress "  $out"
