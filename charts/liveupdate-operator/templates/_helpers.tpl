{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "liveupdate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every object. Component suffixes are at most 14 characters, so truncate to 48. */}}
{{- define "liveupdate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "liveupdate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "liveupdate.labels" -}}
helm.sh/chart: {{ include "liveupdate.chart" . }}
app.kubernetes.io/name: {{ include "liveupdate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: liveupdate-operator
{{- with (merge (dict) .Values.commonLabels .Values.global.commonLabels) }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- /*
Labels of objects the chart does not own but creates at run time (the S3 credential Secrets): no instance,
managed-by or chart label, so that neither Helm nor Argo CD (label tracking) takes them for part of the release.
*/}}
{{- define "liveupdate.runtimeLabels" -}}
app.kubernetes.io/name: {{ include "liveupdate.name" .ctx }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: liveupdate-operator
{{- with (merge (dict) .ctx.Values.commonLabels .ctx.Values.global.commonLabels) }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- /*
The `annotations:` block of an object's metadata: commonAnnotations merged under the object's own
(dict "ctx" $ "annotations" <map or nil>); nothing when both are empty.
*/}}
{{- define "liveupdate.annotations" -}}
{{- $merged := merge (dict) (.annotations | default dict) .ctx.Values.commonAnnotations }}
{{- with $merged -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- /* Hook annotations of the credentials Job and its RBAC: (dict "ctx" $ "weight" "-20"). */}}
{{- define "liveupdate.keygenHook" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- with .ctx.Values.commonAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "controller"). */}}
{{- define "liveupdate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "liveupdate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels of one component's objects: (dict "ctx" $ "component" "controller"). */}}
{{- define "liveupdate.componentLabels" -}}
{{ include "liveupdate.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "liveupdate.controller.fullname" -}}
{{ include "liveupdate.fullname" . }}-controller
{{- end }}

{{- define "liveupdate.updateServer.fullname" -}}
{{ include "liveupdate.fullname" . }}-update-server
{{- end }}

{{- define "liveupdate.s3.fullname" -}}
{{ include "liveupdate.fullname" . }}-s3
{{- end }}

{{- define "liveupdate.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "liveupdate.controller.fullname" .) .Values.controller.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "liveupdate.updateServer.serviceAccountName" -}}
{{- if .Values.updateServer.serviceAccount.create }}
{{- default (include "liveupdate.updateServer.fullname" .) .Values.updateServer.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.updateServer.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "liveupdate.controller.leaseName" -}}
{{- default (include "liveupdate.controller.fullname" .) .Values.controller.leaseName }}
{{- end }}

{{/*
Image reference: (dict "image" .Values.image "ctx" $). global.imageRegistry replaces the registry; a digest pins the
image (`registry/repository:tag@digest`, the tag kept for humans).
*/}}
{{- define "liveupdate.imageRef" -}}
{{- $registry := default .image.registry .ctx.Values.global.imageRegistry }}
{{- $tag := default .ctx.Chart.AppVersion .image.tag }}
{{- $ref := .image.repository }}
{{- if $registry }}{{ $ref = printf "%s/%s" (trimSuffix "/" $registry) $ref }}{{ end }}
{{- if $tag }}{{ $ref = printf "%s:%s" $ref $tag }}{{ end }}
{{- if .image.digest }}{{ $ref = printf "%s@%s" $ref .image.digest }}{{ end }}
{{- $ref }}
{{- end }}

{{- define "liveupdate.image" -}}
{{ include "liveupdate.imageRef" (dict "image" .Values.image "ctx" .) }}
{{- end }}

{{- define "liveupdate.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets -}}
imagePullSecrets:
{{- range . }}
  - name: {{ if kindIs "map" . }}{{ .name }}{{ else }}{{ . }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Shared S3 credentials Secret: the existing one, or the one the chart generates for the in-cluster store. */}}
{{- define "liveupdate.s3.secretName" -}}
{{- if .Values.s3.existingSecret }}
{{- .Values.s3.existingSecret }}
{{- else }}
{{- include "liveupdate.s3.fullname" . }}-credentials
{{- end }}
{{- end }}

{{- /*
S3 credentials Secret of one component (dict "ctx" . "secret" <component value> "component" "controller"): its own
Secret when named, else the chart-generated per-component user of the in-cluster store, else the shared Secret.
*/}}
{{- define "liveupdate.s3.componentSecret" -}}
{{- if .secret }}
{{- .secret }}
{{- else if and (eq .ctx.Values.s3.mode "inCluster") (not .ctx.Values.s3.existingSecret) }}
{{- include "liveupdate.s3.fullname" .ctx }}-{{ .component }}
{{- else }}
{{- include "liveupdate.s3.secretName" .ctx }}
{{- end }}
{{- end }}

{{- /*
The in-cluster store's container settings by s3.inCluster.engine (docs/adr/0033-storage-neutrality.md), as YAML:
image, command, args, the two credential variables, extraEnv and the probe paths. `minio` takes them from the
s3.inCluster values (any other S3 image can be run that way too); `versitygw` and `seaweedfs` from the presets below
and the pinned image of s3.inCluster.engines.<engine>, listening on s3.inCluster.port.
*/}}
{{- define "liveupdate.s3.engine" -}}
{{- $s3 := .Values.s3.inCluster }}
{{- $port := int $s3.port }}
{{- if eq $s3.engine "versitygw" }}
image: {{ $s3.engines.versitygw.image | toJson }}
command: ["/bin/sh", "-c"]
# posix backend on the volume (needs user xattrs: ext4/xfs have them); flat-file IAM beside the data.
args:
  - mkdir -p /data/iam /data/objects && exec versitygw --port ":{{ $port }}" --health /health --iam-dir /data/iam posix /data/objects
accessKeyIdEnv: ROOT_ACCESS_KEY
secretAccessKeyEnv: ROOT_SECRET_KEY
extraEnv: []
livenessPath: /health
readinessPath: /health
{{- else if eq $s3.engine "seaweedfs" }}
image: {{ $s3.engines.seaweedfs.image | toJson }}
command: ["/usr/bin/weed"]
# master, volume, filer and S3 gateway in one process; the internal ports stay on the Pod's loopback, only S3 is
# served; no telemetry, no extra listeners, no buckets created by uploads.
args:
  - server
  - -dir=/data
  - -ip=127.0.0.1
  - -ip.bind=0.0.0.0
  - -master.telemetry=false
  - -filer
  - -s3
  - -s3.port={{ $port }}
  - -s3.port.iceberg=0
  - -s3.port.lance=0
  - -s3.autoCreateBucket=false
accessKeyIdEnv: AWS_ACCESS_KEY_ID
secretAccessKeyEnv: AWS_SECRET_ACCESS_KEY
extraEnv: []
livenessPath: /healthz
readinessPath: /healthz
{{- else }}
image: {{ $s3.image | toJson }}
command: {{ $s3.command | toJson }}
args: {{ $s3.args | toJson }}
accessKeyIdEnv: {{ $s3.accessKeyIdEnv }}
secretAccessKeyEnv: {{ $s3.secretAccessKeyEnv }}
extraEnv: {{ $s3.extraEnv | toJson }}
livenessPath: {{ $s3.livenessPath }}
readinessPath: {{ $s3.readinessPath }}
{{- end }}
{{- end }}

{{- /*
Default provisioning of the in-cluster store (the MinIO image, which ships `mc`): bucket, one user per component,
their policies. Idempotent; repeated every 5 minutes so a restored or replaced store converges.
*/}}
{{- define "liveupdate.s3.provisionScript" -}}
set -u
provision() {
  mc alias set store "$STORE_URL" "$ROOT_ACCESS_KEY" "$ROOT_SECRET_KEY" >/dev/null &&
  mc mb --ignore-existing "store/$BUCKET" >/dev/null &&
  mc admin policy create store liveupdate-controller /policies/controller.json >/dev/null &&
  mc admin policy create store liveupdate-update-server /policies/update-server.json >/dev/null &&
  mc admin user add store "$CONTROLLER_ACCESS_KEY" "$CONTROLLER_SECRET_KEY" >/dev/null &&
  mc admin user add store "$UPDATE_SERVER_ACCESS_KEY" "$UPDATE_SERVER_SECRET_KEY" >/dev/null &&
  { mc admin policy attach store liveupdate-controller --user "$CONTROLLER_ACCESS_KEY" >/dev/null 2>&1; true; } &&
  { mc admin policy attach store liveupdate-update-server --user "$UPDATE_SERVER_ACCESS_KEY" >/dev/null 2>&1; true; }
}
while true; do
  if provision; then echo "provisioned bucket $BUCKET and the component users"; sleep 300; else sleep 5; fi
done
{{- end }}

{{- define "liveupdate.s3.endpoint" -}}
{{- if eq .Values.s3.mode "external" }}
{{- .Values.s3.external.endpoint }}
{{- else }}
{{- /* Namespace-relative name, so kustomize overlays may move the whole installation to another namespace. */}}
{{- printf "http://%s:%d" (include "liveupdate.s3.fullname" .) (int .Values.s3.inCluster.port) }}
{{- end }}
{{- end }}

{{/* Base URL devices reach. */}}
{{- /*
Proxies whose X-Forwarded-For the update server trusts: updateServer.trustProxy when set; with the Ingress enabled,
the private address ranges ingress controller Pods run in; otherwise none (the client address is the peer's).
*/}}
{{- define "liveupdate.trustProxy" -}}
{{- if .Values.updateServer.trustProxy }}
{{- join "," .Values.updateServer.trustProxy }}
{{- else if .Values.updateServer.ingress.enabled }}
{{- "uniquelocal" }}
{{- else }}
{{- "false" }}
{{- end }}
{{- end }}

{{- define "liveupdate.publicUrl" -}}
{{- if .Values.updateServer.publicUrl }}
{{- trimSuffix "/" .Values.updateServer.publicUrl }}
{{- else if and .Values.updateServer.ingress.enabled .Values.updateServer.ingress.hosts }}
{{- /* The first host and its first path; https when a tls entry lists that host. */}}
{{- $first := first .Values.updateServer.ingress.hosts }}
{{- $path := "/" }}
{{- with $first.paths }}{{ $path = (first .).path | default "/" }}{{ end }}
{{- $scheme := "http" }}
{{- range .Values.updateServer.ingress.tls }}{{ if has $first.host (.hosts | default list) }}{{ $scheme = "https" }}{{ end }}{{ end }}
{{- printf "%s://%s%s" $scheme $first.host (trimSuffix "/" $path) }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "liveupdate.updateServer.fullname" .) .Release.Namespace (int .Values.updateServer.service.port) }}
{{- end }}
{{- end }}

{{/* Environment shared by both commands: (dict "ctx" $ "logLevel" "..." "secret" "..."). */}}
{{- define "liveupdate.commonEnv" -}}
{{- $v := .ctx.Values -}}
- name: LIVEUPDATE_LOG_LEVEL
  value: {{ default $v.logLevel .logLevel | quote }}
- name: LIVEUPDATE_ADMIN_ADDR
  value: "0.0.0.0:8081"
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: LIVEUPDATE_S3_ENDPOINT
  value: {{ include "liveupdate.s3.endpoint" .ctx | quote }}
- name: LIVEUPDATE_S3_REGION
  value: {{ $v.s3.region | quote }}
- name: LIVEUPDATE_S3_BUCKET
  value: {{ $v.s3.bucket | quote }}
- name: LIVEUPDATE_S3_PREFIX
  value: {{ $v.s3.prefix | quote }}
- name: LIVEUPDATE_S3_PATH_STYLE
  value: {{ $v.s3.pathStyle | quote }}
- name: LIVEUPDATE_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "liveupdate.s3.componentSecret" . }}
      key: {{ $v.s3.accessKeyIdKey }}
- name: LIVEUPDATE_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "liveupdate.s3.componentSecret" . }}
      key: {{ $v.s3.secretAccessKeyKey }}
{{- if $v.s3.caBundle.configMapName }}
- name: LIVEUPDATE_S3_CA_FILE
  value: /etc/liveupdate/s3-ca/{{ $v.s3.caBundle.key }}
{{- end }}
{{- end }}

{{/* Volumes shared by both commands. */}}
{{- define "liveupdate.commonVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- if .Values.s3.caBundle.configMapName }}
- name: s3-ca
  configMap:
    name: {{ .Values.s3.caBundle.configMapName }}
    items:
      - key: {{ .Values.s3.caBundle.key }}
        path: {{ .Values.s3.caBundle.key }}
{{- end }}
{{- end }}

{{- define "liveupdate.commonVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.s3.caBundle.configMapName }}
- name: s3-ca
  mountPath: /etc/liveupdate/s3-ca
  readOnly: true
{{- end }}
{{- end }}

{{/* Probes of the admin port of both commands. */}}
{{- define "liveupdate.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: admin
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}

{{/* Topology spread constraints with the component's selector filled in when missing. */}}
{{- define "liveupdate.topologySpread" -}}
{{- $selector := include "liveupdate.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml }}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}{{ $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}{{ end }}
{{- $out = append $out $c }}
{{- end }}
{{- with $out }}
topologySpreadConstraints:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Egress rule to the S3 endpoint (in-cluster store Pods or the external endpoint). */}}
{{- define "liveupdate.networkPolicy.s3Egress" -}}
{{- if eq .Values.s3.mode "inCluster" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "liveupdate.selectorLabels" (dict "ctx" . "component" "s3") | nindent 10 }}
  ports:
    - protocol: TCP
      port: {{ .Values.s3.inCluster.port }}
{{- else -}}
- ports:
    {{- range .Values.s3.external.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
  {{- with .Values.s3.external.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Egress rule to the Kubernetes API server (controller and the credentials hook). */}}
{{- define "liveupdate.networkPolicy.apiServerEgress" -}}
- ports:
    {{- range .Values.controller.networkPolicy.apiServerPorts }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
  {{- with .Values.controller.networkPolicy.apiServerCidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}

{{- define "liveupdate.networkPolicy.dnsEgress" -}}
- ports:
    {{- range .Values.networkPolicy.dns.ports }}
    - protocol: UDP
      port: {{ . }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
  {{- with .Values.networkPolicy.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Ingress rule of the admin port: metrics scrapers and the chart test Pod. */}}
{{- define "liveupdate.networkPolicy.adminIngress" -}}
- ports:
    - protocol: TCP
      port: 8081
  from:
    - podSelector:
        matchLabels:
          {{- include "liveupdate.selectorLabels" (dict "ctx" . "component" "chart-test") | nindent 10 }}
    {{- with .Values.networkPolicy.metricsFrom }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
