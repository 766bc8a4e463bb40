# Node.js MCP clients for tests/clients (the client compatibility matrix): the official
# TypeScript SDK, mcp-remote (the stdio bridge Claude Desktop runs) and
# @modelcontextprotocol/server-everything (a 2025-era TypeScript-SDK server).
#
# `npm ci` from lab/node-clients (exact versions, integrity hashes, no install scripts)
# into $MCP_TAILNET_CACHE/npm/node-clients-<lockfile hash>; npm's download cache sits
# beside it. mcp_tailnet_lab.node_clients computes that directory and checks the pins
# against lab/versions.env (one definition for this step and the tests). A warm run
# hashes one file and returns.

node_clients() { PYTHONPATH="$LAB_DIR/src" python3 -B -m mcp_tailnet_lab.node_clients "$@"; }

node_out="$(node_clients install-dir)"
if [[ -f "$node_out/.verified" ]]; then
  progress "  node clients cached in $node_out"
  return 0
fi
node_clients check-lock

# Node.js itself: the machine's when it is new enough, else Debian's (bookworm: 18).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  progress "  apt-get install nodejs npm"
  DEBIAN_FRONTEND=noninteractive run_logged apt-nodejs apt-get install -y -q --no-install-recommends nodejs npm \
    || { run_logged apt-update apt-get update -q \
         && DEBIAN_FRONTEND=noninteractive run_logged apt-nodejs apt-get install -y -q --no-install-recommends nodejs npm; } \
    || return 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 18 )); then
  progress "  node $(node --version) is too old: the MCP TypeScript SDK needs Node.js >= 18"
  return 1
fi

progress "  npm ci lab/node-clients -> $node_out (node $(node --version), npm $(npm --version))"
tmp="$node_out.partial"
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$LAB_DIR/node-clients/package.json" "$LAB_DIR/node-clients/package-lock.json" "$tmp/"
run_logged npm-ci-node-clients npm ci --prefix "$tmp" --cache "$MCP_TAILNET_CACHE/npm/_cache" --prefer-offline \
  --ignore-scripts --no-audit --no-fund --no-update-notifier --loglevel=warn
node_clients verify "$tmp"
touch "$tmp/.verified"
rm -rf "$node_out"
mv "$tmp" "$node_out"
progress "  node clients: $(cd "$LAB_DIR/node-clients" && node -p 'Object.entries(require("./package.json").dependencies).map(([p, v]) => p + " " + v).join(", ")')"
