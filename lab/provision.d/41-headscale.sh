# headscale, the self-hosted control server the lab's tailnet logs in to, from
# the Go module proxy at the pinned tag (no replace directives; pure-Go SQLite,
# so CGO_ENABLED=0 gives a static binary that runs in any image).
dir="$(bin_dir headscale "$HEADSCALE_VERSION")"
if have_bins "$dir" headscale; then
  progress "  headscale $HEADSCALE_VERSION: cached in $dir"
  return 0
fi
mkdir -p "$dir"
mod="github.com/juanfont/headscale"
progress "  go install $mod/cmd/headscale@$HEADSCALE_VERSION (cold: a few minutes on 2 cores)"
if ! GOBIN="$dir" CGO_ENABLED=0 run_logged "headscale-$HEADSCALE_VERSION" \
    go install -trimpath -ldflags="-s -w" "$mod/cmd/headscale@$HEADSCALE_VERSION"; then
  # `go install pkg@version` also reads the module's @v/list to check for a
  # deprecation notice; a proxy that refuses that list (403) fails the install
  # although the pinned version itself is available. Fall back to building the
  # downloaded module in place, with its own go.mod/go.sum (same dependencies;
  # `headscale version` then says "dev", as for any build from source).
  progress "  go install refused; building $mod@$HEADSCALE_VERSION from its downloaded module instead"
  src="$(go mod download -json "$mod@$HEADSCALE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$src" && -d "$src" ]] || { progress "  headscale: could not download $mod@$HEADSCALE_VERSION"; exit 1; }
  ( cd "$src" && CGO_ENABLED=0 run_logged "headscale-$HEADSCALE_VERSION-src" \
      go build -trimpath -ldflags="-s -w" -o "$dir/headscale" ./cmd/headscale ) || exit 1
fi
have_bins "$dir" headscale || { progress "  headscale: binary missing in $dir after build"; exit 1; }
progress "  headscale $HEADSCALE_VERSION: $("$dir/headscale" version 2>/dev/null | head -n1)"
