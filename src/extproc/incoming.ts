/**
 * What the request side of an ext_proc stream hands the director (src/request/lifecycle.ts's IncomingRequest): the
 * request headers read lazily where Envoy put them, and the buffered body (docs/design/ext-proc-protocol.md §5).
 */
import type { IncomingRequest } from "../request/lifecycle.js";
import { type HeaderMap, type HeaderValue, headerText } from "./messages.js";

/** Envoy's header list as a Map of lower-case names; repeated names are joined with commas, as HTTP allows. */
export function parseHeaders(map: HeaderMap | undefined): Map<string, string> {
  const out = new Map<string, string>();
  const list = map?.headers;
  if (list === undefined) return out;
  for (const header of list) {
    const key = header.key;
    if (key === undefined || key === "") continue;
    const name = key.toLowerCase();
    const value = headerText(header);
    const previous = out.get(name);
    out.set(name, previous === undefined ? value : `${previous},${value}`);
  }
  return out;
}

/**
 * The request headers, read where they are. The director asks for a handful of names (`:path`, the rewrite,
 * objective and tenant headers, mostly absent), so decoding every value into a Map up front — eight UTF-8 decodes
 * and a Map per request — is work thrown away; a lookup scans the few headers instead. Anything that iterates
 * (header echo, tests) gets the same Map `parseHeaders` would build, made once on first use. Names passed to
 * get()/has() must be lower-case, as every key of that Map is.
 */
export class RequestHeaders implements ReadonlyMap<string, string> {
  readonly #list: readonly HeaderValue[];
  #overrides: Map<string, string> | undefined;
  #map: Map<string, string> | undefined;

  constructor(list: readonly HeaderValue[]) {
    this.#list = list;
  }

  /** Replaces (or adds) one header, as `Map#set` on the parsed map would. */
  set(name: string, value: string): void {
    if (this.#map !== undefined) this.#map.set(name, value);
    else {
      this.#overrides ??= new Map();
      this.#overrides.set(name, value);
    }
  }

  get(name: string): string | undefined {
    if (this.#map !== undefined) return this.#map.get(name);
    const override = this.#overrides?.get(name);
    if (override !== undefined) return override;
    let out: string | undefined;
    const list = this.#list;
    for (let i = 0; i < list.length; i++) {
      const header = list[i]!;
      const key = header.key;
      // Envoy sends lower-case names (HTTP/2 requires them); the lower-casing fallback keeps parseHeaders' rule.
      if (key !== name && (key === undefined || key.length !== name.length || key.toLowerCase() !== name)) continue;
      const value = headerText(header);
      out = out === undefined ? value : `${out},${value}`;
    }
    return out;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  #all(): Map<string, string> {
    if (this.#map === undefined) {
      const map = parseHeaders({ headers: this.#list as HeaderValue[] });
      for (const [name, value] of this.#overrides ?? []) map.set(name, value);
      this.#map = map;
      this.#overrides = undefined;
    }
    return this.#map;
  }

  get size(): number {
    return this.#all().size;
  }

  forEach(fn: (value: string, key: string, map: ReadonlyMap<string, string>) => void, thisArg?: unknown): void {
    for (const [key, value] of this.#all()) fn.call(thisArg, value, key, this);
  }

  entries(): MapIterator<[string, string]> {
    return this.#all().entries();
  }

  keys(): MapIterator<string> {
    return this.#all().keys();
  }

  values(): MapIterator<string> {
    return this.#all().values();
  }

  [Symbol.iterator](): MapIterator<[string, string]> {
    return this.#all()[Symbol.iterator]();
  }
}

/** `method` is read on demand: the director never needs it, and each header read is a UTF-8 decode. */
export class Incoming implements IncomingRequest {
  readonly path: string;

  constructor(
    readonly requestId: string,
    readonly headers: RequestHeaders,
    readonly body: Buffer,
    readonly headerOnly: boolean,
    readonly subsetHint: readonly string[] | undefined,
  ) {
    this.path = headers.get(":path") ?? "";
  }

  get method(): string {
    return this.headers.get(":method") ?? "";
  }
}
