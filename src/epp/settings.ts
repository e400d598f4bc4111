/**
 * Assembly step 1: the flags checked against each other and the EndpointPickerConfig read and validated, before
 * anything is started. Every failure is a ConfigError naming the flag, file or field (docs/design/api-resources.md
 * §7), so a bad start-up stops here with nothing to clean up.
 */
import { readFileSync } from "node:fs";
import type { LevelWithSilent } from "pino";
import { registerFlowControlPolicies } from "../admission/policies.js";
import { splitHostPort } from "../common/address.js";
import { ConfigReader } from "../common/config-reader.js";
import { ConfigError } from "../common/errors.js";
import { registerDataLayerPlugins } from "../datalayer/extractor.js";
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

/** The validated configuration (plugin parameters, the metric mappings among them, are checked when built). */
export interface EppConfig {
  readonly config: PickerConfig;
}

/** Reads and validates the config; a rejection is also logged as one structured line naming file and field. */
export function loadEppConfig(f: EppFlagValues, logger: Logger): EppConfig {
  let result: EppConfig;
  try {
    const config = loadConfig(f);
    result = { config };
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
  const known = `apiVersion, kind, plugins, schedulingProfiles, saturationDetector, featureGates, ${[...KNOWN_SECTIONS].join(", ")}`;
  new ConfigReader(config.file ?? (f["config-text"] ? "--config-text" : undefined), {
    unknownKey: () => `unknown top-level section (known: ${known})`,
  })
    .mapping(config.sections, "")
    .only(KNOWN_SECTIONS);
  return config;
}

function readConfig(f: EppFlagValues): PickerConfig {
  // Every kind of plugin a config may list is registered before it is read (src/common/registry.ts).
  registerDataLayerPlugins();
  registerFlowControlPolicies();
  if (f["config-file"] && f["config-text"])
    throw new ConfigError("--config-file and --config-text are mutually exclusive", undefined, "--config-file");
  const builtin = f["scheduling-profile"];
  if (f["config-text"]) return loadPickerConfig({ text: f["config-text"], builtin });
  if (f["config-file"]) {
    let text: string;
    try {
      text = readFileSync(f["config-file"], "utf8");
    } catch (err) {
      throw new ConfigError(`cannot read: ${(err as Error).message}`, f["config-file"]);
    }
    return loadPickerConfig({ text, file: f["config-file"], builtin });
  }
  return loadPickerConfig({ builtin });
}
