{{/* Names, labels and shared pieces of the Babelfish chart. */}}

{{- define "babelfish.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* fullname: release-prefixed unless the release name already holds it. */}}
{{- define "babelfish.fullname" -}}
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

{{/* component name: fullname-component, within 63 characters. */}}
{{- define "babelfish.component" -}}
{{- printf "%s-%s" (include "babelfish.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component -}}
{{- end -}}

{{- define "babelfish.selectorLabels" -}}
app.kubernetes.io/name: {{ include "babelfish.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* selector: the selector labels as a label selector string (a=b,c=d). */}}
{{- define "babelfish.selector" -}}
{{- printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s,app.kubernetes.io/component=%s" (include "babelfish.name" .root) .root.Release.Name .component -}}
{{- end -}}

{{- define "babelfish.labels" -}}
{{ include "babelfish.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: babelfish
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "babelfish.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Prometheus scrape annotations for a pod serving metrics on .port at .path (default /metrics). */}}
{{- define "babelfish.scrapeAnnotations" -}}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: {{ .path | default "/metrics" }}
{{- end }}
{{- end -}}

{{/* Pod security context of the components that need no privilege. */}}
{{- define "babelfish.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context of the components that need no privilege. */}}
{{- define "babelfish.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Name of the Secret holding the object store's keys. */}}
{{- define "babelfish.s3Secret" -}}
{{- if eq .Values.objectStore.mode "external" -}}
{{- .Values.objectStore.external.credentialsSecret.name -}}
{{- else -}}
{{- default (include "babelfish.component" (dict "root" . "component" "minio")) .Values.minio.existingSecret -}}
{{- end -}}
{{- end -}}

{{/*
Environment of every component that reads or writes the object store: the
BABELFISH_S3_* variables objstore.ConfigFromEnv reads, keys from a Secret.
*/}}
{{- define "babelfish.s3Env" -}}
{{- $os := .Values.objectStore -}}
- name: BABELFISH_S3_BUCKET
  value: {{ $os.bucket | quote }}
{{- with $os.region }}
- name: BABELFISH_S3_REGION
  value: {{ . | quote }}
{{- end }}
{{- if eq $os.mode "external" }}
- name: BABELFISH_S3_ENDPOINT
  value: {{ $os.external.endpoint | quote }}
- name: BABELFISH_S3_TLS
  value: {{ $os.external.tls | quote }}
{{- if $os.external.caSecret.name }}
- name: BABELFISH_S3_CA_FILE
  value: /etc/babelfish/s3-ca/{{ $os.external.caSecret.key }}
{{- end }}
- name: BABELFISH_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $os.external.credentialsSecret.name }}
      key: {{ $os.external.credentialsSecret.accessKeyKey }}
- name: BABELFISH_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $os.external.credentialsSecret.name }}
      key: {{ $os.external.credentialsSecret.secretKeyKey }}
{{- else }}
- name: BABELFISH_S3_ENDPOINT
  value: {{ printf "%s:%d" (include "babelfish.component" (dict "root" . "component" "minio")) (int .Values.minio.port) | quote }}
- name: BABELFISH_S3_TLS
  value: "false"
- name: BABELFISH_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "babelfish.s3Secret" . }}
      key: rootUser
- name: BABELFISH_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "babelfish.s3Secret" . }}
      key: rootPassword
{{- end }}
{{- end -}}

{{/* Volume and mount of the external endpoint's CA bundle, when set. */}}
{{- define "babelfish.s3CAVolume" -}}
{{- if and (eq .Values.objectStore.mode "external") .Values.objectStore.external.caSecret.name }}
- name: s3-ca
  secret:
    secretName: {{ .Values.objectStore.external.caSecret.name }}
    items:
      - key: {{ .Values.objectStore.external.caSecret.key }}
        path: {{ .Values.objectStore.external.caSecret.key }}
{{- end }}
{{- end -}}

{{- define "babelfish.s3CAMount" -}}
{{- if and (eq .Values.objectStore.mode "external") .Values.objectStore.external.caSecret.name }}
- name: s3-ca
  mountPath: /etc/babelfish/s3-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* Checks across keys that the JSON schema cannot express. */}}
{{- define "babelfish.validate" -}}
{{- $os := .Values.objectStore -}}
{{- if and (eq $os.mode "external") $os.external.caSecret.name (not $os.external.tls) -}}
{{- fail "objectStore.external.caSecret.name is set but objectStore.external.tls is false: a CA bundle needs TLS" -}}
{{- end -}}
{{- $as := .Values.serving.autoscaling -}}
{{- if and .Values.serving.enabled $as.enabled (gt (int $as.minReplicas) (int $as.maxReplicas)) -}}
{{- fail (printf "serving.autoscaling.minReplicas (%d) is greater than serving.autoscaling.maxReplicas (%d)" (int $as.minReplicas) (int $as.maxReplicas)) -}}
{{- end -}}
{{- if and .Values.gpuAgent.enabled .Values.gpuAgent.privileged .Values.gpuAgent.fakeGPUs -}}
{{- fail "gpuAgent.privileged is true with gpuAgent.fakeGPUs set: simulated GPUs need no device access" -}}
{{- end -}}
{{- $sd := .Values.scheduler.dashboard -}}
{{- if and .Values.scheduler.enabled $sd.enabled (eq (int $sd.port) (int .Values.scheduler.metricsPort)) -}}
{{- fail (printf "scheduler.dashboard.port (%d) equals scheduler.metricsPort: the dashboard needs its own port" (int $sd.port)) -}}
{{- end -}}
{{- /* A namespace whose Pod Security level refuses the GPU agent would leave
       its DaemonSet with no pods: say so before anything is made. lookup
       reads the live namespace on install and upgrade (empty under
       `helm template`). */ -}}
{{- $g := .Values.gpuAgent -}}
{{- if and $g.enabled (or (and $g.podResources.enabled (not $g.fakeGPUs)) $g.privileged) -}}
{{- $ns := lookup "v1" "Namespace" "" .Release.Namespace -}}
{{- $level := "" -}}
{{- if $ns -}}{{- $level = index ($ns.metadata.labels | default dict) "pod-security.kubernetes.io/enforce" | default "" -}}{{- end -}}
{{- if or (eq $level "restricted") (eq $level "baseline") -}}
{{- fail (printf "namespace %s enforces Pod Security %q, which refuses the GPU agent: with real GPUs it mounts the kubelet's pod-resources socket (a hostPath) as root. Install the agent into a namespace labelled pod-security.kubernetes.io/enforce=privileged, or set gpuAgent.podResources.enabled=false (no pod labels on GPU metrics), or gpuAgent.fakeGPUs for simulated GPUs" .Release.Namespace $level) -}}
{{- end -}}
{{- end -}}
{{- end -}}
