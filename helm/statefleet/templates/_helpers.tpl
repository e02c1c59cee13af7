{{/*
Names. Every name is a DNS-1035 label (<= 63 characters, starting with a letter), so a
long release name still renders valid objects: Services need DNS-1035, and KubeRay
rejects a RayCluster name over 53 characters (RayService/RayJob: 47).
*/}}
{{- define "statefleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "statefleet.fullname" -}}
{{- $name := "" -}}
{{- if .Values.fullnameOverride -}}
{{- $name = .Values.fullnameOverride -}}
{{- else -}}
{{- $base := default .Chart.Name .Values.nameOverride -}}
{{- if contains $base .Release.Name -}}
{{- $name = .Release.Name -}}
{{- else -}}
{{- $name = printf "%s-%s" .Release.Name $base -}}
{{- end -}}
{{- end -}}
{{- if not (regexMatch "^[a-z]" $name) -}}
{{- $name = printf "sf-%s" $name -}}
{{- end -}}
{{- $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<fullname>-<suffix>" within 63 characters. Call with (list . "suffix"). */}}
{{- define "statefleet.componentName" -}}
{{- $ctx := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $room := sub 62 (len $suffix) | int -}}
{{- printf "%s-%s" (include "statefleet.fullname" $ctx | trunc $room | trimSuffix "-") $suffix -}}
{{- end -}}

{{/* KubeRay's limit for a RayCluster name is 53 characters. */}}
{{- define "statefleet.rayClusterName" -}}
{{- include "statefleet.fullname" . | trunc 53 | trimSuffix "-" -}}
{{- end -}}

{{/* Our own Service in front of the head pod (the Ray client port 10001, dashboard). */}}
{{- define "statefleet.rayHeadServiceName" -}}
{{- include "statefleet.componentName" (list . "ray-head") -}}
{{- end -}}

{{/* Where the API and the engine worker reach the cluster: Ray Client on the head. */}}
{{- define "statefleet.rayAddress" -}}
{{- printf "ray://%s.%s.svc:10001" (include "statefleet.rayHeadServiceName" .) .Release.Namespace -}}
{{- end -}}

{{- define "statefleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "statefleet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "statefleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "statefleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "statefleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component. Call with (list . "api"). */}}
{{- define "statefleet.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "statefleet.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/*
Render-time checks. The memory driver is refused: its queues live in one process, and
here the API, the engine worker and the Ray actors are many processes on many pods.
*/}}
{{- define "statefleet.validate" -}}
{{- $driver := .Values.config.queueDriver | toString | lower | trim -}}
{{- if eq $driver "memory" -}}
{{- fail "config.queueDriver: the memory queue driver is refused in Kubernetes: its queues are process-local, so the API, the engine worker and the Ray actors (separate pods) would never see each other's jobs. Use bullmq (Redis, secrets.redisUrl) or cloudtasks (config.cloudTasks)." -}}
{{- end -}}
{{- if not (has $driver (list "bullmq" "cloudtasks")) -}}
{{- fail (printf "config.queueDriver: %q is not a queue driver; use bullmq or cloudtasks" (toString .Values.config.queueDriver)) -}}
{{- end -}}
{{- if not .Values.secrets.databaseUrl.name -}}
{{- fail "secrets.databaseUrl.name: name the existing Secret that holds DATABASE_URL" -}}
{{- end -}}
{{- if and (eq $driver "bullmq") (not .Values.secrets.redisUrl.name) -}}
{{- fail "secrets.redisUrl.name: the bullmq driver needs REDIS_URL; name the existing Secret that holds it" -}}
{{- end -}}
{{- if eq $driver "cloudtasks" -}}
{{- range $field := list "project" "location" "targetBaseUrl" -}}
{{- if not (index $.Values.config.cloudTasks $field) -}}
{{- fail (printf "config.cloudTasks.%s is required by the cloudtasks driver" $field) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.secrets.queueSecret.name -}}
{{- fail "secrets.queueSecret.name: the cloudtasks driver needs WORKFLOW_QUEUE_SECRET; name the existing Secret that holds it" -}}
{{- end -}}
{{- end -}}
{{- $reserved := list "DATABASE_URL" "REDIS_URL" "WORKFLOW_QUEUE_SECRET" "STATEFLEET_ADMIN_KEY" -}}
{{- range .Values.config.extraEnv -}}
{{- if has .name $reserved -}}
{{- fail (printf "config.extraEnv: %s is a secret; reference it through secrets.* instead of inlining it" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* One secretKeyRef variable. Call with (list "NAME" .Values.secrets.x). */}}
{{- define "statefleet.secretEnv" -}}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ (index . 1).name | quote }}
      key: {{ (index . 1).key | quote }}
{{- end -}}

{{/*
The engine's environment (docs/configuration.md), for every statefleet process: the
API, the engine worker, the migrations and the Ray head and workers (actors run in
Ray worker processes and inherit the raylet's environment). RAY_ADDRESS is not here:
only the processes outside the cluster get it.
*/}}
{{- define "statefleet.env" -}}
{{- $driver := .Values.config.queueDriver | toString | lower | trim -}}
{{ include "statefleet.secretEnv" (list "DATABASE_URL" .Values.secrets.databaseUrl) }}
- name: WORKFLOW_QUEUE_DRIVER
  value: {{ $driver | quote }}
{{- if eq $driver "bullmq" }}
{{ include "statefleet.secretEnv" (list "REDIS_URL" .Values.secrets.redisUrl) }}
{{- end }}
{{- if .Values.secrets.queueSecret.name }}
{{ include "statefleet.secretEnv" (list "WORKFLOW_QUEUE_SECRET" .Values.secrets.queueSecret) }}
{{- end }}
{{- if eq $driver "cloudtasks" }}
{{- with .Values.config.cloudTasks }}
- name: GOOGLE_CLOUD_PROJECT
  value: {{ .project | quote }}
- name: WORKFLOW_CLOUDTASKS_LOCATION
  value: {{ .location | quote }}
- name: WORKFLOW_CLOUDTASKS_TARGET_BASE_URL
  value: {{ .targetBaseUrl | quote }}
- name: WORKFLOW_CLOUDTASKS_QUEUE_PREFIX
  value: {{ .queuePrefix | quote }}
- name: WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT
  value: {{ .serviceAccount | quote }}
{{- end }}
{{- end }}
{{- if .Values.secrets.adminKey.name }}
{{ include "statefleet.secretEnv" (list "STATEFLEET_ADMIN_KEY" .Values.secrets.adminKey) }}
{{- end }}
- name: STATEFLEET_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: STATEFLEET_SHARDS
  value: {{ .Values.config.shards | int | toString | quote }}
- name: STATEFLEET_POOLS
  value: {{ .Values.config.pools | int | toString | quote }}
{{- $knobs := dict "maxResident" "STATEFLEET_MAX_RESIDENT" "idleMs" "STATEFLEET_IDLE_MS" "eventBatch" "STATEFLEET_EVENT_BATCH" "taskBatch" "STATEFLEET_TASK_BATCH" "taskTypeLimit" "STATEFLEET_TASK_TYPE_LIMIT" "sweepIntervalMs" "STATEFLEET_SWEEP_INTERVAL_MS" }}
{{- range $key, $value := .Values.config.actors }}
- name: {{ required (printf "config.actors.%s is not an actor setting" $key) (get $knobs $key) }}
  value: {{ $value | int | toString | quote }}
{{- end }}
{{- range .Values.config.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName | quote }}
      key: {{ .key | quote }}
{{- end }}
{{- with .Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Writable directories under a read-only root filesystem. */}}
{{- define "statefleet.tmpVolumes" -}}
- name: tmp
  emptyDir: {}
{{- end -}}
{{- define "statefleet.tmpMounts" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}
