/**
 * Plugin types that appear in GIE/llm-d EndpointPickerConfigs but are not scheduling plugins: data sources,
 * extractors, parsers, the prefix producer (folded into prefix-cache-scorer here) and the single profile handler
 * (the framework's built-in behaviour). They are registered so stock configs load; the instance only records its
 * parameters for the module that owns the concern (found through `handle.plugin(name)`). They are registered as kind
 * "recorded", which the module that owns the concern may take over with its own kind and `{ replace: true }` (as the
 * data layer does for core-metrics-extractor, src/datalayer/extractor.ts).
 */
import type { PluginFactory } from "../registry.js";
import type { Plugin, TypedName } from "../types.js";

export class RecordedPlugin implements Plugin {
  readonly typedName: TypedName;
  readonly parameters: unknown;

  constructor(typedName: TypedName, parameters: unknown) {
    this.typedName = typedName;
    this.parameters = parameters;
  }
}

export const RECORDED_PLUGIN_TYPES: readonly string[] = [
  "single-profile-handler",
  "metrics-data-source",
  "core-metrics-extractor",
  "openai-parser",
  "passthrough-parser",
  "approx-prefix-cache-producer",
  "inflight-load-producer",
];

export function recordedPluginFactory(type: string): PluginFactory {
  return (name, params) => new RecordedPlugin({ type, name }, params ?? undefined) satisfies Plugin;
}
