# tailscaled, tailscale and containerboot from the Go module proxy at the pinned
# tag (tailscale.com has no replace directives, so `go install pkg@version` works).
# CGO_ENABLED=0 gives static binaries like the official release, so they run in
# any image; -trimpath and -s -w keep the binaries small and the build reproducible; the
# shared GOCACHE makes a rebuild after a version bump cheap.
dir="$(bin_dir tailscale "$TAILSCALE_VERSION")"
bins=(tailscaled tailscale containerboot)
if have_bins "$dir" "${bins[@]}"; then
  progress "  tailscale $TAILSCALE_VERSION: cached in $dir"
  return 0
fi
mkdir -p "$dir"
pkgs=()
for b in "${bins[@]}"; do pkgs+=("tailscale.com/cmd/$b@$TAILSCALE_VERSION"); done
progress "  go install ${pkgs[*]} (cold: several minutes on 2 cores)"
GOBIN="$dir" CGO_ENABLED=0 run_logged "tailscale-$TAILSCALE_VERSION" \
  go install -trimpath -ldflags="-s -w" "${pkgs[@]}" || exit 1
have_bins "$dir" "${bins[@]}" || { progress "  tailscale: binaries missing in $dir after build"; exit 1; }
progress "  tailscale $TAILSCALE_VERSION: $("$dir/tailscale" version | head -n1)"
