/**
 * Public surface of the scheduling framework. Every importer outside src/scheduling — the director, admission, the
 * CLI, tests of other rooms — goes through this file (docs/architecture.md, "Barrels"); only src/scheduling itself
 * and test/scheduling reach into its modules.
 */

export {
  BUILTIN_PROFILE_NAMES,
  DEFAULT_BUILTIN_PROFILE,
  DEFAULT_PATH,
  defaultPickerConfig,
  EPP_CONFIG_KIND,
  instantiatePlugins,
  LLMD_EPP_CONFIG_API_VERSION,
  type LoadPickerConfigOptions,
  loadPickerConfig,
  type PickerConfig,
  type PluginSet,
  type PluginSpec,
  type ProfilePluginSpec,
  type ProfileSpec,
  type ResolvedProfile,
  type WeightedScorer,
} from "./config.js";
export { ParamReader, PluginParamError, parseGoDuration } from "./params.js";
export { registerBuiltinPlugins } from "./plugins/builtins.js";
export { PrefixCacheScorer, PrefixIndex, prefixBlockHashes } from "./plugins/prefix-cache.js";
export { RecordedPlugin } from "./plugins/recorded.js";
export {
  DEFAULT_UTILIZATION_PARAMS,
  readUtilizationParams,
  UtilizationDetector,
  type UtilizationDetectorParams,
} from "./plugins/utilization-detector.js";
export { createRandom, type RandomSource } from "./random.js";
export {
  createPluginHandle,
  DefaultPluginHandle,
  isFilter,
  isPicker,
  isPreRequest,
  isSaturationDetector,
  isScorer,
  type PluginFactory,
  type PluginHandle,
  type PluginHandleOptions,
  pluginFactory,
  registeredPluginTypes,
  registerPlugin,
} from "./registry.js";
export { createScheduler, NO_ENDPOINTS_MESSAGE, type SchedulerOptions } from "./scheduler.js";
export { type CycleReporter, prefixIndexSize, prefixMatchReporter, prefixScorers } from "./telemetry.js";
export type * from "./types.js";
