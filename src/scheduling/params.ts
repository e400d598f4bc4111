/**
 * Plugin parameter validation. Factories read their `parameters` mapping through a ParamReader so every problem is
 * reported once, at start-up, with the exact field (`maxNumOfEndpoints: must be an integer >= 1`); the config
 * loader prefixes the path of the plugin entry (`plugins[2].parameters.`). A ParamReader is the common config
 * reader (src/common/config-reader.ts) opened on one plugin's parameters, failing with a PluginParamError whose
 * field is relative to them, so factories stay independent of where the config came from.
 */

import { type MappingReader, type NumberRule, PluginParamError, readParams } from "../common/config-reader.js";
import { parseGoDuration } from "../common/values.js";

export { type NumberRule, PluginParamError, parseGoDuration };

/** Reads typed values out of one plugin's `parameters`; call `done()` last to reject unknown keys. */
export class ParamReader {
  /** The path-aware reader underneath, for nested parameters (lists, sub-mappings). */
  readonly mapping: MappingReader;

  constructor(params: unknown) {
    this.mapping = readParams(params);
  }

  has(key: string): boolean {
    return this.mapping.has(key);
  }

  number(key: string, fallback: number, rule: NumberRule = {}): number {
    return this.mapping.number(key, rule, fallback);
  }

  integer(key: string, fallback: number, rule: NumberRule = {}): number {
    return this.mapping.integer(key, rule, fallback);
  }

  boolean(key: string, fallback: boolean): boolean {
    return this.mapping.boolean(key, fallback);
  }

  string(key: string, fallback: string): string {
    return this.mapping.string(key, fallback);
  }

  /** A list of non-blank strings; absent = empty. */
  strings(key: string): readonly string[] {
    return this.mapping.strings(key);
  }

  /** A Go duration string such as "200ms"; returns milliseconds. */
  duration(key: string, fallbackMs: number, rule: NumberRule = {}): number {
    return this.mapping.duration(key, rule, fallbackMs);
  }

  /** Rejects keys nobody read: a misspelt parameter must not silently fall back to its default. */
  done(): void {
    this.mapping.done();
  }
}
