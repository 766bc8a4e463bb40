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
{{- include "mcp-tailnet.validateClusters" . -}}
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

{{/* Where the inspector reads INSPECTOR_CLUSTERS and the kubeconfigs its entries name. */}}
{{- define "mcp-tailnet.clustersDir" -}}/etc/eks-inspector/clusters{{- end -}}
{{- define "mcp-tailnet.kubeconfigsDir" -}}/etc/eks-inspector/kubeconfigs{{- end -}}

{{/* server.clusters as the inspector's INSPECTOR_CLUSTERS file (JSON: no YAML ambiguity), each
     kubeconfig key turned into the path of its file in the mounted Secret. */}}
{{- define "mcp-tailnet.clustersFile" -}}
{{- $out := list -}}
{{- range $entry := .Values.server.clusters -}}
{{- $e := deepCopy $entry -}}
{{- if $e.kubeconfig -}}
{{- $_ := set $e "kubeconfig" (printf "%s/%s" (include "mcp-tailnet.kubeconfigsDir" $) $e.kubeconfig) -}}
{{- end -}}
{{- $out = append $out $e -}}
{{- end -}}
{{- toJson (dict "clusters" $out) -}}
{{- end -}}

{{/* server.clusters checked as the inspector checks INSPECTOR_CLUSTERS at start (clusters_config.py:
     the same name, EKS name, region, role ARN and context shapes), plus what only a pod lacks: a
     kubeconfig entry's file comes from clustersKubeconfigSecret, an EKS entry's AWS credentials
     from IRSA or Pod Identity. Refused at install, not in a crash-looping pod. */}}
{{- define "mcp-tailnet.validateClusters" -}}
{{- $clusters := .Values.server.clusters -}}
{{- if not (kindIs "slice" $clusters) -}}
{{- fail "server.clusters: a list of entries (name and context/kubeconfig or eks_cluster with region), not a single value" -}}
{{- end -}}
{{- if and $clusters (not .Values.server.inspector) -}}
{{- fail "server.clusters: several clusters are the inspector's (server.inspector=true)" -}}
{{- end -}}
{{- if gt (len $clusters) 100 -}}
{{- fail "server.clusters: at most 100 clusters" -}}
{{- end -}}
{{- $aws := or .Values.aws.irsaRoleArn .Values.aws.podIdentity -}}
{{- $known := list "name" "context" "kubeconfig" "eks_cluster" "region" "role_arn" -}}
{{- $shapes := dict "name" "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" "context" "^[^\\x00-\\x1f\\x7f]{1,253}$" "kubeconfig" "^[-._a-zA-Z0-9]{1,253}$" "eks_cluster" "^[0-9A-Za-z][A-Za-z0-9\\-_]{0,99}$" "region" "^[a-z]{2}(-[a-z]+)+-\\d+$" "role_arn" "^arn:aws(-[a-z]+)*:iam::\\d{12}:role/[\\w+=,.@/-]{1,512}$" -}}
{{- $what := dict "name" "a lowercase DNS label" "context" "a kubeconfig context name" "kubeconfig" "a key of server.clustersKubeconfigSecret" "eks_cluster" "an EKS cluster name" "region" "an AWS region name" "role_arn" "an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)" -}}
{{- $seen := dict -}}
{{- $kubeconfigs := false -}}
{{- range $i, $e := $clusters -}}
{{- $where := printf "server.clusters[%d]" $i -}}
{{- if not (kindIs "map" $e) -}}
{{- fail (printf "%s: a map with name and context/kubeconfig or eks_cluster with region" $where) -}}
{{- end -}}
{{- range $k := keys $e | sortAlpha -}}
{{- if not (has $k $known) -}}
{{- fail (printf "%s: unknown key %q (known: %s)" $where $k (join ", " $known)) -}}
{{- end -}}
{{- $v := index $e $k -}}
{{- if not (and (kindIs "string" $v) (regexMatch (index $shapes $k) $v)) -}}
{{- fail (printf "%s: %s %q is not %s" $where $k (toString $v | trunc 100) (index $what $k)) -}}
{{- end -}}
{{- end -}}
{{- if not (hasKey $e "name") -}}
{{- fail (printf "%s: name is required" $where) -}}
{{- end -}}
{{- $where = printf "%s (%s)" $where $e.name -}}
{{- if eq $e.name "default" -}}
{{- fail (printf "%s: \"default\" is the inspector's own cluster; choose another name" $where) -}}
{{- end -}}
{{- if hasKey $seen $e.name -}}
{{- fail (printf "%s: the name %q is used twice" $where $e.name) -}}
{{- end -}}
{{- $_ := set $seen $e.name true -}}
{{- if not (or (hasKey $e "context") (hasKey $e "kubeconfig") (hasKey $e "eks_cluster")) -}}
{{- fail (printf "%s: give kubeconfig (and optionally context) or eks_cluster with region" $where) -}}
{{- end -}}
{{- if and (hasKey $e "eks_cluster") (not (hasKey $e "region")) -}}
{{- fail (printf "%s: eks_cluster needs region" $where) -}}
{{- end -}}
{{- if and (or (hasKey $e "region") (hasKey $e "role_arn")) (not (hasKey $e "eks_cluster")) -}}
{{- fail (printf "%s: region and role_arn belong to an eks_cluster entry" $where) -}}
{{- end -}}
{{- if and (hasKey $e "context") (not (hasKey $e "kubeconfig")) -}}
{{- fail (printf "%s: the pod has no kubeconfig of its own: name the key of server.clustersKubeconfigSecret that holds this context (kubeconfig: KEY)" $where) -}}
{{- end -}}
{{- if hasKey $e "kubeconfig" -}}
{{- $kubeconfigs = true -}}
{{- if not $.Values.server.clustersKubeconfigSecret -}}
{{- fail (printf "%s: kubeconfig %q needs server.clustersKubeconfigSecret (the Secret you create with that key)" $where $e.kubeconfig) -}}
{{- end -}}
{{- if has $e.kubeconfig (list "." "..") -}}
{{- fail (printf "%s: kubeconfig %q is not a key of server.clustersKubeconfigSecret" $where $e.kubeconfig) -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $e "eks_cluster") (not $aws) -}}
{{- fail (printf "%s: an EKS entry needs the inspector's AWS credentials: aws.irsaRoleArn or aws.podIdentity (examples/clusters.yaml)" $where) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.server.clustersKubeconfigSecret (not $kubeconfigs) -}}
{{- fail "server.clustersKubeconfigSecret: no server.clusters entry names one of its keys (kubeconfig: KEY); unset it rather than mount credentials nothing uses" -}}
{{- end -}}
{{- end -}}

{{- define "mcp-tailnet.labels" -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/part-of: mcp-tailnet
{{- end -}}
