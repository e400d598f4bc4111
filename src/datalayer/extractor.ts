/**
 * The data layer's plugins. Metrics extractors (kind "metrics-extractor", src/common/registry.ts): GIE's
 * `core-metrics-extractor` entry of an EndpointPickerConfig (engineLabelKey, defaultEngine, engineConfigs[]) is built
 * by its factory, so its parameters are validated with the scheduling plugins, once, at start-up, with the plugin's
 * field path in every message (docs/design/model-servers.md §3). The scraper reads the instance's engine mappings,
 * and how to reach the pods from GIE's `metrics-data-source` (below).
 */
import { PARAMS_READER, readParams } from "../common/config-reader.js";
import { ConfigError } from "../common/errors.js";
import { type Plugin, type PluginFactory, type RegisterOptions, registerPluginType } from "../common/registry.js";
import { EngineRegistry, metricsPathProblem, validateEngineConfig } from "./engines.js";

/** A configured metrics extractor: how each engine's /metrics maps onto the scheduling signals. */
export interface MetricsExtractor extends Plugin {
  readonly engines: EngineRegistry;
}

export function isMetricsExtractor(p: Plugin): p is MetricsExtractor {
  return (p as Partial<MetricsExtractor>).engines instanceof EngineRegistry;
}

/** Registers a metrics-extractor type. Throws on a duplicate type unless `replace` is set. */
export function registerMetricsExtractor(
  type: string,
  factory: PluginFactory<MetricsExtractor>,
  options: RegisterOptions = {},
): void {
  registerPluginType("metrics-extractor", type, factory, options);
}

export const CORE_METRICS_EXTRACTOR = "core-metrics-extractor";

/** GIE's core-metrics-extractor; the built-in vllm / sglang / trtllm-serve / triton mappings when no parameters. */
export const coreMetricsExtractorFactory: PluginFactory<MetricsExtractor> = (name, params) => {
  const p = readParams(params);
  const engineLabelKey = p.text("engineLabelKey");
  const defaultEngine = p.text("defaultEngine");
  const engineConfigs = p
    .list("engineConfigs")
    .map((c, i) => validateEngineConfig(c, `engineConfigs[${i}]`, undefined, PARAMS_READER));
  p.done();
  let engines: EngineRegistry;
  try {
    engines = new EngineRegistry({
      engineConfigs,
      ...(defaultEngine !== undefined ? { defaultEngine } : {}),
      ...(engineLabelKey !== undefined ? { engineLabelKey } : {}),
    });
  } catch (err) {
    // Field paths here are relative to the parameters; the config loader prefixes the plugin's path.
    if (err instanceof ConfigError) throw err;
    throw new ConfigError((err as Error).message, undefined, "");
  }
  return { typedName: { type: CORE_METRICS_EXTRACTOR, name }, engines };
};

/**
 * GIE's `metrics-data-source`: how pods are scraped. v1.5 parameters `scheme` (http | https, default http), `path`
 * (default: each engine's own, `/metrics` but for trtllm-serve) and `insecureSkipVerify` (default true), plus
 * `port` (newer GIE: scrape this port instead of the pool's target port). The scraper reads the instance.
 */
export interface MetricsDataSource extends Plugin {
  readonly scheme: "http" | "https";
  readonly path: string | undefined;
  readonly insecureSkipVerify: boolean;
  readonly port: number | undefined;
}

export const METRICS_DATA_SOURCE = "metrics-data-source";

export function isMetricsDataSource(p: Plugin): p is MetricsDataSource {
  return p.typedName.type === METRICS_DATA_SOURCE && "insecureSkipVerify" in p;
}

export const metricsDataSourceFactory: PluginFactory<MetricsDataSource> = (name, params) => {
  const p = readParams(params);
  const raw = p.text("scheme") ?? "http";
  const scheme =
    raw === "http" || raw === "https" ? raw : p.fail("scheme", `must be "http" or "https", got ${JSON.stringify(raw)}`);
  const path = p.text("path");
  const problem = path === undefined ? undefined : metricsPathProblem(path);
  if (problem !== undefined) p.fail("path", problem);
  const insecureSkipVerify = p.boolean("insecureSkipVerify", true);
  const port = p.integer("port", { min: 1, max: 65535 });
  p.done();
  return { typedName: { type: METRICS_DATA_SOURCE, name }, scheme, path, insecureSkipVerify, port };
};

let registered = false;

/**
 * Registers the data layer's plugin types, taking over the type the scheduling framework only records until then.
 * Safe to call again; call before the EndpointPickerConfig is loaded.
 */
export function registerDataLayerPlugins(): void {
  if (registered) return;
  registered = true;
  registerMetricsExtractor(CORE_METRICS_EXTRACTOR, coreMetricsExtractorFactory, { replace: true });
  registerPluginType("metrics-data-source", METRICS_DATA_SOURCE, metricsDataSourceFactory, { replace: true });
}
