{{/*
The chart's name, overridable with nameOverride.
*/}}
{{- define "coffer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: the StatefulSet, the API service and the pods' prefix. Kept to 52
characters so "<fullname>-internal" and the pods' names stay valid DNS labels.
*/}}
{{- define "coffer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "coffer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The headless service that names each pod. */}}
{{- define "coffer.internalService" -}}
{{- printf "%s-internal" (include "coffer.fullname" .) }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "coffer.labels" -}}
helm.sh/chart: {{ include "coffer.chart" . }}
app.kubernetes.io/name: {{ include "coffer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The selector of the server pods. */}}
{{- define "coffer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coffer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
component: server
{{- end }}

{{- define "coffer.serviceAccountName" -}}
{{- if .Values.server.serviceAccount.create }}
{{- default (include "coffer.fullname" .) .Values.server.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.server.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* http or https, for the API listener. */}}
{{- define "coffer.scheme" -}}
{{- if or .Values.global.tlsDisable .Values.server.dev.enabled }}http{{ else }}https{{ end }}
{{- end }}

{{/* The number of pods: one in dev mode. */}}
{{- define "coffer.replicas" -}}
{{- if .Values.server.dev.enabled }}1{{ else }}{{ int .Values.server.ha.replicas }}{{ end }}
{{- end }}

{{/* The image reference. */}}
{{- define "coffer.image" -}}
{{- printf "%s:%s" .Values.server.image.repository (default .Chart.AppVersion .Values.server.image.tag | toString) }}
{{- end }}

{{/*
A pod's stable DNS name through the headless service, resolvable from any namespace:
<pod>.<fullname>-internal.<namespace>.svc. Called with (list $ $podName).
*/}}
{{- define "coffer.podHost" -}}
{{- $root := index . 0 }}
{{- printf "%s.%s.%s.svc" (index . 1) (include "coffer.internalService" $root) $root.Release.Namespace }}
{{- end }}

{{/*
The configuration of one pod, in Vault's HCL (what `coffer server -config` reads).
Called with (list $ $ordinal). Coffer's config has no environment-variable expansion, so
each pod gets its own complete file, chosen at start by the pod name (see the
StatefulSet's args).
*/}}
{{- define "coffer.podConfig" -}}
{{- $root := index . 0 }}
{{- $ordinal := index . 1 }}
{{- $v := $root.Values }}
{{- $fullname := include "coffer.fullname" $root }}
{{- $scheme := include "coffer.scheme" $root }}
{{- $replicas := int (include "coffer.replicas" $root) }}
{{- $pod := printf "%s-%d" $fullname $ordinal -}}
# Configuration of pod {{ $pod }}, rendered by the coffer Helm chart.
api_addr     = "{{ $scheme }}://{{ include "coffer.podHost" (list $root $pod) }}:8200"
cluster_addr = "https://{{ include "coffer.podHost" (list $root $pod) }}:8201"
log_level    = {{ $v.server.logLevel | quote }}
log_format   = {{ $v.server.logFormat | quote }}

listener "tcp" {
  address         = "{{ $v.server.listenHost }}:8200"
  cluster_address = "{{ $v.server.listenHost }}:8201"
{{- if $v.global.tlsDisable }}
  tls_disable     = true
{{- else }}
  tls_cert_file   = "{{ $v.tls.mountPath }}/{{ $v.tls.certKey }}"
  tls_key_file    = "{{ $v.tls.mountPath }}/{{ $v.tls.keyKey }}"
  tls_min_version = {{ $v.tls.minVersion | quote }}
{{- end }}
}

storage "raft" {
  path    = {{ $v.server.dataStorage.mountPath | quote }}
{{- if $v.server.ha.raft.setNodeId }}
  node_id = {{ $pod | quote }}
{{- end }}
{{- if $v.server.ha.raft.retryJoin }}
{{- range $peer := until $replicas }}
{{- if ne $peer (int $ordinal) }}

  retry_join {
    leader_api_addr       = "{{ $scheme }}://{{ include "coffer.podHost" (list $root (printf "%s-%d" $fullname $peer)) }}:8200"
{{- if not $v.global.tlsDisable }}
    leader_ca_cert_file   = "{{ $v.tls.mountPath }}/{{ $v.tls.caKey }}"
{{- with $v.server.ha.raft.leaderTlsServername }}
    leader_tls_servername = {{ . | quote }}
{{- end }}
{{- end }}
  }
{{- end }}
{{- end }}
{{- end }}
}
{{- with $v.server.extraConfig }}

{{ . }}
{{- end }}
{{- end }}
