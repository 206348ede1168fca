{{/*
babelfish.testPod: a `helm test` hook Pod that runs `babelfish check` in one
container per check and succeeds when every check does. Arguments: root (the
chart's context), component (the part it checks; the pod is
<fullname>-test-<component>) and checks, a list of dicts with name and args
(the arguments after `babelfish check`). Pod Security "restricted".
*/}}
{{- define "babelfish.testPod" -}}
{{- $root := .root -}}
{{- $t := $root.Values.tests -}}
{{- $c := dict "root" $root "component" (printf "test-%s" .component) -}}
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
    {{- range .checks }}
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
{{- end -}}
