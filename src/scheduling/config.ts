/**
 * EndpointPickerConfig (docs/design/scheduling.md §1.1): a YAML file read once at start-up (`--config-file` /
 * `--config-text`), not a CRD. Everything is validated here, once, including every plugin's parameters (the factories
 * run in a dry run), so a bad config fails start-up with the file and the field path instead of failing requests later.
 *
 * System defaults, as GIE v1.5:
 * - no config, or a config with neither plugins nor profiles: the default profile — queue-scorer ×2,
 *   kv-cache-utilization-scorer ×2, lora-affinity-scorer ×1, max-score-picker;
 * - plugins but no profiles: one profile "default" with every configured filter, scorer and picker (weight 1),
 *   except saturation detectors (a utilization-detector listed to tune admission does not become a filter);
 * - a profile without a picker gets max-score-picker (1 endpoint);
 * - no saturationDetector: the first configured utilization-detector, else one with default thresholds;
 * - profile handler: single-profile-handler semantics. Several profiles are validated but only the FIRST runs
 *   (a warning says so): GIE's multi-profile handlers serve P/D disaggregation, which switchyard does not do, and
 *   refusing to start would break configs that merely carry spare profiles.
 *
 * Sections owned by other modules (flowControl, admission, budgets, autoscaling, dataLayer, parser, and any other
 * unknown top-level key) are returned untouched in `sections` for those modules to validate.
 */

import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { ConfigReader, MappingReader } from "../common/config-reader.js";
import { EPP_CONFIG_API_VERSION } from "../common/constants.js";
import { ConfigError } from "../common/errors.js";
import { describeValue, isPlainObject, type PlainObject } from "../common/values.js";
import { PluginParamError } from "./params.js";
import { registerBuiltinPlugins } from "./plugins/builtins.js";
import {
  createPluginHandle,
  type DefaultPluginHandle,
  isDependentPlugin,
  isFilter,
  isPicker,
  isSaturationDetector,
  isScorer,
  pluginFactory,
  registeredPluginTypes,
} from "./registry.js";
import type { Filter, Picker, Plugin, PluginSet, ResolvedProfile, WeightedScorer } from "./types.js";

/** llm-d's apiVersion for the same document. */
export const LLMD_EPP_CONFIG_API_VERSION = "llm-d.ai/v1alpha1";
export const EPP_CONFIG_KIND = "EndpointPickerConfig";
const API_VERSIONS: readonly string[] = [EPP_CONFIG_API_VERSION, LLMD_EPP_CONFIG_API_VERSION];

/** Where a spec came from: its field path in the document, or "(default)" for a system-added entry. */
export const DEFAULT_PATH = "(default)";

export interface PluginSpec {
  readonly name: string;
  readonly type: string;
  /** Raw `parameters` (undefined when absent); validated by the type's factory. */
  readonly parameters: unknown;
  readonly path: string;
}

export interface ProfilePluginSpec {
  readonly pluginRef: string;
  /** Scorer weight, default 1; ignored for filters and pickers. */
  readonly weight: number;
  readonly path: string;
}

export interface ProfileSpec {
  readonly name: string;
  readonly plugins: readonly ProfilePluginSpec[];
  readonly path: string;
}

export interface PickerConfig {
  readonly apiVersion: string;
  readonly kind: typeof EPP_CONFIG_KIND;
  /** File named in error messages; undefined for inline text and the built-in default. */
  readonly file: string | undefined;
  /** Configured plugins plus system-added defaults, in order. */
  readonly plugins: readonly PluginSpec[];
  /** At least one; the first is the one that runs. */
  readonly schedulingProfiles: readonly ProfileSpec[];
  readonly saturationDetector: { readonly pluginRef: string };
  readonly featureGates: readonly string[];
  /** Top-level sections other modules own (flowControl, admission, budgets, autoscaling, dataLayer, parser, …). */
  readonly sections: Readonly<Record<string, unknown>>;
  /** Non-fatal problems, for the caller to log once. */
  readonly warnings: readonly string[];
}

export interface LoadPickerConfigOptions {
  /** YAML text. When `file` is also given it only names the source in messages. */
  readonly text?: string;
  /** Path to read when `text` is absent. */
  readonly file?: string;
  /**
   * With neither text nor file: the built-in profile to run (BUILTIN_PROFILE_NAMES), default
   * DEFAULT_BUILTIN_PROFILE. Also the profile a config with neither plugins nor profiles gets.
   */
  readonly builtin?: string;
}

export type { PluginSet, ResolvedProfile, WeightedScorer };

const TOP_LEVEL_KEYS = new Set([
  "apiVersion",
  "kind",
  "plugins",
  "schedulingProfiles",
  "saturationDetector",
  "featureGates",
]);
const PLUGIN_KEYS = new Set(["name", "type", "parameters"]);
const PROFILE_KEYS = new Set(["name", "plugins"]);
const PROFILE_PLUGIN_KEYS = new Set(["pluginRef", "weight"]);
/** GIE v1.0–v1.2 put the utilization thresholds inline under saturationDetector. */
const INLINE_DETECTOR_KEYS = new Set([
  "queueDepthThreshold",
  "kvCacheUtilThreshold",
  "metricsStalenessThreshold",
  "headroom",
]);

type Obj = PlainObject;
const isObj = isPlainObject;
const describe = describeValue;

/** The document's reader (src/common/config-reader.ts) with the structure's own vocabulary and its warnings. */
class Builder extends ConfigReader {
  readonly warnings: string[] = [];

  constructor(file: string | undefined) {
    super(file, { unknownKey: (known) => `unknown field (expected one of: ${known.join(", ")})` });
  }

  checkKeys(obj: Obj, allowed: ReadonlySet<string>, path: string): void {
    new MappingReader(this, obj, path).only(allowed);
  }

  name(v: unknown, path: string, required: boolean): string | undefined {
    if ((v === undefined || v === null) && required) this.fail(path, "is required");
    return this.string(v, path);
  }
}

function parseYaml(text: string, file: string | undefined): unknown {
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) throw new ConfigError("invalid YAML", file);
  if (docs.length === 0) throw new ConfigError(`empty config: expected apiVersion and kind ${EPP_CONFIG_KIND}`, file);
  if (docs.length > 1) throw new ConfigError(`expected one YAML document, found ${docs.length}`, file);
  const doc = docs[0]!;
  const err = doc.errors[0];
  if (err) throw new ConfigError(`invalid YAML: ${err.message.split("\n")[0]}`, file);
  return doc.toJS({ maxAliasCount: 100 });
}

/**
 * Loads and validates an EndpointPickerConfig. With neither `text` nor `file`, returns the default config.
 * Throws ConfigError naming the file and field path (e.g. `schedulingProfiles[0].plugins[1].pluginRef: unknown
 * plugin "foo"`). Plugin types must be registered before the call.
 */
export function loadPickerConfig(options: LoadPickerConfigOptions = {}): PickerConfig {
  registerBuiltinPlugins();
  const file = options.file === "" ? undefined : options.file;
  let text = options.text === "" ? undefined : options.text;
  if (text === undefined && file !== undefined) {
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new ConfigError(`cannot read config file: ${(err as Error).message}`, file);
    }
  }
  const builtin = builtinProfile(options.builtin);
  if (text === undefined)
    return buildConfig({ apiVersion: EPP_CONFIG_API_VERSION, kind: EPP_CONFIG_KIND }, undefined, builtin);
  return buildConfig(parseYaml(text, file), file, builtin);
}

/** The configuration used when none is given. */
export function defaultPickerConfig(): PickerConfig {
  registerBuiltinPlugins();
  return buildConfig({ apiVersion: EPP_CONFIG_API_VERSION, kind: EPP_CONFIG_KIND }, undefined);
}

interface BuiltinProfile {
  readonly plugins: readonly PluginSpec[];
  readonly profile: ProfileSpec;
}

function builtinProfile(name: string | undefined): BuiltinProfile {
  if (name === undefined || name === "") return BUILTIN_PROFILES[DEFAULT_BUILTIN_PROFILE]!;
  const p = BUILTIN_PROFILES[name];
  if (p === undefined)
    throw new ConfigError(
      `unknown built-in profile "${name}" (known: ${BUILTIN_PROFILE_NAMES.join(", ")})`,
      undefined,
      "--scheduling-profile",
    );
  return p;
}

const GIE_PLUGINS: readonly PluginSpec[] = [
  { name: "served-model-filter", type: "served-model-filter", parameters: undefined, path: DEFAULT_PATH },
  { name: "queue-scorer", type: "queue-scorer", parameters: undefined, path: DEFAULT_PATH },
  {
    name: "kv-cache-utilization-scorer",
    type: "kv-cache-utilization-scorer",
    parameters: undefined,
    path: DEFAULT_PATH,
  },
  { name: "lora-affinity-scorer", type: "lora-affinity-scorer", parameters: undefined, path: DEFAULT_PATH },
];

const GIE_PROFILE: ProfileSpec = {
  name: "default",
  path: DEFAULT_PATH,
  plugins: [
    // Not a GIE default: keeps adapter requests off pods that cannot load adapters (a 404 otherwise).
    { pluginRef: "served-model-filter", weight: 1, path: DEFAULT_PATH },
    { pluginRef: "queue-scorer", weight: 2, path: DEFAULT_PATH },
    { pluginRef: "kv-cache-utilization-scorer", weight: 2, path: DEFAULT_PATH },
    { pluginRef: "lora-affinity-scorer", weight: 1, path: DEFAULT_PATH },
  ],
};

const spec = (type: string): PluginSpec => ({ name: type, type, parameters: undefined, path: DEFAULT_PATH });
const ref = (pluginRef: string, weight: number): ProfilePluginSpec => ({ pluginRef, weight, path: DEFAULT_PATH });

/**
 * Own load, predicted latency and prefix affinity (docs/design/scheduling.md §11.6): routes on what this replica
 * dispatched since the gauges were read and on what a request will cost where, with KV pressure and LoRA affinity
 * kept from GIE's profile.
 */
const PREDICTIVE_PLUGINS: readonly PluginSpec[] = [
  spec("served-model-filter"),
  spec("prefix-cache-scorer"),
  spec("predicted-latency-scorer"),
  spec("inflight-load-scorer"),
  spec("kv-cache-utilization-scorer"),
  spec("lora-affinity-scorer"),
];

const PREDICTIVE_PROFILE: ProfileSpec = {
  name: "predictive",
  path: DEFAULT_PATH,
  plugins: [
    ref("served-model-filter", 1),
    ref("predicted-latency-scorer", 3),
    ref("prefix-cache-scorer", 2),
    ref("inflight-load-scorer", 1),
    ref("kv-cache-utilization-scorer", 1),
    ref("lora-affinity-scorer", 1),
  ],
};

const BUILTIN_PROFILES: Readonly<Record<string, BuiltinProfile>> = {
  /** GIE v1.5's default profile (plus served-model-filter): queue ×2, kv ×2, lora-affinity ×1. */
  gie: { plugins: GIE_PLUGINS, profile: GIE_PROFILE },
  predictive: { plugins: PREDICTIVE_PLUGINS, profile: PREDICTIVE_PROFILE },
};

export const BUILTIN_PROFILE_NAMES: readonly string[] = Object.keys(BUILTIN_PROFILES);
/** The profile run when no config names one (docs/design/scheduling.md §11.6 for the measurement behind it). */
export const DEFAULT_BUILTIN_PROFILE = "predictive";

function buildConfig(
  root: unknown,
  file: string | undefined,
  builtin: BuiltinProfile = BUILTIN_PROFILES[DEFAULT_BUILTIN_PROFILE]!,
): PickerConfig {
  const b: Builder = new Builder(file);
  if (!isObj(root))
    b.fail("(root)", `must be a mapping with apiVersion and kind ${EPP_CONFIG_KIND}, got ${describe(root)}`);

  const apiVersion = root.apiVersion;
  if (typeof apiVersion !== "string" || !API_VERSIONS.includes(apiVersion))
    b.fail("apiVersion", `must be "${API_VERSIONS.join('" or "')}", got ${describe(apiVersion)}`);
  if (root.kind !== EPP_CONFIG_KIND) b.fail("kind", `must be "${EPP_CONFIG_KIND}", got ${describe(root.kind)}`);

  // plugins[]
  const plugins: PluginSpec[] = [];
  const byName = new Map<string, PluginSpec>();
  b.list(root.plugins, "plugins").forEach((raw, i) => {
    const path = `plugins[${i}]`;
    if (!isObj(raw)) b.fail(path, `must be a mapping with type, name and parameters, got ${describe(raw)}`);
    b.checkKeys(raw, PLUGIN_KEYS, path);
    const type = b.name(raw.type, `${path}.type`, true)!;
    if (!pluginFactory(type))
      b.fail(`${path}.type`, `unknown plugin type "${type}" (known: ${registeredPluginTypes().join(", ")})`);
    const name = b.name(raw.name, `${path}.name`, false) ?? type;
    const clash = byName.get(name);
    if (clash) b.fail(`${path}.name`, `duplicate plugin name "${name}" (also ${clash.path})`);
    const spec: PluginSpec = { name, type, parameters: raw.parameters ?? undefined, path };
    plugins.push(spec);
    byName.set(name, spec);
  });

  // schedulingProfiles[]
  const profiles: ProfileSpec[] = [];
  const profileNames = new Map<string, string>();
  b.list(root.schedulingProfiles, "schedulingProfiles").forEach((raw, i) => {
    const path = `schedulingProfiles[${i}]`;
    if (!isObj(raw)) b.fail(path, `must be a mapping with name and plugins, got ${describe(raw)}`);
    b.checkKeys(raw, PROFILE_KEYS, path);
    const name = b.name(raw.name, `${path}.name`, true)!;
    const clash = profileNames.get(name);
    if (clash) b.fail(`${path}.name`, `duplicate profile name "${name}" (also ${clash})`);
    profileNames.set(name, path);
    const refs: ProfilePluginSpec[] = [];
    const seen = new Map<string, string>();
    b.list(raw.plugins, `${path}.plugins`).forEach((entry, j) => {
      const p = `${path}.plugins[${j}]`;
      if (!isObj(entry)) b.fail(p, `must be a mapping with pluginRef and weight, got ${describe(entry)}`);
      b.checkKeys(entry, PROFILE_PLUGIN_KEYS, p);
      const ref = b.name(entry.pluginRef, `${p}.pluginRef`, true)!;
      if (!byName.has(ref)) b.fail(`${p}.pluginRef`, `unknown plugin "${ref}" (not defined under plugins)`);
      const dup = seen.get(ref);
      if (dup) b.fail(`${p}.pluginRef`, `plugin "${ref}" is already listed in profile "${name}" (${dup})`);
      seen.set(ref, p);
      const w = entry.weight ?? 1;
      if (typeof w !== "number" || !Number.isFinite(w) || w < 0)
        b.fail(`${p}.weight`, `must be a number >= 0, got ${describe(entry.weight)}`);
      refs.push({ pluginRef: ref, weight: w, path: p });
    });
    profiles.push({ name, plugins: refs, path });
  });

  // featureGates[]
  const featureGates = b.list(root.featureGates, "featureGates").map((g, i) => {
    if (typeof g !== "string" || g === "")
      b.fail(`featureGates[${i}]`, `must be a non-empty string, got ${describe(g)}`);
    return g;
  });

  const sections: Obj = {};
  for (const [key, value] of Object.entries(root)) if (!TOP_LEVEL_KEYS.has(key)) sections[key] = value;

  // Capabilities are needed to build the implicit profile; a scratch instantiation also validates parameters.
  if (plugins.length === 0 && profiles.length === 0) {
    for (const spec of builtin.plugins) {
      plugins.push(spec);
      byName.set(spec.name, spec);
    }
    profiles.push(builtin.profile);
  } else if (profiles.length === 0) {
    const scratch = instantiateAll(plugins, createPluginHandle({ seed: 1 }), file);
    const refs: ProfilePluginSpec[] = [];
    scratch.forEach((p, i) => {
      // A utilization-detector listed only to tune admission thresholds must not silently become a filter.
      if (isSaturationDetector(p)) return;
      if (isFilter(p) || isScorer(p) || isPicker(p))
        refs.push({ pluginRef: plugins[i]!.name, weight: 1, path: DEFAULT_PATH });
    });
    profiles.push({ name: "default", plugins: refs, path: DEFAULT_PATH });
  }
  const scratch = instantiateAll(plugins, createPluginHandle({ seed: 1 }), file);
  const typeOf = (name: string): Plugin => scratch[plugins.indexOf(byName.get(name)!)]!;

  // Default picker for profiles without one.
  for (let i = 0; i < profiles.length; i++) {
    const profile = profiles[i]!;
    if (profile.plugins.some((r) => isPicker(typeOf(r.pluginRef)))) continue;
    let picker = plugins.find((s) => s.type === "max-score-picker" && s.parameters === undefined);
    if (!picker) {
      picker = {
        name: freeName(byName, "max-score-picker"),
        type: "max-score-picker",
        parameters: undefined,
        path: DEFAULT_PATH,
      };
      plugins.push(picker);
      byName.set(picker.name, picker);
      scratch.push(instantiateAll([picker], createPluginHandle({ seed: 1 }), file)[0]!);
    }
    profiles[i] = {
      ...profile,
      plugins: [...profile.plugins, { pluginRef: picker.name, weight: 1, path: DEFAULT_PATH }],
    };
  }

  // saturationDetector
  let detectorRef: string;
  const sd = root.saturationDetector;
  if (sd === undefined || sd === null) {
    const existing = plugins.find((s) => s.type === "utilization-detector");
    if (existing) detectorRef = existing.name;
    else detectorRef = addDetector(plugins, byName, undefined);
  } else {
    if (!isObj(sd)) b.fail("saturationDetector", `must be a mapping with pluginRef, got ${describe(sd)}`);
    const inline = Object.keys(sd).filter((k) => INLINE_DETECTOR_KEYS.has(k));
    if (inline.length > 0) {
      // v1.0–v1.2 form: thresholds inline. Validated by the utilization-detector factory below.
      if (sd.pluginRef !== undefined)
        b.fail("saturationDetector.pluginRef", `cannot be combined with inline thresholds (${inline.join(", ")})`);
      b.checkKeys(sd, INLINE_DETECTOR_KEYS, "saturationDetector");
      detectorRef = addDetector(plugins, byName, sd, "saturationDetector");
    } else {
      b.checkKeys(sd, new Set(["pluginRef"]), "saturationDetector");
      detectorRef = b.name(sd.pluginRef, "saturationDetector.pluginRef", true)!;
      if (!byName.has(detectorRef))
        b.fail("saturationDetector.pluginRef", `unknown plugin "${detectorRef}" (not defined under plugins)`);
    }
  }

  if (profiles.length > 1)
    b.warnings.push(
      `schedulingProfiles: ${profiles.length} profiles configured; the single-profile handler runs only the first ("${profiles[0]!.name}")`,
    );

  const config: PickerConfig = {
    apiVersion: apiVersion as string,
    kind: EPP_CONFIG_KIND,
    file,
    plugins,
    schedulingProfiles: profiles,
    saturationDetector: { pluginRef: detectorRef },
    featureGates,
    sections,
    warnings: b.warnings,
  };
  // Full dry run: parameters, profile slotting, detector capability, plugin dependencies.
  const handle = createPluginHandle({ seed: 1 });
  instantiatePlugins(config, handle);
  b.warnings.push(...handle.warnings);
  return config;
}

function freeName(byName: ReadonlyMap<string, PluginSpec>, base: string): string {
  if (!byName.has(base)) return base;
  for (let i = 2; ; i++) if (!byName.has(`${base}-${i}`)) return `${base}-${i}`;
}

function addDetector(
  plugins: PluginSpec[],
  byName: Map<string, PluginSpec>,
  parameters: unknown,
  path: string = DEFAULT_PATH,
): string {
  const spec: PluginSpec = {
    name: freeName(byName, "utilization-detector"),
    type: "utilization-detector",
    parameters,
    path,
  };
  plugins.push(spec);
  byName.set(spec.name, spec);
  return spec.name;
}

function paramField(spec: PluginSpec, field: string): string {
  // Inline saturationDetector thresholds live directly under the section, not under `.parameters`.
  const base = spec.path === "saturationDetector" ? spec.path : `${spec.path}.parameters`;
  return field === "" ? base : `${base}.${field}`;
}

function instantiateAll(specs: readonly PluginSpec[], handle: DefaultPluginHandle, file: string | undefined): Plugin[] {
  const out: Plugin[] = [];
  for (const spec of specs) {
    const factory = pluginFactory(spec.type);
    if (!factory) throw new ConfigError(`unknown plugin type "${spec.type}"`, file, `${spec.path}.type`);
    let plugin: Plugin;
    handle.setWarningContext(spec.path);
    try {
      plugin = factory(spec.name, spec.parameters, handle);
    } catch (err) {
      if (err instanceof PluginParamError) throw new ConfigError(err.detail, file, paramField(spec, err.field));
      // A ConfigError without a file names a field relative to the parameters (e.g. a data-layer engine config).
      if (err instanceof ConfigError && err.file === undefined && err.field !== undefined)
        throw new ConfigError(err.detail, file, paramField(spec, err.field));
      throw new ConfigError((err as Error).message ?? String(err), file, spec.path);
    } finally {
      handle.setWarningContext("");
    }
    if (!plugin || typeof plugin !== "object" || !plugin.typedName)
      throw new ConfigError(`factory for "${spec.type}" returned no plugin`, file, spec.path);
    if (plugin.typedName.name !== spec.name)
      throw new ConfigError(`factory for "${spec.type}" named the plugin "${plugin.typedName.name}"`, file, spec.path);
    handle.add(plugin);
    out.push(plugin);
  }
  return out;
}

const INSTANTIATED = new WeakMap<DefaultPluginHandle, { config: PickerConfig; set: PluginSet }>();

/**
 * Instantiates every plugin of `config` on `handle` and slots them into profiles. Idempotent per handle, so the
 * scheduler and admission share the same instances (call it with the same config; another config throws).
 */
export function instantiatePlugins(config: PickerConfig, handle: DefaultPluginHandle): PluginSet {
  const done = INSTANTIATED.get(handle);
  if (done) {
    if (done.config !== config) throw new Error("this plugin handle already holds plugins of another config");
    return done.set;
  }
  registerBuiltinPlugins();
  const file = config.file;
  const instances = instantiateAll(config.plugins, handle, file);
  const byName = new Map<string, Plugin>();
  for (let i = 0; i < instances.length; i++) byName.set(config.plugins[i]!.name, instances[i]!);

  const detector = byName.get(config.saturationDetector.pluginRef);
  if (!detector)
    throw new ConfigError(
      `unknown plugin "${config.saturationDetector.pluginRef}"`,
      file,
      "saturationDetector.pluginRef",
    );
  if (!isSaturationDetector(detector))
    throw new ConfigError(
      `plugin "${detector.typedName.name}" (type ${detector.typedName.type}) is not a saturation detector`,
      file,
      "saturationDetector.pluginRef",
    );
  handle.setMetricsStaleness(detector.metricsStalenessMs);

  config.plugins.forEach((spec, i) => {
    const p = instances[i]!;
    if (!isDependentPlugin(p)) return;
    try {
      p.resolveDependencies(handle);
    } catch (err) {
      throw new ConfigError((err as Error).message, file, spec.path);
    }
  });

  const profiles = config.schedulingProfiles.map((profile): ResolvedProfile => {
    const filters: Filter[] = [];
    const scorers: WeightedScorer[] = [];
    let picker: Picker | undefined;
    let pickerPath = "";
    for (const ref of profile.plugins) {
      const p = byName.get(ref.pluginRef);
      const field = `${ref.path}.pluginRef`;
      if (!p) throw new ConfigError(`unknown plugin "${ref.pluginRef}" (not defined under plugins)`, file, field);
      let slotted = false;
      if (isFilter(p)) {
        filters.push(p);
        slotted = true;
      }
      if (isScorer(p)) {
        scorers.push({ scorer: p, weight: ref.weight });
        slotted = true;
      }
      if (isPicker(p)) {
        if (picker)
          throw new ConfigError(
            `profile "${profile.name}" already has picker "${picker.typedName.name}" (${pickerPath})`,
            file,
            field,
          );
        picker = p;
        pickerPath = ref.path;
        slotted = true;
      }
      if (!slotted)
        throw new ConfigError(
          `plugin "${ref.pluginRef}" (type ${p.typedName.type}) is not a filter, scorer or picker`,
          file,
          field,
        );
    }
    if (!picker) throw new ConfigError(`profile "${profile.name}" has no picker`, file, profile.path);
    return { name: profile.name, filters, scorers, picker };
  });

  const set: PluginSet = { plugins: instances, profiles, saturationDetector: detector };
  INSTANTIATED.set(handle, { config, set });
  return set;
}
