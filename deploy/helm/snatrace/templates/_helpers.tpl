{{/* The labels of every object: the kustomize manifests' own, plus Helm's. */}}
{{- define "snatrace.labels" -}}
app.kubernetes.io/name: snatrace
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The pods' labels, which the DaemonSet and Service select on. */}}
{{- define "snatrace.selector" -}}
app.kubernetes.io/name: snatrace
app.kubernetes.io/component: exporter
{{- end }}

{{- define "snatrace.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
