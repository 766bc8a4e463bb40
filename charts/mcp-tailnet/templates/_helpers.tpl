{{/* The namespace every object goes to. */}}
{{- define "mcp-tailnet.namespace" -}}
{{- .Values.namespace.name | default .Release.Namespace -}}
{{- end -}}

{{/* One of our images: REGISTRY/NAME:TAG, TAG defaulting to the chart's appVersion (images/release.env). */}}
{{- define "mcp-tailnet.image" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}{{- $explicit := index . 2 -}}
{{- $explicit | default (printf "%s/%s:%s" $root.Values.images.registry $name ($root.Values.images.tag | default $root.Chart.AppVersion)) -}}
{{- end -}}

{{- define "mcp-tailnet.serverSA" -}}
{{- .Values.server.serviceAccount.name | default .Values.server.name -}}
{{- end -}}

{{- define "mcp-tailnet.sidecarSA" -}}
{{- if .Values.sidecar.serviceAccountName -}}{{ .Values.sidecar.serviceAccountName }}
{{- else if .Values.server.inspector -}}mcp-tailnet-sidecar
{{- else -}}{{ .Values.server.name }}-sidecar{{- end -}}
{{- end -}}

{{- define "mcp-tailnet.containerName" -}}
{{- .Values.server.containerName | default (ternary "eks-inspector" "mcp-server" .Values.server.inspector) -}}
{{- end -}}

{{- define "mcp-tailnet.stateSecret" -}}
{{- printf "%s-tailscale-state" .Values.server.name -}}
{{- end -}}

{{/* Where the server listens: its own address, or the hub's upstream alias with the hub. */}}
{{- define "mcp-tailnet.serverHost" -}}
{{- if .Values.hub.enabled }}{{ .Values.hub.serverHost }}{{ else }}{{ .Values.server.host }}{{ end -}}
{{- end -}}

{{/* "true" when the inspector acts as its tailnet caller (identity.impersonation.enabled). */}}
{{- define "mcp-tailnet.impersonating" -}}
{{- $imp := .Values.identity.impersonation -}}
{{- if kindIs "map" $imp }}{{ if $imp.enabled }}true{{ end }}{{ end -}}
{{- end -}}

{{/* Every refusal, with what to do, before anything renders. */}}
{{- define "mcp-tailnet.validate" -}}
{{- $imp := .Values.identity.impersonation -}}
{{- if not (kindIs "map" $imp) -}}
{{- fail "identity.impersonation: a map of enabled, users and groups (docs/access-kubernetes.md), not a single value" -}}
{{- end -}}
{{- if $imp.enabled -}}
{{- if not .Values.server.inspector -}}
{{- fail "identity.impersonation.enabled: impersonation is the inspector's mode (server.inspector=true)" -}}
{{- end -}}
{{- if .Values.hub.enabled -}}
{{- fail "identity.impersonation.enabled with hub.enabled: mcp-hub does not hand the caller's Mcp-Tailnet-Caller-* headers on, so every call would be refused; pair the inspector with its sidecar directly" -}}
{{- end -}}
{{- if not (or $imp.users $imp.groups) -}}
{{- fail "identity.impersonation: list the users and/or groups the inspector may act as (an empty list would mean every name, system:masters included)" -}}
{{- end -}}
{{- range $name := concat ($imp.users | default list) ($imp.groups | default list) -}}
{{- if or (hasPrefix "system:" (lower $name)) (contains "*" $name) (eq $name "") -}}
{{- fail (printf "identity.impersonation: %q is never impersonated (no system: names, no wildcards)" $name) -}}
{{- end -}}
{{- end -}}
{{- range $name := ($imp.users | default list) -}}
{{- if hasPrefix "tailnet:tag:" $name -}}
{{- fail (printf "identity.impersonation.users: %q is a tag's group; list it under groups" $name) -}}
{{- end -}}
{{- end -}}
{{- range $name := ($imp.groups | default list) -}}
{{- if not (hasPrefix "tailnet:tag:" $name) -}}
{{- fail (printf "identity.impersonation.groups: %q is not tailnet:tag:NAME (the only groups a caller maps to)" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.sidecar.mode (list "userspace" "tun")) -}}
{{- fail (printf "sidecar.mode: %q is not userspace or tun" .Values.sidecar.mode) -}}
{{- end -}}
{{- if and (eq .Values.sidecar.mode "tun") (ne .Values.namespace.enforce "privileged") -}}
{{- fail "sidecar.mode=tun needs root, NET_ADMIN and /dev/net/tun: set namespace.enforce=privileged and a namespace of its own (examples/tun.yaml)" -}}
{{- end -}}
{{- if and (not .Values.server.inspector) (not .Values.server.image) -}}
{{- fail "server.image: required when server.inspector is false (the unchanged MCP server image to pair)" -}}
{{- end -}}
{{- if and .Values.aws.irsaRoleArn .Values.aws.podIdentity -}}
{{- fail "aws: choose IRSA (aws.irsaRoleArn) or Pod Identity (aws.podIdentity), not both" -}}
{{- end -}}
{{- if and (or .Values.aws.irsaRoleArn .Values.aws.podIdentity) (not (and .Values.aws.eksCluster .Values.aws.region)) -}}
{{- fail "aws.eksCluster and aws.region: required with IRSA or Pod Identity (the cluster the inspector's EKS tools read)" -}}
{{- end -}}
{{- if and .Values.hub.enabled (not .Values.hub.config) -}}
{{- fail "hub.config: the hub.toml to mount (docs/hub.md; examples/hub.yaml has one)" -}}
{{- end -}}
{{- range $bad := list "127.0.0.1" "localhost" "0.0.0.0" "::" "127.0.0.2" -}}
{{- if and $.Values.hub.enabled (eq $.Values.hub.serverHost $bad) -}}
{{- fail (printf "hub.serverHost: %s is reachable past the gateway or is the gateway's; use a loopback alias such as 127.0.0.4" $bad) -}}
{{- end -}}
{{- if and $.Values.server.inspector (eq $.Values.server.host $bad) -}}
{{- fail (printf "server.host: the inspector listens on a loopback alias of its own (127.0.0.3), not %s (docs/design.md facts 1, 7)" $bad) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mcp-tailnet.labels" -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/part-of: mcp-tailnet
{{- end -}}
