{{/* Names */}}
{{- define "arqonbus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "arqonbus.fullname" -}}
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

{{/* Suffixed names stay within 63 characters. */}}
{{- define "arqonbus.headlessName" -}}
{{- printf "%s-headless" (include "arqonbus.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "arqonbus.redisName" -}}
{{- printf "%s-redis" (include "arqonbus.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "arqonbus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "arqonbus.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "arqonbus.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "arqonbus.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* Labels */}}
{{- define "arqonbus.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "arqonbus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "arqonbus.tag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: arqonbus
{{- end -}}

{{/* The gateway pods. component is part of the selector, so the trial Redis is never selected. */}}
{{- define "arqonbus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "arqonbus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "arqonbus.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "arqonbus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "arqonbus.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{- define "arqonbus.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "arqonbus.tag" .) -}}
{{- end -}}
{{- end -}}

{{/*
The chart-created Secret: only the keys that were given a value.
*/}}
{{- define "arqonbus.secretKeyNames" -}}
redisUrl: redis-url
redisPassword: redis-password
jwtSecret: jwt-secret
apiKey: api-key
{{- end -}}

{{- define "arqonbus.secretEnvNames" -}}
redisUrl: ARQONBUS_BACKPLANE__URL
redisPassword: ARQONBUS_BACKPLANE__PASSWORD
jwtSecret: ARQONBUS_AUTH__JWT_SECRET
apiKey: ARQONBUS_HTTP__API_KEY
{{- end -}}

{{- define "arqonbus.createSecret" -}}
{{- $any := false -}}
{{- range $k, $v := .Values.secrets.values -}}{{- if $v -}}{{- $any = true -}}{{- end -}}{{- end -}}
{{- if and $any .Values.secrets.existingSecret -}}
{{- fail "secrets.values and secrets.existingSecret are exclusive: put the values into the existing Secret" -}}
{{- end -}}
{{- if $any -}}true{{- end -}}
{{- end -}}

{{/* Secret env vars as a YAML map: env name -> key in the Secret. */}}
{{- define "arqonbus.secretEnv" -}}
{{- $keys := include "arqonbus.secretKeyNames" . | fromYaml -}}
{{- $envs := include "arqonbus.secretEnvNames" . | fromYaml -}}
{{- $out := dict -}}
{{- range $k, $env := $envs -}}
{{- if $.Values.secrets.existingSecret -}}
{{- $key := index $.Values.secrets.keys $k -}}
{{- if $key -}}{{- $_ := set $out $env $key -}}{{- end -}}
{{- else if index $.Values.secrets.values $k -}}
{{- $_ := set $out $env (index $keys $k) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
The configuration the pods read: .Values.config plus what the chart itself decides (the trial
Redis URL). Returned as JSON.
*/}}
{{- define "arqonbus.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- if .Values.redis.enabled -}}
{{- $bp := get $cfg "backplane" | default dict -}}
{{- if hasKey $bp "url" -}}
{{- fail "redis.enabled sets the backplane URL itself: unset config.backplane.url" -}}
{{- end -}}
{{- $_ := set $bp "url" (printf "redis://%s:6379" (include "arqonbus.redisName" .)) -}}
{{- $_ := set $cfg "backplane" $bp -}}
{{- end -}}
{{- $cluster := get $cfg "cluster" | default dict -}}
{{- if not (hasKey $cluster "kube_membership") -}}
{{- $_ := set $cluster "kube_membership" .Values.rbac.create -}}
{{- end -}}
{{- if get $cluster "kube_membership" -}}
{{- if not .Values.rbac.create -}}
{{- fail "config.cluster.kube_membership needs rbac.create: the pods read their peers' EndpointSlices with the service account" -}}
{{- end -}}
{{- if not (hasKey $cluster "kube_service") -}}
{{- $_ := set $cluster "kube_service" (include "arqonbus.headlessName" .) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "cluster" $cluster -}}
{{- toJson $cfg -}}
{{- end -}}

{{/* The address the server listens on (passed as ARQONBUS_SERVER__LISTEN). */}}
{{- define "arqonbus.listen" -}}
{{- $server := get (include "arqonbus.config" . | fromJson) "server" | default dict -}}
{{- $listen := get $server "listen" | default (printf "0.0.0.0:%d" (int .Values.containerPort)) -}}
{{- if not (hasSuffix (printf ":%d" (int .Values.containerPort)) $listen) -}}
{{- fail (printf "config.server.listen (%s) must use containerPort (%d): the Service and the probes point there" $listen (int .Values.containerPort)) -}}
{{- end -}}
{{- $listen -}}
{{- end -}}

{{/*
Drain arithmetic: the kubelet must not kill the pod before the server has waited drain_delay_ms
(unready, so endpoints update) and then up to shutdown_grace_ms for its clients to leave.
  terminationGracePeriodSeconds = preStopSleepSeconds
                                + ceil((drain_delay_ms + shutdown_grace_ms) / 1000)
                                + marginSeconds
Missing keys take the server's defaults (0 and 10000).
*/}}
{{- define "arqonbus.terminationGracePeriodSeconds" -}}
{{- $server := get (include "arqonbus.config" . | fromJson) "server" | default dict -}}
{{- $delay := int64 (get $server "drain_delay_ms" | default 0) -}}
{{- $grace := 10000 -}}
{{- if hasKey $server "shutdown_grace_ms" -}}{{- $grace = int64 (get $server "shutdown_grace_ms") -}}{{- end -}}
{{- $serverSeconds := div (add $delay $grace 999) 1000 -}}
{{- add (int64 .Values.drain.preStopSleepSeconds) $serverSeconds (int64 .Values.drain.marginSeconds) -}}
{{- end -}}

{{/* True when the pods share a backplane (Redis); several replicas need one. */}}
{{- define "arqonbus.sharedBackplane" -}}
{{- $bp := get (include "arqonbus.config" . | fromJson) "backplane" | default dict -}}
{{- $env := include "arqonbus.secretEnv" . | fromYaml -}}
{{- if or (get $bp "url") (get $bp "sentinels") (eq (toString (get $bp "kind")) "redis") (hasKey $env "ARQONBUS_BACKPLANE__URL") -}}true{{- end -}}
{{- end -}}

{{/*
TOML rendering of the config map, generic: any section and key the user sets. Scalars first,
then sub-tables; keys sorted, so the output (and the pods' checksum) is stable. Numbers arrive
as float64 from YAML: integral ones are written as integers (the server's keys are integers).
*/}}
{{- define "arqonbus.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "arqonbus.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}{{ toJson $v }}
{{- else if kindIs "bool" $v -}}{{ $v }}
{{- else if kindIs "float64" $v -}}{{ if eq $v (float64 (int64 $v)) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "uint64" $v) -}}{{ $v }}
{{- else if kindIs "slice" $v -}}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "arqonbus.toml.value" $e }}{{ end }}]
{{- else if kindIs "map" $v -}}{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ include "arqonbus.toml.key" $k }} = {{ include "arqonbus.toml.value" (index $v $k) }}{{ end }} }
{{- else -}}{{ fail (printf "config: cannot write %v (%s) as TOML" $v (kindOf $v)) }}
{{- end -}}
{{- end -}}

{{- define "arqonbus.toml.table" -}}
{{- $prefix := index . 0 -}}
{{- $m := index . 1 -}}
{{- range $k := keys $m | sortAlpha -}}
{{- $v := index $m $k -}}
{{- if and (not (kindIs "map" $v)) (not (kindIs "invalid" $v)) }}
{{ include "arqonbus.toml.key" $k }} = {{ include "arqonbus.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $k := keys $m | sortAlpha -}}
{{- $v := index $m $k -}}
{{- if kindIs "map" $v -}}
{{- $name := printf "%s%s" $prefix (include "arqonbus.toml.key" $k) }}

[{{ $name }}]
{{- include "arqonbus.toml.table" (list (printf "%s." $name) $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "arqonbus.toml" -}}
# Rendered by the ArqonBus chart from the `config` values.
{{- include "arqonbus.toml.table" (list "" (include "arqonbus.config" . | fromJson)) }}
{{ end -}}

{{/* The standard OpenTelemetry variables (the exporter reads them). */}}
{{- define "arqonbus.tracingEnv" -}}
{{- $t := .Values.tracing -}}
{{- if not $t.otlpEndpoint -}}
{{- fail "tracing.enabled needs tracing.otlpEndpoint" -}}
{{- end -}}
{{- $attrs := list "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" -}}
{{- range $k := keys $t.resourceAttributes | sortAlpha -}}
{{- $attrs = append $attrs (printf "%s=%s" $k (toString (index $t.resourceAttributes $k))) -}}
{{- end -}}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.otlpEndpoint | quote }}
{{- with $t.protocol }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ . | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ $t.serviceName | default "arqonbus" | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- if not (kindIs "invalid" $t.samplerRatio) }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ toString $t.samplerRatio | quote }}
{{- end }}
{{- if $t.headersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ $t.headersSecret.name }}
      key: {{ required "tracing.headersSecret.key is required with tracing.headersSecret.name" $t.headersSecret.key }}
{{- end }}
{{- end -}}
