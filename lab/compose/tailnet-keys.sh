#!/bin/sh
# One-shot of the local compose variant: mint the tagged pre-auth keys the nodes log in
# with and hand them over as files in the tailnet-keys volume (TS_AUTHKEY=file:...).
# A key is never printed: it goes from headscale's JSON answer straight into a 0400 file.
#   server.key  tag:mcp         reusable, not ephemeral (the state volume keeps the node);
#               owned by 65532, the sidecar image's user
#   client.key  tag:mcp-client  reusable, ephemeral (the demo client leaves no node behind)
set -eu
umask 077
out=/run/tailnet-keys

# mint TAG FILE OWNER FLAGS...: create a key for TAG and write it to $out/FILE.
mint() {
  tag=$1 file=$2 owner=$3
  shift 3
  json=$(headscale preauthkeys create --tags "$tag" --expiration 24h "$@" -o json-line) || {
    echo "tailnet-keys: headscale refused a key for $tag" >&2
    return 1
  }
  key=$(printf '%s' "$json" | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
  if [ -z "$key" ]; then
    echo "tailnet-keys: headscale answered without a key for $tag" >&2
    return 1
  fi
  printf '%s\n' "$key" >"$out/$file.tmp"
  chown "$owner" "$out/$file.tmp"
  chmod 0400 "$out/$file.tmp"
  mv -f "$out/$file.tmp" "$out/$file"
  echo "tailnet-keys: wrote $out/$file ($tag)"
}

mint tag:mcp server.key 65532:65532 --reusable
mint tag:mcp-client client.key 0:0 --reusable --ephemeral
