{{/* Names follow GIE's chart: the pool is named after the release, the EPP is "<release>-epp". */}}
{{- define "switchyard.poolName" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchyard.eppName" -}}
{{- printf "%s-epp" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "switchyard.labels" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: endpoint-picker
{{- end -}}

{{- define "switchyard.image" -}}
{{- $img := .Values.inferenceExtension.image -}}
{{- printf "%s/%s:%s" $img.hub $img.name (default .Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* API group of the pool, passed to the EPP as --pool-group. */}}
{{- define "switchyard.poolGroup" -}}
{{- (split "/" .Values.inferencePool.apiVersion)._0 -}}
{{- end -}}

{{- define "switchyard.leaderElection" -}}
{{- if gt (int .Values.inferenceExtension.replicas) 1 -}}true{{- end -}}
{{- end -}}

{{/* GIE's lease ID (exact), so a mixed rollout never runs two leaders. */}}
{{- define "switchyard.leaseName" -}}
{{- printf "epp-%s-%s.gateway-api-inference-extension.sigs.k8s.io" .Release.Namespace (include "switchyard.poolName" .) -}}
{{- end -}}

{{/* Fails the render with a clear message instead of producing objects the API server would reject. */}}
{{- define "switchyard.validate" -}}
{{- $v := .Values -}}
{{- if lt (int $v.inferenceExtension.replicas) 1 -}}
{{- fail "inferenceExtension.replicas must be >= 1" -}}
{{- end -}}
{{- if not (has $v.provider.name (list "none" "istio")) -}}
{{- fail (printf "provider.name must be none or istio, got %q" $v.provider.name) -}}
{{- end -}}
{{- if not (has $v.inferencePool.apiVersion (list "inference.networking.k8s.io/v1" "inference.networking.x-k8s.io/v1alpha2")) -}}
{{- fail (printf "inferencePool.apiVersion must be inference.networking.k8s.io/v1 or inference.networking.x-k8s.io/v1alpha2, got %q" $v.inferencePool.apiVersion) -}}
{{- end -}}
{{- if not (has $v.inferencePool.modelServerType (list "vllm" "sglang" "triton-tensorrt-llm")) -}}
{{- fail (printf "inferencePool.modelServerType must be vllm, sglang or triton-tensorrt-llm, got %q" $v.inferencePool.modelServerType) -}}
{{- end -}}
{{- $n := len $v.inferencePool.targetPorts -}}
{{- if or (lt $n 1) (gt $n 8) -}}
{{- fail (printf "inferencePool.targetPorts must list 1..8 ports, got %d" $n) -}}
{{- end -}}
{{- if and (ne $v.inferencePool.apiVersion "inference.networking.k8s.io/v1") (ne $n 1) -}}
{{- fail "the legacy v1alpha2 InferencePool has exactly one target port" -}}
{{- end -}}
{{- range $k, $_ := (default dict $v.inferencePool.autoscaling) -}}
{{- if not (has $k (list "minReplicas" "maxReplicas" "targetGpuCacheUtilization")) -}}
{{- fail (printf "inferencePool.autoscaling.%s is not a key; use minReplicas, maxReplicas or targetGpuCacheUtilization" $k) -}}
{{- end -}}
{{- end -}}
{{- if empty $v.inferencePool.modelServers.matchLabels -}}
{{- fail "inferencePool.modelServers.matchLabels must select at least one label" -}}
{{- end -}}
{{- if not (hasKey (merge (dict "default-plugins.yaml" "") $v.inferenceExtension.pluginsCustomConfig) $v.inferenceExtension.pluginsConfigFile) -}}
{{- fail (printf "inferenceExtension.pluginsConfigFile %q is neither default-plugins.yaml nor a key of pluginsCustomConfig" $v.inferenceExtension.pluginsConfigFile) -}}
{{- end -}}
{{- end -}}
