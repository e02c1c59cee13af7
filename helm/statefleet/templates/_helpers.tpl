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

{{/* Our own ClusterIP Service in front of the head pod (Ray Client 10001, dashboard). */}}
{{- define "statefleet.rayHeadServiceName" -}}
{{- include "statefleet.componentName" (list . "ray-head") -}}
{{- end -}}

{{/* Where the engine worker reaches the cluster: Ray Client on the head (the API does not join Ray). */}}
{{- define "statefleet.rayAddress" -}}
{{- printf "ray://%s.%s.svc:10001" (include "statefleet.rayHeadServiceName" .) .Release.Namespace -}}
{{- end -}}

{{/*
STATEFLEET_RAY_RESOURCES of the engine worker: engineWorker.rayResourceMode, else wait
with the KubeRay autoscaler (groups may be at 0 replicas until it sees pending actors)
and require without it.
*/}}
{{- define "statefleet.rayResourceMode" -}}
{{- $mode := .Values.engineWorker.rayResourceMode | default "" | toString | lower | trim -}}
{{- if not $mode -}}
{{- $mode = ternary "wait" "require" (.Values.head.enableInTreeAutoscaling | default false) -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{/*
How many shard and pool actors one node of a group hosts, as YAML {shards, pools}.
Call with (list . $group "head"|"worker"). The head hosts none unless its values say
so; a worker group without its own counts takes the `worker` group's.
*/}}
{{- define "statefleet.groupCounts" -}}
{{- $ctx := index . 0 -}}
{{- $group := index . 1 -}}
{{- $defaults := dict "statefleetShards" 0 "statefleetPools" 0 -}}
{{- if ne (index . 2) "head" -}}
{{- $defaults = $ctx.Values.worker -}}
{{- end -}}
{{- $shards := ternary $group.statefleetShards $defaults.statefleetShards (hasKey $group "statefleetShards") -}}
{{- $pools := ternary $group.statefleetPools $defaults.statefleetPools (hasKey $group "statefleetPools") }}
shards: {{ $shards | default 0 | int }}
pools: {{ $pools | default 0 | int }}
{{- end -}}

{{/*
The Ray resources a group's nodes declare, as YAML {name: "quantity"}: its
rayResources plus statefleet_shard / statefleet_pool (omitted at 0). Rendered as the
group's `resources` field (KubeRay 1.5+), which KubeRay turns into `ray start`'s
--num-cpus / --num-gpus / --memory / --resources, and which the Ray autoscaler reads
to know what a node of the group would add. Call with (list . $group "head"|"worker").
*/}}
{{- define "statefleet.groupRayResources" -}}
{{- $group := index . 1 -}}
{{- $counts := include "statefleet.groupCounts" . | fromYaml -}}
{{- $out := dict -}}
{{- range $name, $value := (default (dict) $group.rayResources) -}}
{{- $_ := set $out $name (toString $value) -}}
{{- end -}}
{{- if gt (int $counts.shards) 0 -}}
{{- $_ := set $out "statefleet_shard" (toString $counts.shards) -}}
{{- end -}}
{{- if gt (int $counts.pools) 0 -}}
{{- $_ := set $out "statefleet_pool" (toString $counts.pools) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
WORKFLOW_CLOUDTASKS_TARGET_BASE_URL: where Cloud Tasks pushes, i.e. the engine
worker. config.cloudTasks.targetBaseUrl, else the first host of engineWorker.ingress
(https when a tls entry lists it), else empty (refused by statefleet.validate).
*/}}
{{- define "statefleet.cloudTasksTarget" -}}
{{- $url := .Values.config.cloudTasks.targetBaseUrl | default "" -}}
{{- $ingress := .Values.engineWorker.ingress -}}
{{- if and (not $url) $ingress.enabled $ingress.hosts -}}
{{- $host := (first $ingress.hosts).host -}}
{{- $scheme := "http" -}}
{{- range $ingress.tls -}}
{{- if has $host (default (list) .hosts) -}}
{{- $scheme = "https" -}}
{{- end -}}
{{- end -}}
{{- $url = printf "%s://%s" $scheme $host -}}
{{- end -}}
{{- $url -}}
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
{{- range $field := list "project" "location" -}}
{{- if not (index $.Values.config.cloudTasks $field) -}}
{{- fail (printf "config.cloudTasks.%s is required by the cloudtasks driver" $field) -}}
{{- end -}}
{{- end -}}
{{- $target := include "statefleet.cloudTasksTarget" . -}}
{{- if not $target -}}
{{- fail "config.cloudTasks.targetBaseUrl is required by the cloudtasks driver: the public URL of the engine worker, where Cloud Tasks pushes to <url>/internal/queues/<queue>. Set it, or enable engineWorker.ingress to derive it." -}}
{{- end -}}
{{- if .Values.api.ingress.enabled -}}
{{- $host := (urlParse $target).hostname -}}
{{- $apiHosts := list -}}
{{- range .Values.api.ingress.hosts }}{{ $apiHosts = append $apiHosts .host }}{{ end -}}
{{- $workerHosts := list -}}
{{- if .Values.engineWorker.ingress.enabled -}}
{{- range .Values.engineWorker.ingress.hosts }}{{ $workerHosts = append $workerHosts .host }}{{ end -}}
{{- end -}}
{{- if and (has $host $apiHosts) (not (has $host $workerHosts)) -}}
{{- fail (printf "config.cloudTasks.targetBaseUrl: %s is the API's ingress host, but Cloud Tasks must push to the engine worker (the API runs no engine). Route %s/internal/queues to the worker with engineWorker.ingress (same host, path /internal/queues), or point targetBaseUrl at the worker's own URL." $host $target) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.secrets.queueSecret.name -}}
{{- fail "secrets.queueSecret.name: the cloudtasks driver needs WORKFLOW_QUEUE_SECRET; name the existing Secret that holds it" -}}
{{- end -}}
{{- end -}}
{{- include "statefleet.validateRayResources" . -}}
{{- $reserved := list "DATABASE_URL" "REDIS_URL" "WORKFLOW_QUEUE_SECRET" "STATEFLEET_ADMIN_KEY" -}}
{{- range .Values.config.extraEnv -}}
{{- if has .name $reserved -}}
{{- fail (printf "config.extraEnv: %s is a secret; reference it through secrets.* instead of inlining it" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The Ray resources: the engine worker's mode is one of Ray's, a group declares its
resources in one place (KubeRay refuses num-cpus, num-gpus, memory or resources in
rayStartParams next to the group's `resources` field), and unless the mode is off
the groups can hold every shard and pool actor: at their replicas, or at their
maxReplicas when the autoscaler adds nodes.
*/}}
{{- define "statefleet.validateRayResources" -}}
{{- $mode := include "statefleet.rayResourceMode" . -}}
{{- if not (has $mode (list "require" "wait" "off")) -}}
{{- fail (printf "engineWorker.rayResourceMode: %q is not a mode; use require, wait or off (empty: wait with the autoscaler, else require)" (toString .Values.engineWorker.rayResourceMode)) -}}
{{- end -}}
{{- $groups := list (list "head" .Values.head "head") -}}
{{- if not .Values.worker.disabled -}}
{{- $groups = append $groups (list "worker" .Values.worker "worker") -}}
{{- end -}}
{{- range $name, $group := .Values.additionalWorkerGroups -}}
{{- if not $group.disabled -}}
{{- $groups = append $groups (list (printf "additionalWorkerGroups.%s" $name) $group "worker") -}}
{{- end -}}
{{- end -}}
{{- $autoscaling := .Values.head.enableInTreeAutoscaling | default false -}}
{{- $shards := 0 -}}
{{- $pools := 0 -}}
{{- range $entry := $groups -}}
{{- $path := index $entry 0 -}}
{{- $group := index $entry 1 -}}
{{- range $reserved := list "statefleet_shard" "statefleet_pool" -}}
{{- if hasKey (default (dict) $group.rayResources) $reserved -}}
{{- fail (printf "%s.rayResources.%s: set %s.%s instead" $path $reserved $path (ternary "statefleetShards" "statefleetPools" (eq $reserved "statefleet_shard"))) -}}
{{- end -}}
{{- end -}}
{{- $declared := include "statefleet.groupRayResources" (list $ $group (index $entry 2)) | fromYaml -}}
{{- if $declared -}}
{{- range $param := list "num-cpus" "num-gpus" "memory" "resources" -}}
{{- if hasKey (default (dict) $group.rayStartParams) $param -}}
{{- fail (printf "%s.rayStartParams.%s: KubeRay refuses resource settings in rayStartParams next to the group's resources field, which declares %s; move it to %s.rayResources (num-cpus -> CPU, num-gpus -> GPU, memory -> memory, resources -> one key per resource)" $path $param (keys $declared | sortAlpha | join ", ") $path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $counts := include "statefleet.groupCounts" (list $ $group (index $entry 2)) | fromYaml -}}
{{- $nodes := 1 -}}
{{- if ne (index $entry 2) "head" -}}
{{- $nodes = ternary $group.maxReplicas $group.replicas $autoscaling | default 0 | int -}}
{{- end -}}
{{- $shards = add $shards (mul $nodes $counts.shards) -}}
{{- $pools = add $pools (mul $nodes $counts.pools) -}}
{{- end -}}
{{- if ne $mode "off" -}}
{{- $scale := ternary "maxReplicas (the autoscaler is on)" "replicas" $autoscaling -}}
{{- if lt (int $shards) (int .Values.config.shards) -}}
{{- fail (printf "the Ray worker groups hold %d shard actors (statefleetShards x %s), fewer than config.shards=%d: the rest would never be placed. Raise statefleetShards or %s of a group, or lower config.shards." (int $shards) $scale (int .Values.config.shards) $scale) -}}
{{- end -}}
{{- if lt (int $pools) (int .Values.config.pools) -}}
{{- fail (printf "the Ray worker groups hold %d pool actors (statefleetPools x %s), fewer than config.pools=%d: the rest would never be placed. Raise statefleetPools or %s of a group, or lower config.pools." (int $pools) $scale (int .Values.config.pools) $scale) -}}
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
  value: {{ include "statefleet.cloudTasksTarget" $ | quote }}
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
