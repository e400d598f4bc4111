/**
 * Scheduling's side of the plugin registry (src/common/registry.ts, shared by every plugin kind): the handle plugins
 * are built on, and the typed registration of scheduling plugins. One object may implement several extension
 * points (Filter, Scorer, Picker, PreRequest, SaturationDetector); the framework slots it by capability checks, the
 * analogue of Go's type assertions. Out-of-tree code registers extra types before the config is loaded.
 */
import { DEFAULT_SATURATION_STALENESS_MS } from "../common/constants.js";
import {
  type PluginFactory as AnyPluginFactory,
  type PluginKind,
  pluginRegistration,
  type RegisterOptions,
  registeredPluginTypes,
  registerPluginType,
} from "../common/registry.js";
import type { Endpoint } from "../datastore/types.js";
import { createRandom, type RandomSource } from "./random.js";
import type { EndpointStateHolder, Filter, Picker, Plugin, PreRequest, SaturationDetector, Scorer } from "./types.js";

/** What a plugin may use besides its parameters. Everything here is hot-path safe (no I/O). */
export interface PluginHandle {
  /** An instantiated plugin by name (only plugins created earlier in config order, or all of them at run time). */
  plugin(name: string): Plugin | undefined;
  /** Every instantiated plugin, in config order. */
  plugins(): readonly Plugin[];
  /** Monotonic milliseconds, the clock of `EndpointMetrics.updateTime` (performance.now() by default). */
  now(): number;
  /** Uniform [0,1); seeded in tests. */
  random(): number;
  /** Metrics older than this are stale; set from the configured saturation detector (default 200 ms). */
  readonly metricsStalenessMs: number;
  /** Current pool endpoints, for plugins that purge state of departed endpoints (empty when not wired). */
  endpoints(): readonly Endpoint[];
  /** Records a non-fatal configuration warning (the caller of loadPickerConfig logs them). */
  warn(message: string): void;
}

export type PluginFactory = AnyPluginFactory<Plugin, PluginHandle>;

export interface PluginHandleOptions {
  /** Default performance.now(). */
  readonly now?: () => number;
  /** Default: sfc32 seeded from `seed`, or from crypto when no seed is given. */
  readonly random?: RandomSource;
  readonly seed?: number;
  /** Default: an empty list. */
  readonly endpoints?: () => readonly Endpoint[];
  /** Default 200 ms (GIE utilization-detector); overwritten when a saturation detector is instantiated. */
  readonly metricsStalenessMs?: number;
}

const NO_ENDPOINTS: readonly Endpoint[] = [];
const noEndpoints = (): readonly Endpoint[] => NO_ENDPOINTS;
const monotonicNow = (): number => performance.now();

export class DefaultPluginHandle implements PluginHandle {
  readonly #plugins = new Map<string, Plugin>();
  readonly #ordered: Plugin[] = [];
  readonly #warnings: string[] = [];
  readonly #now: () => number;
  readonly #random: RandomSource;
  readonly #endpoints: () => readonly Endpoint[];
  #staleness: number;
  #warnPrefix = "";
  #cycleNow: number | undefined;

  constructor(options: PluginHandleOptions = {}) {
    this.#now = options.now ?? monotonicNow;
    this.#random = options.random ?? createRandom(options.seed);
    this.#endpoints = options.endpoints ?? noEndpoints;
    this.#staleness = options.metricsStalenessMs ?? DEFAULT_SATURATION_STALENESS_MS;
  }

  plugin(name: string): Plugin | undefined {
    return this.#plugins.get(name);
  }

  plugins(): readonly Plugin[] {
    return this.#ordered;
  }

  now(): number {
    return this.#cycleNow ?? this.#now();
  }

  /**
   * Runs `fn` with the clock pinned to one reading: every plugin of a scheduling cycle then judges freshness at the
   * same instant (a metric cannot be fresh for one scorer and stale for the next), and the cycle reads the clock
   * once instead of once per plugin.
   */
  atOneInstant<T>(fn: () => T): T {
    if (this.#cycleNow !== undefined) return fn();
    this.#cycleNow = this.#now();
    try {
      return fn();
    } finally {
      this.#cycleNow = undefined;
    }
  }

  random(): number {
    return this.#random();
  }

  get metricsStalenessMs(): number {
    return this.#staleness;
  }

  endpoints(): readonly Endpoint[] {
    return this.#endpoints();
  }

  warn(message: string): void {
    this.#warnings.push(this.#warnPrefix === "" ? message : `${this.#warnPrefix}: ${message}`);
  }

  /** Warnings recorded so far, prefixed with the config path that was being built. */
  get warnings(): readonly string[] {
    return this.#warnings;
  }

  /** Framework use: adds an instantiated plugin under its name. */
  add(plugin: Plugin): void {
    const name = plugin.typedName.name;
    if (this.#plugins.has(name)) throw new Error(`plugin "${name}" is already registered on this handle`);
    this.#plugins.set(name, plugin);
    this.#ordered.push(plugin);
  }

  /** Framework use: the staleness threshold of the configured saturation detector. */
  setMetricsStaleness(ms: number): void {
    this.#staleness = ms;
  }

  /** Framework use: the config path prefixed to warnings while a factory runs. */
  setWarningContext(prefix: string): void {
    this.#warnPrefix = prefix;
  }
}

export function createPluginHandle(options: PluginHandleOptions = {}): DefaultPluginHandle {
  return new DefaultPluginHandle(options);
}

/** Registers a scheduling plugin type (kind "scheduling"). Throws on a duplicate type unless `replace` is set. */
export function registerPlugin(type: string, factory: PluginFactory, options: RegisterOptions = {}): void {
  registerPluginType("scheduling", type, factory, options);
}

/** The factory of a registered type of any kind (every kind is instantiated on the same handle). */
export function pluginFactory(type: string): PluginFactory | undefined {
  return pluginRegistration(type)?.factory as PluginFactory | undefined;
}

export { type PluginKind, pluginRegistration, type RegisterOptions, registeredPluginTypes };

export function isFilter(p: Plugin): p is Filter {
  return typeof (p as Partial<Filter>).filter === "function";
}

export function isScorer(p: Plugin): p is Scorer {
  return typeof (p as Partial<Scorer>).score === "function";
}

export function isPicker(p: Plugin): p is Picker {
  return typeof (p as Partial<Picker>).pick === "function";
}

export function isPreRequest(p: Plugin): p is PreRequest {
  return typeof (p as Partial<PreRequest>).preRequest === "function";
}

export function isSaturationDetector(p: Plugin): p is SaturationDetector {
  const d = p as Partial<SaturationDetector>;
  return typeof d.saturation === "function" && typeof d.isSaturated === "function";
}

/** A plugin that needs other plugins resolves them here, after all exist; throwing fails the config. */
export interface DependentPlugin extends Plugin {
  resolveDependencies(handle: PluginHandle): void;
}

export function isDependentPlugin(p: Plugin): p is DependentPlugin {
  return typeof (p as Partial<DependentPlugin>).resolveDependencies === "function";
}

export function isEndpointStateHolder(p: Plugin): p is EndpointStateHolder {
  return typeof (p as Partial<EndpointStateHolder>).endpointRemoved === "function";
}
