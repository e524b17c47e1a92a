{{/* The release's name for its objects: "keykeeper" for a release called keykeeper. */}}
{{- define "keykeeper.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "keykeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "keykeeper.serviceAccountName" -}}
{{- default (include "keykeeper.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The operator's username, as the admission policies match it. */}}
{{- define "keykeeper.username" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "keykeeper.serviceAccountName" .) -}}
{{- end -}}

{{- define "keykeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keykeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "keykeeper.labels" -}}
{{ include "keykeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: keykeeper
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "keykeeper.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}
