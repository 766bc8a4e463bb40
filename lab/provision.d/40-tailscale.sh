# tailscaled, tailscale and containerboot from the Go module proxy at the pinned
# tag (tailscale.com has no replace directives, so `go install pkg@version` works).
# CGO_ENABLED=0 gives static binaries like the official release, so they run in
# any image; -trimpath and -s -w keep them small. The version stamps are the ones
# tailscale's build_dist.sh sets: without them `tailscale version` says
# "1.102.3-ERR-BuildInfo", since a module built by go install has no VCS info.
dir="$(bin_dir tailscale "$TAILSCALE_VERSION")"
bins=(tailscaled tailscale containerboot)
if have_bins "$dir" "${bins[@]}"; then
  progress "  tailscale $TAILSCALE_VERSION: cached in $dir"
  return 0
fi
mkdir -p "$dir"
pkgs=()
for b in "${bins[@]}"; do pkgs+=("tailscale.com/cmd/$b@$TAILSCALE_VERSION"); done
stamp="${TAILSCALE_VERSION#v}"
progress "  go install ${pkgs[*]} (cold: 10-15 minutes on 2 busy cores)"
GOBIN="$dir" CGO_ENABLED=0 run_logged "tailscale-$TAILSCALE_VERSION" \
  go install -trimpath \
    -ldflags="-s -w -X tailscale.com/version.longStamp=$stamp -X tailscale.com/version.shortStamp=$stamp" \
    "${pkgs[@]}" || exit 1
have_bins "$dir" "${bins[@]}" || { progress "  tailscale: binaries missing in $dir after build"; exit 1; }
progress "  tailscale $TAILSCALE_VERSION: $("$dir/tailscale" version | head -n1)"
