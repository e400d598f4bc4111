/** Registers every built-in plugin type once. Called by the config loader; safe to call again. */
import { registerPluginType } from "../../common/registry.js";
import { type PluginFactory, pluginFactory, registerPlugin } from "../registry.js";
import {
  leastKvCacheFilterFactory,
  leastQueueFilterFactory,
  loraAffinityFilterFactory,
  lowQueueFilterFactory,
  servedModelFilterFactory,
} from "./filters.js";
import { inflightLoadScorerFactory, predictedLatencyScorerFactory } from "./latency.js";
import { maxScorePickerFactory, randomPickerFactory, weightedRandomPickerFactory } from "./pickers.js";
import { prefixCacheAffinityFilterFactory, prefixCacheScorerFactory } from "./prefix-cache.js";
import { RECORDED_PLUGIN_TYPES, recordedPluginFactory } from "./recorded.js";
import {
  kvCacheScorerAliasFactory,
  kvCacheUtilizationScorerFactory,
  loraAffinityScorerFactory,
  queueScorerFactory,
  runningRequestsSizeScorerFactory,
  tokenLoadScorerFactory,
} from "./scorers.js";
import { utilizationDetectorFactory } from "./utilization-detector.js";

const BUILTINS: Readonly<Record<string, PluginFactory>> = {
  "queue-scorer": queueScorerFactory,
  "kv-cache-utilization-scorer": kvCacheUtilizationScorerFactory,
  "kv-cache-scorer": kvCacheScorerAliasFactory,
  "running-requests-size-scorer": runningRequestsSizeScorerFactory,
  "lora-affinity-scorer": loraAffinityScorerFactory,
  "prefix-cache-scorer": prefixCacheScorerFactory,
  "token-load-scorer": tokenLoadScorerFactory,
  "inflight-load-scorer": inflightLoadScorerFactory,
  "predicted-latency-scorer": predictedLatencyScorerFactory,
  "max-score-picker": maxScorePickerFactory,
  "random-picker": randomPickerFactory,
  "weighted-random-picker": weightedRandomPickerFactory,
  "utilization-detector": utilizationDetectorFactory,
  "low-queue-filter": lowQueueFilterFactory,
  "least-queue-filter": leastQueueFilterFactory,
  "least-kv-cache-filter": leastKvCacheFilterFactory,
  "lora-affinity-filter": loraAffinityFilterFactory,
  "prefix-cache-affinity-filter": prefixCacheAffinityFilterFactory,
  "served-model-filter": servedModelFilterFactory,
};

let registered = false;

export function registerBuiltinPlugins(): void {
  if (registered) return;
  registered = true;
  // A type registered earlier by other code (an out-of-tree override) keeps its registration.
  for (const [type, factory] of Object.entries(BUILTINS)) if (!pluginFactory(type)) registerPlugin(type, factory);
  for (const type of RECORDED_PLUGIN_TYPES)
    if (!pluginFactory(type)) registerPluginType("recorded", type, recordedPluginFactory(type));
}
