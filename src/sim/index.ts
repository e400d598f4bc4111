/** Public surface of the simulator: `startSimulator` for tests, the bench and `switchyard up`. */
export {
  Engine,
  type EngineClock,
  EngineRejection,
  type EngineRequest,
  EngineStats,
  type FinishReason,
  type LoraSeries,
  REAL_CLOCK,
  type SequenceInfo,
  type SequenceSink,
} from "./engine.js";
export { KvCache } from "./kv-cache.js";
export { LoraSlots } from "./lora.js";
export { escapeLabel, METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.js";
export {
  FAILURE_TYPES,
  type FailureType,
  KV_CACHE_METRIC_NAMES,
  type KvCacheMetricName,
  type LoraModule,
  parseLoraModules,
  type ResolvedSimOptions,
  resolveSimOptions,
  SIM_DEFAULTS,
  type SimMode,
  type SimulatorOptions,
} from "./options.js";
export { type Simulator, SimulatorServer, startSimulator } from "./server.js";
