"""The local lab of real components: headscale, tailscaled nodes in network namespaces, an envtest-style kube-apiserver, a Docker engine."""
