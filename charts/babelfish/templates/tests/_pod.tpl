{{/*
babelfish.testPod: `helm test` hook Pods that run `babelfish check`, one Pod
(of one container, so `helm test --logs` can show it) per check. Arguments:
root (the chart's context), component (the part it checks) and checks, a
list of dicts with name and args (the arguments after `babelfish check`).
The first check's Pod is <fullname>-test-<component>, the others'
<fullname>-test-<component>-<name>. Pod Security "restricted".
*/}}
{{- define "babelfish.testPod" -}}
{{- $root := .root -}}
{{- $t := $root.Values.tests -}}
{{- $component := .component -}}
{{- range $i, $check := .checks }}
{{- $c := dict "root" $root "component" (ternary (printf "test-%s" $component) (printf "test-%s-%s" $component $check.name) (eq $i 0)) }}
---
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "babelfish.component" $c }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "babelfish.labels" $c | nindent 4 }}
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: {{ $t.deletePolicy | default "before-hook-creation" }}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "babelfish.podSecurityContext" $root | nindent 4 }}
  containers:
    {{- with $check }}
    - name: {{ .name }}
      image: {{ include "babelfish.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args:
        - check
        {{- range .args }}
        - {{ . | quote }}
        {{- end }}
        - --timeout={{ $t.timeout }}
        - --log-level={{ $root.Values.log.level }}
        - --log-format={{ $root.Values.log.format }}
      resources:
        {{- toYaml $t.resources | nindent 8 }}
      securityContext:
        {{- include "babelfish.containerSecurityContext" $root | nindent 8 }}
    {{- end }}
  {{- with $t.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $t.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}
