{{- define "headway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "headway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "headway.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The recommended labels, on every object of the chart. */}}
{{- define "headway.labels" -}}
app.kubernetes.io/name: {{ include "headway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: headway
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The Deployment's selector (immutable: never add to it). */}}
{{- define "headway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "headway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "headway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "headway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount as an RBAC subject. */}}
{{- define "headway.subject" -}}
- kind: ServiceAccount
  name: {{ include "headway.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{/* Whether the controller may impersonate ServiceAccounts (beyond cluster-admin). */}}
{{- define "headway.impersonates" -}}
{{- if and (not .Values.rbac.clusterAdmin) (or .Values.rbac.impersonateServiceAccounts .Values.controller.defaultServiceAccount) -}}
true
{{- end -}}
{{- end -}}

{{/* What the controller itself needs in the namespaces of its GitSyncs. */}}
{{- define "headway.ownRules" -}}
- apiGroups: ["headway.dev"]
  resources: ["gitsyncs"]
  verbs: ["get", "list", "watch", "update", "patch"]
- apiGroups: ["headway.dev"]
  resources: ["gitsyncs/status", "gitsyncs/finalizers"]
  verbs: ["get", "update", "patch"]
# Repository credentials, webhook secrets (spec.webhook.secretRef), age keys (spec.decryption).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# The inventory of each GitSync (ConfigMaps headway-inventory-<name> in its namespace).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "create", "update", "patch", "delete", "deletecollection"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if include "headway.impersonates" . }}
# Syncing each GitSync as its ServiceAccount (spec.serviceAccountName,
# --default-service-account): service accounts only; the API server derives their groups.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["impersonate"]
{{- end }}
{{- end -}}
