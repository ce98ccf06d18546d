{{/* The PodDisruptionBudget API the cluster serves (the pattern of many public charts). */}}
{{- define "capabilities.pdb.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget" -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}
