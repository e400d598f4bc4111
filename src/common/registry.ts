/**
 * The plugin registry, after GIE's `plugins.Register(type, factory)`: one process-wide map from plugin type to a
 * factory `(name, parameters, handle) → plugin`, for every kind of plugin an EndpointPickerConfig lists under
 * `plugins:` — scheduling plugins, data-layer metrics extractors, flow-control policies — so each is validated the
 * same way, once, at start-up, with its field path (docs/design/scheduling.md §1.1). Each room registers its own
 * kind through a typed wrapper (scheduling `registerPlugin`, datalayer `registerMetricsExtractor`, admission
 * `registerFlowControlPolicy`); out-of-tree code registers extra types the same way before the config is loaded
 * (the package's `./plugins` export, docs/architecture.md). A leaf: it knows no plugin interface beyond a name.
 */

export interface TypedName {
  readonly type: string;
  readonly name: string;
}

export interface Plugin {
  readonly typedName: TypedName;
}

/**
 * What a registered type is. Scheduling plugins are slotted into profiles by capability (Filter, Scorer, Picker,
 * PreRequest, SaturationDetector); the others are found by kind by the module that owns the concern. "recorded"
 * types are GIE/llm-d config entries switchyard accepts and whose parameters it keeps, without behaviour of its own.
 */
export type PluginKind =
  | "scheduling"
  | "metrics-extractor"
  | "metrics-data-source"
  | "fairness-policy"
  | "ordering-policy"
  | "usage-limit-policy"
  | "recorded";

export const PLUGIN_KINDS: readonly PluginKind[] = [
  "scheduling",
  "metrics-extractor",
  "metrics-data-source",
  "fairness-policy",
  "ordering-policy",
  "usage-limit-policy",
  "recorded",
];

/** Builds one plugin instance from its config entry; throws (ideally a ConfigError or PluginParamError) on bad input. */
export type PluginFactory<P extends Plugin = Plugin, H = unknown> = (name: string, params: unknown, handle: H) => P;

export interface PluginRegistration {
  readonly kind: PluginKind;
  readonly type: string;
  /** Called with the framework's plugin handle (scheduling's PluginHandle). */
  readonly factory: PluginFactory<Plugin, unknown>;
}

export interface RegisterOptions {
  /** Replace an existing registration of the same kind (e.g. a module taking over a type the EPP only records). */
  readonly replace?: boolean;
}

const REGISTRY = new Map<string, PluginRegistration>();

/**
 * Registers a plugin type of one kind. Refuses an empty type, a factory that is not a function, a duplicate type
 * (unless `replace`), and replacing a type with one of another kind (a config that referenced it would change
 * meaning silently).
 */
export function registerPluginType<P extends Plugin, H>(
  kind: PluginKind,
  type: string,
  factory: PluginFactory<P, H>,
  options: RegisterOptions = {},
): void {
  if (!PLUGIN_KINDS.includes(kind)) throw new TypeError(`unknown plugin kind "${String(kind)}"`);
  if (typeof type !== "string" || type === "") throw new TypeError("plugin type must be a non-empty string");
  if (typeof factory !== "function") throw new TypeError(`plugin factory for "${type}" must be a function`);
  const existing = REGISTRY.get(type);
  if (existing !== undefined) {
    if (!options.replace) throw new Error(`plugin type "${type}" is already registered (${existing.kind})`);
    if (existing.kind !== kind && existing.kind !== "recorded")
      throw new Error(`plugin type "${type}" is registered as a ${existing.kind} plugin, not a ${kind} plugin`);
  }
  REGISTRY.set(type, { kind, type, factory: factory as PluginFactory<Plugin, unknown> });
}

export function pluginRegistration(type: string): PluginRegistration | undefined {
  return REGISTRY.get(type);
}

/** Registered types, sorted; only those of `kind` when given. */
export function registeredPluginTypes(kind?: PluginKind): readonly string[] {
  const out: string[] = [];
  for (const r of REGISTRY.values()) if (kind === undefined || r.kind === kind) out.push(r.type);
  return out.sort();
}
