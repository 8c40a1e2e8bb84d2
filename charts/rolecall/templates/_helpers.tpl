{{/* Selector labels: fixed, so a Deployment's immutable selector never changes between chart versions. */}}
{{- define "rolecall.selectorLabels" -}}
app.kubernetes.io/name: rolecall
{{- end }}

{{/* Labels for the objects this chart templates here (not the generated RBAC, roles and policies). */}}
{{- define "rolecall.labels" -}}
{{ include "rolecall.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rolecall.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
