/**
 * Saturation detection for admission (docs/design/scheduling.md §6). The detector itself is the scheduling plugin
 * `utilization-detector` (src/scheduling/plugins/utilization-detector.ts): it doubles as a scheduling filter, and
 * scheduling may not import admission, so the implementation lives there and this module is admission's door
 * to it. The config's `saturationDetector.pluginRef` chooses the instance (default: utilization-detector with
 * queueDepthThreshold 5, kvCacheUtilThreshold 0.8, metricsStalenessThreshold "200ms", headroom 0).
 *
 * Two outputs, two consumers:
 * - `saturation(endpoints, now)`: GIE v1.5's number (mean of max(q/Q, kv/KV), stale/missing = 1.0, none = 1.0)
 *   for the pool-saturation gauge and flow-control dispatch (dispatch while < 1.0);
 * - `isSaturated(endpoints, now)`: the shedding contract — saturated unless some endpoint has fresh metrics with
 *   queue < Q and KV < KV. Shedding on the boolean instead of the mean fixes a GIE weakness: with the mean, one
 *   wedged pod (stale = 1.0) plus one moderately busy pod sheds sheddable traffic although a healthy endpoint exists.
 */
import {
  DEFAULT_UTILIZATION_PARAMS,
  type DefaultPluginHandle,
  instantiatePlugins,
  isSaturationDetector,
  type PickerConfig,
  readUtilizationParams,
  type SaturationDetector,
  UtilizationDetector,
  type UtilizationDetectorParams,
} from "../scheduling/index.js";

export type { SaturationDetector, UtilizationDetectorParams };
export { DEFAULT_UTILIZATION_PARAMS, isSaturationDetector, readUtilizationParams, UtilizationDetector };

/** A standalone utilization-detector (no config), e.g. for tests or tools. */
export function createUtilizationDetector(params: Partial<UtilizationDetectorParams> = {}): UtilizationDetector {
  return new UtilizationDetector("utilization-detector", params);
}

/**
 * The detector `config.saturationDetector.pluginRef` names, instantiated on `handle` — the same instance the
 * scheduler built from that config and handle uses.
 */
export function resolveSaturationDetector(config: PickerConfig, handle: DefaultPluginHandle): SaturationDetector {
  return instantiatePlugins(config, handle).saturationDetector;
}
