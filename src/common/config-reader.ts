/**
 * The one config reader every config surface uses (the EndpointPickerConfig document, plugin parameters, the
 * admission sections, engine configs): typed reads at a field path, each problem reported once at start-up with the
 * file and the exact path (`epp.yaml: admission.budgets[2].tokensPerMinute: must be an integer >= 1, got 0`), and
 * unknown keys rejected — GIE's JSON decoding silently ignores a misspelt field, which leaves the default in force
 * without anyone noticing (docs/design/scheduling.md §1.1).
 *
 * A `ConfigReader` knows the file and how to fail; a `MappingReader` reads one mapping at a path and remembers the
 * keys it read, so `done()` can reject the rest. Nothing here does I/O.
 */

import { ConfigError } from "./errors.js";
import { describeValue as describe, isPlainObject, type PlainObject, parseGoDuration } from "./values.js";

export interface NumberRule {
  /** Inclusive lower bound. */
  readonly min?: number;
  /** Exclusive lower bound (for "> 0"). */
  readonly above?: number;
  /** Inclusive upper bound. */
  readonly max?: number;
}

/** Throws for a bad value at `path` (a field path, "" for the value the reader was opened on). */
export type ConfigFailure = (path: string, message: string) => never;

export interface ConfigReaderOptions {
  /** How to fail; default a ConfigError naming the reader's file and the path. */
  readonly fail?: ConfigFailure;
  /**
   * The message for a key nobody reads or allows. Default `unknown field (known: a, b)`; plugin parameters say
   * "parameter", the document's own structure says "expected one of".
   */
  readonly unknownKey?: (known: readonly string[]) => string;
}

const defaultUnknownKey = (known: readonly string[]): string => `unknown field (known: ${known.join(", ")})`;

/** `a` + `b` as a field path: "" + "x" = "x", "a" + "x" = "a.x", "a" + "[2]" = "a[2]". */
export function joinPath(base: string, key: string): string {
  if (base === "") return key;
  return key.startsWith("[") ? `${base}${key}` : `${base}.${key}`;
}

function inRange(v: number, rule: NumberRule): boolean {
  if (rule.min !== undefined && v < rule.min) return false;
  if (rule.above !== undefined && v <= rule.above) return false;
  if (rule.max !== undefined && v > rule.max) return false;
  return true;
}

/** " >= 1 and <= 5" for a rule, "" for none; `unit` follows each bound. */
export function ruleText(rule: NumberRule, unit = ""): string {
  const parts: string[] = [];
  if (rule.min !== undefined) parts.push(`>= ${rule.min}${unit}`);
  if (rule.above !== undefined) parts.push(`> ${rule.above}${unit}`);
  if (rule.max !== undefined) parts.push(`<= ${rule.max}${unit}`);
  return parts.length === 0 ? "" : ` ${parts.join(" and ")}`;
}

const QUANTITY_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};

/** A Kubernetes quantity as GIE's maxBytes accepts it ("1Gi", "500M", 1048576). Undefined when malformed. */
export function parseByteQuantity(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$/.exec(v.trim());
  if (!m) return undefined;
  const bytes = Math.ceil(Number(m[1]) * QUANTITY_UNITS[m[2] ?? ""]!);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * A bad plugin parameter. `field` is relative to the plugin's `parameters` ("" = the mapping itself); the config
 * loader prefixes the plugin entry's path (`plugins[2].parameters.`).
 */
export class PluginParamError extends Error {
  override readonly name = "PluginParamError";
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(field === "" ? `parameters: ${detail}` : `parameters.${field}: ${detail}`);
  }
}

const absent = (v: unknown): v is null | undefined => v === undefined || v === null;

/**
 * Typed reads of single values at a path. Each returns `fallback` for an absent (or YAML null) value; the variants
 * without a fallback return undefined then.
 */
export class ConfigReader {
  readonly file: string | undefined;
  readonly #fail: ConfigFailure;
  readonly unknownKey: (known: readonly string[]) => string;

  constructor(file: string | undefined, options: ConfigReaderOptions = {}) {
    this.file = file;
    this.#fail =
      options.fail ??
      ((path, message) => {
        throw new ConfigError(message, file, path === "" ? undefined : path);
      });
    this.unknownKey = options.unknownKey ?? defaultUnknownKey;
  }

  fail(path: string, message: string): never {
    return this.#fail(path, message);
  }

  /** The mapping at `path`; `what` completes "must be a mapping…" (e.g. " with pluginRef and weight"). */
  mapping(v: unknown, path: string, what = ""): MappingReader {
    if (!isPlainObject(v)) this.fail(path, `must be a mapping${what}, got ${describe(v)}`);
    return new MappingReader(this, v, path);
  }

  /** Like mapping(), but an absent value reads as an empty mapping. */
  optionalMapping(v: unknown, path: string): MappingReader {
    return absent(v) ? new MappingReader(this, {}, path) : this.mapping(v, path);
  }

  /** A list; absent = empty. */
  list(v: unknown, path: string): readonly unknown[] {
    if (absent(v)) return [];
    if (!Array.isArray(v)) this.fail(path, `must be a list, got ${describe(v)}`);
    return v;
  }

  number(v: unknown, path: string, rule: NumberRule, fallback: number): number;
  number(v: unknown, path: string, rule?: NumberRule): number | undefined;
  number(v: unknown, path: string, rule: NumberRule = {}, fallback?: number): number | undefined {
    if (absent(v)) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || !inRange(v, rule))
      this.fail(path, `must be a number${ruleText(rule)}, got ${describe(v)}`);
    return v;
  }

  /** A safe integer (a YAML 1e20 is not one). */
  integer(v: unknown, path: string, rule: NumberRule, fallback: number): number;
  integer(v: unknown, path: string, rule?: NumberRule): number | undefined;
  integer(v: unknown, path: string, rule: NumberRule = {}, fallback?: number): number | undefined {
    if (absent(v)) return fallback;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || !inRange(v, rule))
      this.fail(path, `must be an integer${ruleText(rule)}, got ${describe(v)}`);
    return v;
  }

  boolean(v: unknown, path: string, fallback: boolean): boolean;
  boolean(v: unknown, path: string): boolean | undefined;
  boolean(v: unknown, path: string, fallback?: boolean): boolean | undefined {
    if (absent(v)) return fallback;
    if (typeof v !== "boolean") this.fail(path, `must be true or false, got ${describe(v)}`);
    return v;
  }

  /** A string that is not blank. */
  string(v: unknown, path: string, fallback: string): string;
  string(v: unknown, path: string): string | undefined;
  string(v: unknown, path: string, fallback?: string): string | undefined {
    if (absent(v)) return fallback;
    if (typeof v !== "string" || v.trim() === "") this.fail(path, `must be a non-empty string, got ${describe(v)}`);
    return v;
  }

  /** Any string, the empty one included (e.g. a metric spec, where "" disables a signal). */
  text(v: unknown, path: string): string | undefined {
    if (absent(v)) return undefined;
    if (typeof v !== "string") this.fail(path, `must be a string, got ${describe(v)}`);
    return v;
  }

  /** A Go duration string such as "200ms"; returns milliseconds. */
  duration(v: unknown, path: string, rule: NumberRule, fallbackMs: number): number;
  duration(v: unknown, path: string, rule?: NumberRule): number | undefined;
  duration(v: unknown, path: string, rule: NumberRule = {}, fallbackMs?: number): number | undefined {
    if (absent(v)) return fallbackMs;
    const ms = typeof v === "string" ? parseGoDuration(v) : undefined;
    if (ms === undefined) this.fail(path, `must be a duration such as "200ms" or "1s", got ${describe(v)}`);
    if (!inRange(ms, rule)) this.fail(path, `must be a duration${ruleText(rule, "ms")}, got ${describe(v)}`);
    return ms;
  }

  /** A byte count or Kubernetes quantity ("512Mi", "1G"). */
  bytes(v: unknown, path: string, fallback: number): number {
    if (absent(v)) return fallback;
    const n = parseByteQuantity(v);
    if (n === undefined)
      this.fail(path, `must be a byte count or quantity such as 1048576, "512Mi" or "1G", got ${describe(v)}`);
    return n;
  }

  /** One of `choices`. */
  oneOf<T extends string>(v: unknown, path: string, choices: readonly T[]): T | undefined {
    if (absent(v)) return undefined;
    if (typeof v !== "string" || !(choices as readonly string[]).includes(v))
      this.fail(path, `must be one of ${choices.join(", ")}, got ${describe(v)}`);
    return v as T;
  }
}

/** One mapping at a path: reads remember their key, so done() can reject every key nobody read. */
export class MappingReader {
  readonly reader: ConfigReader;
  readonly raw: Readonly<PlainObject>;
  readonly path: string;
  readonly #seen = new Set<string>();

  constructor(reader: ConfigReader, raw: Readonly<PlainObject>, path: string) {
    this.reader = reader;
    this.raw = raw;
    this.path = path;
  }

  /** The field path of `key` under this mapping. */
  at(key: string): string {
    return joinPath(this.path, key);
  }

  fail(key: string, message: string): never {
    return this.reader.fail(key === "" ? this.path : this.at(key), message);
  }

  has(key: string): boolean {
    return !absent(this.raw[key]);
  }

  /** The raw value of `key` (YAML null reads as undefined), marked as read. */
  get(key: string): unknown {
    this.#seen.add(key);
    const v = this.raw[key];
    return v === null ? undefined : v;
  }

  keys(): readonly string[] {
    return Object.keys(this.raw);
  }

  mapping(key: string, what = ""): MappingReader {
    return this.reader.mapping(this.get(key), this.at(key), what);
  }

  optionalMapping(key: string): MappingReader {
    return this.reader.optionalMapping(this.get(key), this.at(key));
  }

  list(key: string): readonly unknown[] {
    return this.reader.list(this.get(key), this.at(key));
  }

  number(key: string, rule: NumberRule, fallback: number): number;
  number(key: string, rule?: NumberRule): number | undefined;
  number(key: string, rule: NumberRule = {}, fallback?: number): number | undefined {
    return this.reader.number(this.get(key), this.at(key), rule, fallback as number);
  }

  integer(key: string, rule: NumberRule, fallback: number): number;
  integer(key: string, rule?: NumberRule): number | undefined;
  integer(key: string, rule: NumberRule = {}, fallback?: number): number | undefined {
    return this.reader.integer(this.get(key), this.at(key), rule, fallback as number);
  }

  boolean(key: string, fallback: boolean): boolean;
  boolean(key: string): boolean | undefined;
  boolean(key: string, fallback?: boolean): boolean | undefined {
    return this.reader.boolean(this.get(key), this.at(key), fallback as boolean);
  }

  string(key: string, fallback: string): string;
  string(key: string): string | undefined;
  string(key: string, fallback?: string): string | undefined {
    return this.reader.string(this.get(key), this.at(key), fallback as string);
  }

  text(key: string): string | undefined {
    return this.reader.text(this.get(key), this.at(key));
  }

  duration(key: string, rule: NumberRule, fallbackMs: number): number;
  duration(key: string, rule?: NumberRule): number | undefined;
  duration(key: string, rule: NumberRule = {}, fallbackMs?: number): number | undefined {
    return this.reader.duration(this.get(key), this.at(key), rule, fallbackMs as number);
  }

  bytes(key: string, fallback: number): number {
    return this.reader.bytes(this.get(key), this.at(key), fallback);
  }

  oneOf<T extends string>(key: string, choices: readonly T[]): T | undefined {
    return this.reader.oneOf(this.get(key), this.at(key), choices);
  }

  /** A list of non-blank strings; absent = empty. */
  strings(key: string): readonly string[] {
    return this.list(key).map((v, i) => this.reader.string(v, `${this.at(key)}[${i}]`)!);
  }

  /** Rejects any key outside `allowed` (for mappings whose keys are read out of order or by other modules). */
  only(allowed: Iterable<string>): this {
    const known = [...allowed];
    for (const key of Object.keys(this.raw)) if (!known.includes(key)) this.fail(key, this.reader.unknownKey(known));
    return this;
  }

  /** Rejects every key nobody read: a misspelt field must not silently fall back to its default. */
  done(): void {
    for (const key of Object.keys(this.raw))
      if (!this.#seen.has(key)) this.fail(key, this.reader.unknownKey([...this.#seen].sort()));
  }
}

/**
 * The reader plugin factories of every kind use for their `parameters`: failures are PluginParamErrors relative to
 * the parameters, and unknown keys read as "unknown parameter".
 */
export const PARAMS_READER = new ConfigReader(undefined, {
  fail: (path, detail) => {
    throw new PluginParamError(path, detail);
  },
  unknownKey: (known) =>
    known.length === 0
      ? "unknown parameter (this plugin takes no parameters)"
      : `unknown parameter (known: ${known.join(", ")})`,
});

/** One plugin's `parameters` (absent = empty); call done() last to reject unknown parameters. */
export function readParams(params: unknown): MappingReader {
  return PARAMS_READER.optionalMapping(params, "");
}
