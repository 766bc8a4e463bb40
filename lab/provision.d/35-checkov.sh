# checkov, the offline policy scanner tests/manifests runs over manifests/.
#
# It lives in its own virtualenv, not in the workspace's uv.lock: every checkov 3.x
# pins packaging<24 while pytest 9 needs packaging>=24, so they cannot share one env.
# The test finds it at $MCP_TAILNET_CACHE/bin/checkov-$CHECKOV_VERSION/checkov.
checkov_out="$(bin_dir checkov "$CHECKOV_VERSION")"
# The stamp is written only after `checkov --version` ran once (13 s of imports),
# so a warm run costs nothing.
if have_bins "$checkov_out" checkov && [[ -f "$checkov_out/.verified" ]]; then
  progress "  checkov $CHECKOV_VERSION cached in $checkov_out"
  return 0
fi
checkov_venv="$MCP_TAILNET_CACHE/venv/checkov-$CHECKOV_VERSION"
rm -rf "$checkov_venv"
run_logged checkov-venv uv venv --quiet --python 3.11 "$checkov_venv"
run_logged checkov-install uv pip install --quiet --python "$checkov_venv/bin/python" "checkov==$CHECKOV_VERSION"
mkdir -p "$checkov_out"
ln -sfn "$checkov_venv/bin/checkov" "$checkov_out/checkov"
"$checkov_out/checkov" --version >&2
touch "$checkov_out/.verified"
