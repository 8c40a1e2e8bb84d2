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
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/* Every namespace an operator of this release watches (watchNamespaces, or all shards'), as JSON; an
empty list means all namespaces. */}}
{{- define "rolecall.ownedNamespaces" -}}
{{- $owned := .Values.watchNamespaces -}}
{{- range .Values.shards }}{{ $owned = concat $owned .namespaces }}{{ end -}}
{{- toJson $owned -}}
{{- end }}

{{/* Shards: each a namespace set with its own Deployment and Lease; no namespace may have two owners. */}}
{{- define "rolecall.checkShards" -}}
{{- if and .Values.shards .Values.watchNamespaces }}
{{- fail "set either shards or watchNamespaces: with shards, each shard's namespaces are what is watched" }}
{{- end }}
{{- $seen := dict }}
{{- $names := dict }}
{{- range .Values.shards }}
{{- if hasKey $names .name }}
{{- fail (printf "shard %q is listed twice" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- $shard := .name }}
{{- range .namespaces }}
{{- if hasKey $seen . }}
{{- fail (printf "namespace %q is in shards %q and %q: its resources would be acted on twice" . (get $seen .) $shard) }}
{{- end }}
{{- $_ := set $seen . $shard }}
{{- end }}
{{- end }}
{{- end }}

{{/* Who records requesters: "policy" or "webhook" (admission.mode, with auto resolved from the cluster's APIs:
Helm's built-in list under `helm template`). */}}
{{- define "rolecall.admissionMode" -}}
{{- if ne .Values.admission.mode "auto" -}}
{{ .Values.admission.mode }}
{{- else if .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy" -}}
policy
{{- else -}}
webhook
{{- end }}
{{- end }}

{{/* The names the apiserver reaches the webhook by, for its serving certificate. */}}
{{- define "rolecall.webhookDNSNames" -}}
{{- $names := list (printf "rolecall-operator-webhook.%s.svc" .Release.Namespace) (printf "rolecall-operator-webhook.%s.svc.cluster.local" .Release.Namespace) -}}
{{- toJson (concat $names .Values.admission.webhook.extraDNSNames) -}}
{{- end }}
