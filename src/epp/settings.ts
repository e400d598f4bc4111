/**
 * Assembly step 1: the flags checked against each other and the EndpointPickerConfig read and validated, before
 * anything is started. Every failure is a ConfigError naming the flag, file or field (docs/design/api-resources.md
 * §7), so a bad start-up stops here with nothing to clean up.
 */
import { readFileSync } from "node:fs";
import type { LevelWithSilent } from "pino";
import { splitHostPort } from "../common/address.js";
import { ConfigError } from "../common/errors.js";
import { EngineRegistry, validateEngineConfig } from "../datalayer/engines.js";
import type { Logger } from "../observability/logger.js";
import { loadPickerConfig, type PickerConfig } from "../scheduling/index.js";
import type { EppFlagValues } from "./flags.js";

/** Which pool this EPP serves, from --pool-name / --pool-namespace / --endpoint-selector. */
export interface PoolChoice {
  readonly poolName: string;
  readonly namespace: string;
  /** `--endpoint-selector`: no InferencePool, pods chosen by label (GIE's standalone mode). */
  readonly standalone: boolean;
  readonly targetPorts: readonly number[];
}

/** `--v` wins over `--log-level`, as GIE's verbosity flag does. */
export function logLevel(f: EppFlagValues): LevelWithSilent {
  if (f.$set.has("v")) return f.v >= 4 ? "trace" : f.v >= 3 ? "debug" : "info";
  const level = f["log-level"];
  if (!["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(level))
    throw new ConfigError(`unknown level "${level}"`, undefined, "--log-level");
  return level as LevelWithSilent;
}

/** The pool flags checked against each other; `provided` is true when the caller brings its own datastore. */
export function choosePool(f: EppFlagValues, provided: boolean): PoolChoice {
  const namespace = f["pool-namespace"] || process.env.NAMESPACE || "default";
  const standalone = f["endpoint-selector"] !== "";
  if (standalone && f["pool-name"])
    throw new ConfigError(
      "--endpoint-selector and --pool-name are mutually exclusive",
      undefined,
      "--endpoint-selector",
    );
  if (!standalone && !f["pool-name"] && !provided)
    throw new ConfigError("required (or use --endpoint-selector for standalone mode)", undefined, "--pool-name");
  if (standalone && f.resources)
    throw new ConfigError(
      "standalone mode watches pods through the Kubernetes API; use --pool-name with --resources",
      undefined,
      "--endpoint-selector",
    );
  return {
    poolName: standalone ? "standalone" : f["pool-name"],
    namespace,
    standalone,
    targetPorts: f["endpoint-target-ports"].map((p) => Number(p)),
  };
}

/** `--metrics-bind-address`: undefined = no metrics server. */
export function metricsBindAddress(f: EppFlagValues): { host: string; port: number } | undefined {
  const raw = f["metrics-bind-address"].trim();
  if (raw === "") return { host: f.host, port: f["metrics-port"] };
  if (raw === "0") return undefined;
  const parsed = splitHostPort(raw);
  if (parsed === undefined)
    throw new ConfigError(`expected host:port, :port or 0, got "${raw}"`, undefined, "--metrics-bind-address");
  return { host: parsed.host || f.host, port: parsed.port };
}

/** The validated configuration and the metric mappings its `core-metrics-extractor` plugin asks for. */
export interface EppConfig {
  readonly config: PickerConfig;
  readonly engines: EngineRegistry;
}

/** Reads and validates the config; a rejection is also logged as one structured line naming file and field. */
export function loadEppConfig(f: EppFlagValues, logger: Logger): EppConfig {
  let result: EppConfig;
  try {
    const config = loadConfig(f);
    result = { config, engines: engineRegistry(config) };
  } catch (err) {
    logConfigRejected(logger, err);
    throw err;
  }
  for (const w of result.config.warnings) logger.warn({ config: result.config.file ?? "(inline)" }, w);
  return result;
}

/** Where the config came from, for the start-up log line. */
export function configOrigin(f: EppFlagValues, config: PickerConfig): string {
  return config.file ?? (f["config-text"] ? "(--config-text)" : "(default)");
}

/** One structured line naming the file and field of a rejected configuration (the CLI also prints it). */
export function logConfigRejected(logger: Logger, err: unknown): void {
  if (err instanceof ConfigError)
    logger.error({ config: err.file ?? "(inline)", field: err.field, err: err.message }, "configuration rejected");
}

/**
 * Top-level EndpointPickerConfig sections owned outside scheduling. Anything else is rejected: a misspelt
 * `flowControl:` would otherwise switch flow control off without a word.
 */
const KNOWN_SECTIONS: ReadonlySet<string> = new Set(["admission", "flowControl", "autoscaling", "dataLayer", "parser"]);

function loadConfig(f: EppFlagValues): PickerConfig {
  const config = readConfig(f);
  for (const key of Object.keys(config.sections))
    if (!KNOWN_SECTIONS.has(key))
      throw new ConfigError(
        `unknown top-level section (known: apiVersion, kind, plugins, schedulingProfiles, saturationDetector, featureGates, ${[...KNOWN_SECTIONS].join(", ")})`,
        config.file ?? (f["config-text"] ? "--config-text" : undefined),
        key,
      );
  return config;
}

function readConfig(f: EppFlagValues): PickerConfig {
  if (f["config-file"] && f["config-text"])
    throw new ConfigError("--config-file and --config-text are mutually exclusive", undefined, "--config-file");
  if (f["config-text"]) return loadPickerConfig({ text: f["config-text"] });
  if (f["config-file"]) {
    let text: string;
    try {
      text = readFileSync(f["config-file"], "utf8");
    } catch (err) {
      throw new ConfigError(`cannot read: ${(err as Error).message}`, f["config-file"]);
    }
    return loadPickerConfig({ text, file: f["config-file"] });
  }
  return loadPickerConfig({});
}

/**
 * Metric mappings from GIE's `core-metrics-extractor` plugin parameters (engineLabelKey, defaultEngine,
 * engineConfigs[]), validated with the plugin's path in every message; the built-in vllm / sglang / trtllm-serve /
 * triton-tensorrt-llm mappings otherwise (docs/design/model-servers.md §3).
 */
function engineRegistry(config: PickerConfig): EngineRegistry {
  const spec = config.plugins.find((p) => p.type === "core-metrics-extractor");
  const params = spec?.parameters;
  if (params === undefined || params === null) return new EngineRegistry();
  const at = (field: string) => `${spec!.path}.parameters.${field}`;
  if (typeof params !== "object" || Array.isArray(params))
    throw new ConfigError("must be a mapping", config.file, `${spec!.path}.parameters`);
  const p = params as Record<string, unknown>;
  for (const key of Object.keys(p))
    if (!["engineLabelKey", "defaultEngine", "engineConfigs"].includes(key))
      throw new ConfigError("unknown parameter (engineLabelKey, defaultEngine, engineConfigs)", config.file, at(key));
  for (const key of ["engineLabelKey", "defaultEngine"] as const)
    if (p[key] !== undefined && typeof p[key] !== "string")
      throw new ConfigError("must be a string", config.file, at(key));
  const raw = p.engineConfigs ?? [];
  if (!Array.isArray(raw)) throw new ConfigError("must be a list", config.file, at("engineConfigs"));
  const engineConfigs = raw.map((c, i) => validateEngineConfig(c, at(`engineConfigs[${i}]`), config.file));
  try {
    return new EngineRegistry({
      engineConfigs,
      ...(typeof p.defaultEngine === "string" ? { defaultEngine: p.defaultEngine } : {}),
      ...(typeof p.engineLabelKey === "string" ? { engineLabelKey: p.engineLabelKey } : {}),
    });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError((err as Error).message, config.file, `${spec!.path}.parameters`);
  }
}
