{{- define "lake-operator.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lake-operator.labels" -}}
app.kubernetes.io/name: lake-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "lake-operator.selector" -}}
app.kubernetes.io/name: lake-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
