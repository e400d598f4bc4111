/**
 * Plugin parameter validation. Factories read their `parameters` mapping through a ParamReader so every problem is
 * reported once, at start-up, with the exact field (`maxNumOfEndpoints: must be an integer >= 1`); the config
 * loader prefixes the path of the plugin entry (`plugins[2].parameters.`). Unknown keys are rejected: GIE's JSON
 * decoding silently ignores a misspelt parameter, which leaves the default in force without anyone noticing.
 */

import { describeValue as describe, parseGoDuration } from "../common/values.js";

/** A bad plugin parameter. `field` is relative to the plugin's `parameters` ("" = the mapping itself). */
export class PluginParamError extends Error {
  override readonly name = "PluginParamError";
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(field === "" ? `parameters: ${detail}` : `parameters.${field}: ${detail}`);
  }
}

export { parseGoDuration };

export interface NumberRule {
  /** Inclusive lower bound. */
  readonly min?: number;
  /** Exclusive lower bound (for "> 0"). */
  readonly above?: number;
  /** Inclusive upper bound. */
  readonly max?: number;
}

/** Reads typed values out of one plugin's `parameters`; call `done()` last to reject unknown keys. */
export class ParamReader {
  readonly #raw: Readonly<Record<string, unknown>>;
  readonly #seen = new Set<string>();

  constructor(params: unknown) {
    if (params === undefined || params === null) this.#raw = {};
    else if (typeof params === "object" && !Array.isArray(params)) this.#raw = params as Record<string, unknown>;
    else throw new PluginParamError("", `must be a mapping, got ${describe(params)}`);
  }

  has(key: string): boolean {
    return this.#raw[key] !== undefined && this.#raw[key] !== null;
  }

  #get(key: string): unknown {
    this.#seen.add(key);
    const v = this.#raw[key];
    return v === null ? undefined : v;
  }

  number(key: string, fallback: number, rule: NumberRule = {}): number {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || !inRange(v, rule))
      throw new PluginParamError(key, `must be a number${ruleText(rule)}, got ${describe(v)}`);
    return v;
  }

  integer(key: string, fallback: number, rule: NumberRule = {}): number {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || !inRange(v, rule))
      throw new PluginParamError(key, `must be an integer${ruleText(rule)}, got ${describe(v)}`);
    return v;
  }

  boolean(key: string, fallback: boolean): boolean {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") throw new PluginParamError(key, `must be true or false, got ${describe(v)}`);
    return v;
  }

  string(key: string, fallback: string): string {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "string" || v === "")
      throw new PluginParamError(key, `must be a non-empty string, got ${describe(v)}`);
    return v;
  }

  /** A Go duration string such as "200ms"; returns milliseconds. */
  duration(key: string, fallbackMs: number, rule: NumberRule = {}): number {
    const v = this.#get(key);
    if (v === undefined) return fallbackMs;
    const ms = typeof v === "string" ? parseGoDuration(v) : undefined;
    if (ms === undefined)
      throw new PluginParamError(key, `must be a duration such as "200ms" or "1s", got ${describe(v)}`);
    if (!inRange(ms, rule))
      throw new PluginParamError(key, `must be a duration${ruleText(rule, "ms")}, got ${describe(v)}`);
    return ms;
  }

  /** Rejects keys nobody read: a misspelt parameter must not silently fall back to its default. */
  done(): void {
    for (const key of Object.keys(this.#raw)) {
      if (!this.#seen.has(key)) {
        const known = [...this.#seen].sort();
        throw new PluginParamError(
          key,
          known.length === 0
            ? "unknown parameter (this plugin takes no parameters)"
            : `unknown parameter (known: ${known.join(", ")})`,
        );
      }
    }
  }
}

function inRange(v: number, rule: NumberRule): boolean {
  if (rule.min !== undefined && v < rule.min) return false;
  if (rule.above !== undefined && v <= rule.above) return false;
  if (rule.max !== undefined && v > rule.max) return false;
  return true;
}

function ruleText(rule: NumberRule, unit = ""): string {
  const parts: string[] = [];
  if (rule.min !== undefined) parts.push(`>= ${rule.min}${unit}`);
  if (rule.above !== undefined) parts.push(`> ${rule.above}${unit}`);
  if (rule.max !== undefined) parts.push(`<= ${rule.max}${unit}`);
  return parts.length === 0 ? "" : ` ${parts.join(" and ")}`;
}
