{{/* The image reference: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "ferrolb.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "ferrolb.labels" -}}
app.kubernetes.io/name: ferrolb
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selector labels of a component: the same as the manifests before the chart, so that
a kubectl-applied install can be taken over. */}}
{{- define "ferrolb.selector" -}}
app.kubernetes.io/name: ferrolb
app.kubernetes.io/component: {{ . }}
{{- end }}

{{/* A generated role file (config/rbac, copied by make manifests) in the release's namespace. */}}
{{- define "ferrolb.role" -}}
{{- $root := index . 0 }}
{{- range $doc := regexSplit "(?m)^---\\s*$" ($root.Files.Get (index . 1)) -1 }}
{{- if trim $doc }}
---
{{ $doc | replace "namespace: ferrolb-system" (printf "namespace: %s" $root.Release.Namespace) | trim }}
{{- end }}
{{- end }}
{{- end }}

{{/* Bindings of a component's ServiceAccount to its ClusterRole and its namespaced Role. */}}
{{- define "ferrolb.bindings" -}}
{{- $root := index . 0 }}{{- $name := index . 1 }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "ferrolb.labels" $root | nindent 4 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ $name }}
  labels:
    {{- include "ferrolb.labels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $root.Release.Namespace }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "ferrolb.labels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ $name }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
