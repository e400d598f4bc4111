/**
 * `switchyard/plugins`: the door for out-of-tree plugin packs (package.json `exports`). A pack imports this by
 * package name, registers its types before the EPP loads its EndpointPickerConfig, and the config references them
 * like built-ins — GIE's `plugins.Register(type, factory)` model (docs/design/scheduling.md §1; docs/architecture.md,
 * "Public API"). Everything here is re-exported from the rooms that own it; nothing new is defined.
 */

export {
  type FairnessPolicyPlugin,
  type FlowControlPolicyKind,
  registerFlowControlPolicy,
} from "./admission/policies.js";
export {
  type ConfigFailure,
  ConfigReader,
  type MappingReader,
  type NumberRule,
  PluginParamError,
  readParams,
} from "./common/config-reader.js";
export { ConfigError } from "./common/errors.js";
export {
  type Plugin,
  type PluginFactory as AnyPluginFactory,
  type PluginKind,
  type PluginRegistration,
  pluginRegistration,
  type RegisterOptions,
  registeredPluginTypes,
  type TypedName,
} from "./common/registry.js";
export { type EngineConfig, EngineRegistry, type EngineRegistryOptions } from "./datalayer/engines.js";
export { type MetricsExtractor, registerMetricsExtractor } from "./datalayer/extractor.js";
export type { Criticality, Endpoint, EndpointMetrics } from "./datastore/types.js";
export { isFresh } from "./datastore/types.js";
export {
  type CycleState,
  type Filter,
  isFilter,
  isPicker,
  isPreRequest,
  isScorer,
  ParamReader,
  type Picker,
  type PluginFactory,
  type PluginHandle,
  type PreRequest,
  registerPlugin,
  type SaturationDetector,
  type SchedulingRequest,
  type ScoredEndpoint,
  type Scorer,
  type ScorerCategory,
} from "./scheduling/index.js";
