# Helm (the v3 CLI) for tests/charts: `helm lint`, `helm template`, `helm package`
# of charts/mcp-tailnet. Built from the Go module proxy at the pinned version
# (lab/versions.env HELM_VERSION), like the other Go tools: no registry here
# serves a helm binary. A plain `go build` inside the downloaded module, so
# helm's own go.mod and go.sum are the main module (as its Makefile builds it),
# with the Makefile's ldflags: the version, and the Kubernetes version that
# `helm lint` / `helm template` assume (from the client-go helm requires).
dir="$(bin_dir helm "$HELM_VERSION")"
if have_bins "$dir" helm; then
  progress "  helm $HELM_VERSION: present"
else
  progress "  building helm $HELM_VERSION (go build from the module proxy)"
  src="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  # client-go v0.MINOR.x -> Kubernetes 1.MINOR (the Makefile's K8S_MODULES_* arithmetic).
  k8s="$(cd "$src" && go list -m -f '{{.Version}}' k8s.io/client-go)"
  [[ "$k8s" =~ ^v0\.([0-9]+)\. ]] || { progress "  unexpected client-go version $k8s in helm's go.mod"; return 1; }
  minor="${BASH_REMATCH[1]}"
  ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$minor"
  done
  mkdir -p "$dir"
  ( cd "$src" && CGO_ENABLED=0 run_logged helm-build go build -trimpath -o "$dir/helm.tmp" \
      -ldflags "$ldflags" ./cmd/helm )
  mv "$dir/helm.tmp" "$dir/helm"
fi
# HELM_* dirs point into the cache so a version check writes nothing under $HOME.
out="$(HELM_CACHE_HOME="$MCP_TAILNET_CACHE/helm-home/cache" HELM_CONFIG_HOME="$MCP_TAILNET_CACHE/helm-home/config" \
       HELM_DATA_HOME="$MCP_TAILNET_CACHE/helm-home/data" "$dir/helm" version --short 2>&1)" \
  || { progress "  helm does not run: $out"; return 1; }
[[ "$out" == "$HELM_VERSION"* ]] || { progress "  helm reports $out, expected $HELM_VERSION"; return 1; }
progress "  helm $out"
