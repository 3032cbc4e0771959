{{/* The chart's name. */}}
{{- define "vk8s.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, the prefix of every resource name. */}}
{{- define "vk8s.fullname" -}}
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

{{/* Labels of every resource: (dict "context" $ "component" "provider"). */}}
{{- define "vk8s.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .context.Chart.Name .context.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vk8s.selectorLabels" . }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
{{- with .context.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select a component's pods: (dict "context" $ "component" "provider"). */}}
{{- define "vk8s.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vk8s.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* A component's ServiceAccount: (dict "context" $ "component" "provider"). */}}
{{- define "vk8s.serviceAccountName" -}}
{{- $sa := (index .context.Values .component).serviceAccount }}
{{- if $sa.create }}
{{- default (printf "%s-%s" (include "vk8s.fullname" .context) .component) $sa.name }}
{{- else }}
{{- required (printf "%s.serviceAccount.name is required when %s.serviceAccount.create is false" .component .component) $sa.name }}
{{- end }}
{{- end }}

{{/* The image of both processes: the digest when set, else the tag (default appVersion). */}}
{{- define "vk8s.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The webhook's Service, which the API server calls. */}}
{{- define "vk8s.webhook.serviceName" -}}
{{- printf "%s-webhook" (include "vk8s.fullname" .) }}
{{- end }}

{{/* The name of the webhook configurations and the kind policy (--configuration-name). */}}
{{- define "vk8s.webhook.configurationName" -}}
{{- default (printf "%s-webhook" (include "vk8s.fullname" .)) .Values.webhook.configurationName }}
{{- end }}

{{/* The Secret of the self-managed CA (--ca-secret). */}}
{{- define "vk8s.webhook.caSecretName" -}}
{{- default (printf "%s-webhook-ca" (include "vk8s.fullname" .)) .Values.webhook.selfManaged.secretName }}
{{- end }}

{{/* cert-manager's serving certificate of the webhook, and its Secret. */}}
{{- define "vk8s.webhook.certificateName" -}}
{{- printf "%s-webhook-tls" (include "vk8s.fullname" .) }}
{{- end }}

{{/*
The clientConfig of one webhook: (dict "context" $ "path" "/mutate/pods"). The caBundle is
left out: the webhook writes it (inject-ca) or cert-manager's CA injector does.
*/}}
{{- define "vk8s.webhook.clientConfig" -}}
{{- $v := .context.Values.webhook }}
{{- if $v.url }}
url: {{ printf "%s%s" (trimSuffix "/" $v.url) .path | quote }}
{{- else }}
service:
  name: {{ include "vk8s.webhook.serviceName" .context }}
  namespace: {{ .context.Release.Namespace }}
  path: {{ .path }}
  port: {{ $v.service.port }}
{{- end }}
{{- end }}

{{/* Annotations of the webhook configurations: cert-manager's CA injection. */}}
{{- define "vk8s.webhook.configurationAnnotations" -}}
{{- if .Values.webhook.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "vk8s.webhook.certificateName" .) }}
{{- end }}
{{- end }}
