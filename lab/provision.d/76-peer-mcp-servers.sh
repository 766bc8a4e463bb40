# The peer MCP servers bench/inspector_bench.py measures eks-inspector against, exact versions
# from lab/versions.env, each cached under its version:
#  - containers/kubernetes-mcp-server: the npm package kubernetes-mcp-server-linux-amd64 ships the
#    prebuilt Go binary (no install script runs); linked as bin/kubernetes-mcp-server-<v>/kubernetes-mcp-server.
#  - awslabs eks-mcp-server (PyPI awslabs-eks-mcp-server) in its own venv: its dependency pins are
#    not the workspace's uv.lock; linked as bin/eks-mcp-server-<v>/awslabs.eks-mcp-server.
# A stamp is written only after each answered --help once, so a warm run only tests two files.
kms_out="$(bin_dir kubernetes-mcp-server "$KUBERNETES_MCP_SERVER_VERSION")"
kms_pkg=kubernetes-mcp-server-linux-amd64
if have_bins "$kms_out" kubernetes-mcp-server && [[ -f "$kms_out/.verified" ]]; then
  progress "  kubernetes-mcp-server $KUBERNETES_MCP_SERVER_VERSION cached in $kms_out"
else
  [[ "$(uname -m)" == x86_64 ]] || { progress "  $kms_pkg is built for x86_64 only, this is $(uname -m)"; return 1; }
  kms_npm="$MCP_TAILNET_CACHE/npm/kubernetes-mcp-server-$KUBERNETES_MCP_SERVER_VERSION"
  rm -rf "$kms_npm" "$kms_out"
  mkdir -p "$kms_npm"
  run_logged npm-kubernetes-mcp-server npm install --prefix "$kms_npm" --cache "$MCP_TAILNET_CACHE/npm/_cache" \
    --prefer-offline --ignore-scripts --no-audit --no-fund --no-update-notifier --save-exact --loglevel=warn \
    "$kms_pkg@$KUBERNETES_MCP_SERVER_VERSION"
  installed="$(node -p "require('$kms_npm/node_modules/$kms_pkg/package.json').version")"
  [[ "$installed" == "$KUBERNETES_MCP_SERVER_VERSION" ]] \
    || { progress "  npm installed $kms_pkg $installed, lab/versions.env pins $KUBERNETES_MCP_SERVER_VERSION"; return 1; }
  mkdir -p "$kms_out"
  ln -sfn "$kms_npm/node_modules/$kms_pkg/bin/$kms_pkg" "$kms_out/kubernetes-mcp-server"
  "$kms_out/kubernetes-mcp-server" --help >/dev/null
  touch "$kms_out/.verified"
  progress "  kubernetes-mcp-server $KUBERNETES_MCP_SERVER_VERSION -> $kms_out"
fi

eks_out="$(bin_dir eks-mcp-server "$AWSLABS_EKS_MCP_SERVER_VERSION")"
if have_bins "$eks_out" awslabs.eks-mcp-server && [[ -f "$eks_out/.verified" ]]; then
  progress "  awslabs eks-mcp-server $AWSLABS_EKS_MCP_SERVER_VERSION cached in $eks_out"
else
  eks_venv="$MCP_TAILNET_CACHE/venv/eks-mcp-server-$AWSLABS_EKS_MCP_SERVER_VERSION"
  rm -rf "$eks_venv" "$eks_out"
  run_logged eks-mcp-server-venv uv venv --quiet --python 3.11 "$eks_venv"
  run_logged eks-mcp-server-install uv pip install --quiet --python "$eks_venv/bin/python" \
    "awslabs-eks-mcp-server==$AWSLABS_EKS_MCP_SERVER_VERSION"
  mkdir -p "$eks_out"
  ln -sfn "$eks_venv/bin/awslabs.eks-mcp-server" "$eks_out/awslabs.eks-mcp-server"
  "$eks_out/awslabs.eks-mcp-server" --help >/dev/null
  touch "$eks_out/.verified"
  progress "  awslabs eks-mcp-server $AWSLABS_EKS_MCP_SERVER_VERSION -> $eks_out"
fi
