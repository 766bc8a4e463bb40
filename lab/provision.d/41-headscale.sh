# headscale, the self-hosted control server the lab's tailnet logs in to, from
# the Go module proxy at the pinned tag (no replace directives; pure-Go SQLite,
# so CGO is not needed).
dir="$(bin_dir headscale "$HEADSCALE_VERSION")"
if have_bins "$dir" headscale; then
  progress "  headscale $HEADSCALE_VERSION: cached in $dir"
  return 0
fi
mkdir -p "$dir"
progress "  go install github.com/juanfont/headscale/cmd/headscale@$HEADSCALE_VERSION (cold: a few minutes on 2 cores)"
GOBIN="$dir" CGO_ENABLED=0 run_logged "headscale-$HEADSCALE_VERSION" \
  go install -trimpath -ldflags="-s -w" "github.com/juanfont/headscale/cmd/headscale@$HEADSCALE_VERSION" || exit 1
have_bins "$dir" headscale || { progress "  headscale: binary missing in $dir after build"; exit 1; }
progress "  headscale $HEADSCALE_VERSION: $("$dir/headscale" version 2>/dev/null | head -n1)"
