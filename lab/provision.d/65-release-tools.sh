# Release tooling that cannot come from a package registry here, built from the
# Go module proxy at the pinned versions (lab/versions.env):
#   actionlint  checks .github/workflows/*.yml (GitHub Actions cannot run here);
#   syft        writes SBOMs of the images we build, for tests/images.
# Both are plain `go build`s inside the downloaded module, so its own go.mod and
# go.sum are the main module, with the flags upstream's .goreleaser.yaml uses.
# actionlint runs shellcheck over every `run:` script when it is on PATH, so
# Debian's shellcheck comes along (the tests require it).

if ! command -v shellcheck >/dev/null; then
  progress "  apt-get install shellcheck (actionlint checks run: scripts with it)"
  DEBIAN_FRONTEND=noninteractive run_logged apt-shellcheck apt-get install -y -q --no-install-recommends shellcheck \
    || { run_logged apt-update apt-get update -q \
         && DEBIAN_FRONTEND=noninteractive run_logged apt-shellcheck apt-get install -y -q --no-install-recommends shellcheck; } \
    || return 1
fi

# release_tool NAME MODULE VERSION PKG TAGS LDFLAGS: build one tool unless present.
release_tool() {
  local name="$1" module="$2" version="$3" pkg="$4" tags="$5" ldflags="$6"
  local dir; dir="$(bin_dir "$name" "$version")"
  if have_bins "$dir" "$name"; then progress "  $name $version: present"; return 0; fi
  progress "  building $name $version (go build from the module proxy)"
  local src
  src="$(go mod download -json "$module@$version" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" || return 1
  mkdir -p "$dir"
  ( cd "$src" && CGO_ENABLED=0 run_logged "$name-build" go build -trimpath -tags "$tags" \
      -o "$dir/$name.tmp" -ldflags "$ldflags" "$pkg" ) || return 1
  mv "$dir/$name.tmp" "$dir/$name"
}

release_tool actionlint github.com/rhysd/actionlint "$ACTIONLINT_VERSION" ./cmd/actionlint "" \
  "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" || return 1
release_tool syft github.com/anchore/syft "$SYFT_VERSION" ./cmd/syft \
  "containers_image_openpgp,exclude_graphdriver_btrfs" \
  "-s -w -X main.version=$SYFT_VERSION" || return 1

out="$("$(bin_dir actionlint "$ACTIONLINT_VERSION")/actionlint" -version 2>&1)" \
  || { progress "  actionlint does not run: $out"; return 1; }
progress "  actionlint $(head -n1 <<<"$out")"
out="$("$(bin_dir syft "$SYFT_VERSION")/syft" version 2>&1)" \
  || { progress "  syft does not run: $out"; return 1; }
progress "  syft $(awk '/^Version:/ {print $2}' <<<"$out")"
