{{- define "loom.name" -}}loom-gateway-controller{{- end -}}
{{- define "loom.fullname" -}}{{ .Release.Name }}-loom{{- end -}}
{{- define "loom.dataPlaneRole" -}}{{ include "loom.fullname" . }}-data-plane{{- end -}}
{{- define "loom.labels" -}}
app.kubernetes.io/name: {{ include "loom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "loom.selector" -}}
app.kubernetes.io/name: {{ include "loom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "loom.statusAddress" -}}
{{- default (printf "%s.%s.svc" (include "loom.fullname" .) .Release.Namespace) .Values.listen.statusAddress -}}
{{- end -}}
{{- define "loom.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
