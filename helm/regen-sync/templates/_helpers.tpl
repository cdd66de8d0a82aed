{{/* Names and labels. */}}
{{- define "regen-sync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "regen-sync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "regen-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regen-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "regen-sync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "regen-sync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: regen-sync
{{- end }}

{{- define "regen-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "regen-sync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "regen-sync.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
A setting as the service reads it from its environment. Helm holds every number as float64,
whose default formatting (1.048576e+06) the service would refuse as an integer.
*/}}
{{- define "regen-sync.settingValue" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
Where the chart mounts files for the service. The secrets directory is the service's default
REGEN_SECRETS_DIR; it is also set explicitly so the mount and the setting cannot drift apart.
*/}}
{{- define "regen-sync.secretsDir" -}}/run/secrets/regen-sync{{- end }}
{{- define "regen-sync.kafkaTlsDir" -}}/etc/regen-sync/kafka-tls{{- end }}

{{/* The Kafka settings the chart itself depends on, with the service's defaults. */}}
{{- define "regen-sync.securityProtocol" -}}
{{- dig "kafka" "security_protocol" "PLAINTEXT" .Values.config }}
{{- end }}

{{- define "regen-sync.usesSasl" -}}
{{- if hasPrefix "SASL_" (include "regen-sync.securityProtocol" .) }}true{{ end }}
{{- end }}

{{- define "regen-sync.usesTls" -}}
{{- if has (include "regen-sync.securityProtocol" .) (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{- define "regen-sync.httpPort" -}}
{{- dig "http" "port" 8080 .Values.config | int }}
{{- end }}

{{- define "regen-sync.secretName" -}}
{{- .Values.secret.existingSecret | default (printf "%s-credentials" (include "regen-sync.fullname" .)) }}
{{- end }}

{{/*
The upstream budgets of the whole consumer group, with the service's defaults: a JSON list of
{setting, label, value}. Each replica uses budget × its input partitions ÷ all input partitions,
rounded down and at least 1 (regen_sync.resilience.share).
*/}}
{{- define "regen-sync.upstreamBudgets" -}}
{{- $budgets := list }}
{{- range $upstream := list (list "zuora" "Zuora" 20 30000) (list "softwareone" "SoftwareOne" 10 3000) }}
{{- $name := index $upstream 0 }}
{{- $label := index $upstream 1 }}
{{- $budgets = append $budgets (dict "setting" (printf "config.%s.max_concurrency" $name) "label" (printf "%s concurrency" $label) "value" (dig $name "max_concurrency" (index $upstream 2) $.Values.config | int64)) }}
{{- $budgets = append $budgets (dict "setting" (printf "config.%s.requests_per_minute" $name) "label" (printf "%s requests/minute" $label) "value" (dig $name "requests_per_minute" (index $upstream 3) $.Values.config | int64)) }}
{{- end }}
{{- $budgets = append $budgets (dict "setting" "config.zuora.heavy_max_concurrency" "label" "Zuora invoice generation concurrency" "value" (dig "zuora" "heavy_max_concurrency" 10 $.Values.config | int64)) }}
{{- toJson $budgets }}
{{- end }}

{{/* The most replicas the release can run, and the value that sets it. */}}
{{- define "regen-sync.maxReplicasKey" -}}
{{- if eq .Values.autoscaling.mode "none" }}replicaCount{{ else }}autoscaling.maxReplicas{{ end }}
{{- end }}

{{- define "regen-sync.maxReplicas" -}}
{{- if eq .Values.autoscaling.mode "none" }}{{ .Values.replicaCount | int }}{{ else }}{{ .Values.autoscaling.maxReplicas | int }}{{ end }}
{{- end }}

{{/*
What each of `replicas` replicas uses of `budget`, as "N" or "smallest to biggest": the input
partitions are spread as evenly as possible, so a replica owns floor(P/R) or ceil(P/R) of them.
Without `partitions` (inputPartitions unknown) an even spread is assumed.
*/}}
{{- define "regen-sync.budgetShare" -}}
{{- $budget := int64 .budget }}
{{- $replicas := int64 .replicas }}
{{- $smallest := max 1 (div $budget $replicas) }}
{{- $biggest := $smallest }}
{{- if .partitions }}
{{- $partitions := int64 .partitions }}
{{- $smallest = max 1 (div (mul $budget (div $partitions $replicas)) $partitions) }}
{{- $biggest = max 1 (div (mul $budget (div (sub (add $partitions $replicas) 1) $replicas)) $partitions) }}
{{- end }}
{{- if eq $smallest $biggest }}{{ $smallest }}{{ else }}{{ $smallest }} to {{ $biggest }}{{ end }}
{{- end }}

{{/*
The credentials the service reads as SecretStr, each mounted as a file named like its variable
(the service's NestedSecretsSettingsSource reads REGEN_SECRETS_DIR/REGEN_<SECTION>__<FIELD>).
Yields a JSON list of {credential, file, key} for the credentials this release needs; fails
naming what is missing.
*/}}
{{- define "regen-sync.credentials" -}}
{{- /* Every template that needs the credentials needs consistent values first. */}}
{{- include "regen-sync.validate" . }}
{{- $files := dict
  "zuoraClientSecret" "REGEN_ZUORA__CLIENT_SECRET"
  "softwareoneApiToken" "REGEN_SOFTWAREONE__API_TOKEN"
  "kafkaSaslPassword" "REGEN_KAFKA__SASL_PASSWORD"
  "kafkaSslKeyPassword" "REGEN_KAFKA__SSL_KEY_PASSWORD" }}
{{- $needed := list "zuoraClientSecret" "softwareoneApiToken" }}
{{- if include "regen-sync.usesSasl" . }}
{{- $needed = append $needed "kafkaSaslPassword" }}
{{- end }}
{{- if .Values.secret.keys.kafkaSslKeyPassword }}
{{- $needed = append $needed "kafkaSslKeyPassword" }}
{{- end }}
{{- $credentials := list }}
{{- range $credential := $needed }}
{{- $key := get $.Values.secret.keys $credential }}
{{- if not $key }}
{{- fail (printf "secret.keys.%s must name the key holding this credential" $credential) }}
{{- end }}
{{- if and (not $.Values.secret.existingSecret) (not (get $.Values.secret.values $credential)) }}
{{- fail (printf "set secret.values.%s, or secret.existingSecret with the key %q" $credential $key) }}
{{- end }}
{{- $credentials = append $credentials (dict "credential" $credential "file" (get $files $credential) "key" $key) }}
{{- end }}
{{- toJson $credentials }}
{{- end }}

{{/*
Cross-field rules the values schema cannot express readably; any invalid combination stops the
whole release with one clear message.
*/}}
{{- define "regen-sync.validate" -}}
{{- $kafka := .Values.config.kafka | default dict }}
{{- if include "regen-sync.usesSasl" . }}
{{- if not (and $kafka.sasl_mechanism $kafka.sasl_username) }}
{{- fail (printf "config.kafka.security_protocol %s needs config.kafka.sasl_mechanism and config.kafka.sasl_username" (include "regen-sync.securityProtocol" .)) }}
{{- end }}
{{- end }}
{{- if and .Values.kafkaTls.existingSecret (not (include "regen-sync.usesTls" .)) }}
{{- fail "kafkaTls.existingSecret is set but config.kafka.security_protocol is neither SSL nor SASL_SSL" }}
{{- end }}
{{- if ne (empty .Values.kafkaTls.certFileKey) (empty .Values.kafkaTls.keyFileKey) }}
{{- fail "kafkaTls.certFileKey and kafkaTls.keyFileKey must be set together (mTLS)" }}
{{- end }}
{{- if and .Values.kafkaTls.certFileKey (not .Values.kafkaTls.existingSecret) }}
{{- fail "kafkaTls.certFileKey needs kafkaTls.existingSecret" }}
{{- end }}
{{- $grace := dig "processing" "shutdown_grace_seconds" 20 .Values.config | float64 }}
{{- if and .Values.terminationGracePeriodSeconds (le (float64 .Values.terminationGracePeriodSeconds) $grace) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.processing.shutdown_grace_seconds (%v): Kubernetes kills the pod when it runs out" .Values.terminationGracePeriodSeconds $grace) }}
{{- end }}
{{- $partitions := .Values.inputPartitions }}
{{- if ne .Values.autoscaling.mode "none" }}
{{- if not $partitions }}
{{- fail "autoscaling needs inputPartitions (the partition count of config.topics.input)" }}
{{- end }}
{{- if gt (int .Values.autoscaling.maxReplicas) (int $partitions) }}
{{- fail (printf "autoscaling.maxReplicas (%v) exceeds inputPartitions (%v): extra consumers would get no partition" .Values.autoscaling.maxReplicas $partitions) }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas exceeds autoscaling.maxReplicas" }}
{{- end }}
{{- else if and $partitions (gt (int .Values.replicaCount) (int $partitions)) }}
{{- fail (printf "replicaCount (%v) exceeds inputPartitions (%v): extra consumers would get no partition" .Values.replicaCount $partitions) }}
{{- end }}
{{- /* The budgets are the group's: every replica that owns a partition needs at least 1. */}}
{{- $replicas := include "regen-sync.maxReplicas" . | int64 }}
{{- range $budget := include "regen-sync.upstreamBudgets" . | fromJsonArray }}
{{- if lt (int64 $budget.value) $replicas }}
{{- fail (printf "%s (%d) is below %s (%d): it is the budget of the whole consumer group, and each replica needs at least 1 of it (a replica without budget would stall its partitions), so the group would exceed it" $budget.setting (int64 $budget.value) (include "regen-sync.maxReplicasKey" $) $replicas) }}
{{- end }}
{{- end }}
{{- if $kafka.group_instance_id }}
{{- fail "config.kafka.group_instance_id must differ per pod, so it cannot be a value of the release: set staticMembership.enabled=true and each pod joins the consumer group under its own name" }}
{{- end }}
{{- end }}

{{/* Drain time plus a margin for committing offsets and closing the producers. */}}
{{- define "regen-sync.terminationGracePeriodSeconds" -}}
{{- if .Values.terminationGracePeriodSeconds }}
{{- .Values.terminationGracePeriodSeconds | int }}
{{- else }}
{{- $grace := dig "processing" "shutdown_grace_seconds" 20 .Values.config | float64 }}
{{- add (ceil $grace | int) 15 }}
{{- end }}
{{- end }}

{{/* KEDA needs a TriggerAuthentication only when the brokers want credentials or a private CA. */}}
{{- define "regen-sync.kedaAuthName" -}}
{{- if or (include "regen-sync.usesSasl" .) .Values.kafkaTls.existingSecret }}
{{- printf "%s-kafka" (include "regen-sync.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The pieces of the pod shared by the Deployment and the `helm test` pod: the same user,
restrictions, settings and credentials.
*/}}
{{- define "regen-sync.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.securityContext.runAsUser }}
runAsUser: {{ . }}
{{- end }}
{{- with .Values.securityContext.runAsGroup }}
runAsGroup: {{ . }}
{{- end }}
{{- with .Values.securityContext.fsGroup }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "regen-sync.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The container's environment; takes (dict "root" $ "staticMember" bool). Only the Deployment's
pods are static members: the `helm test` pod never joins the consumer group.
*/}}
{{- define "regen-sync.environment" -}}
{{- $values := .root.Values -}}
envFrom:
  - configMapRef:
      name: {{ include "regen-sync.fullname" .root }}
  {{- with $values.extraEnvFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- if or .staticMember $values.extraEnv }}
env:
  {{- if .staticMember }}
  # Static group membership (KIP-345): the pod's name is unique in the group and survives a
  # restart of the container.
  - name: REGEN_KAFKA__GROUP_INSTANCE_ID
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  {{- end }}
  {{- with $values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end }}

{{- define "regen-sync.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: credentials
  mountPath: {{ include "regen-sync.secretsDir" . }}
  readOnly: true
{{- if .Values.kafkaTls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "regen-sync.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "regen-sync.volumes" -}}
{{- $credentials := include "regen-sync.credentials" . | fromJsonArray -}}
# The root filesystem is read-only; /tmp is the only place the process may write.
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: credentials
  secret:
    secretName: {{ include "regen-sync.secretName" . }}
    defaultMode: 0440
    items:
      {{- range $credentials }}
      - key: {{ .key }}
        path: {{ .file }}
      {{- end }}
{{- with .Values.kafkaTls }}
{{- if .existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .caFileKey }}
        path: {{ .caFileKey }}
      {{- if .certFileKey }}
      - key: {{ .certFileKey }}
        path: {{ .certFileKey }}
      - key: {{ .keyFileKey }}
        path: {{ .keyFileKey }}
      {{- end }}
{{- end }}
{{- end }}
{{- end }}
