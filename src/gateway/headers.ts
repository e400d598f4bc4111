/**
 * Header lists as Envoy's ext_proc filter sees them. A list is flat — `[name0, value0, name1, value1, …]` — with
 * lower-case names, pseudo-headers first, repeats kept in order (node's rawHeaders layout, accepted directly by
 * undici and `res.writeHead`, so no per-request object building).
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { REQUEST_ID_HEADER } from "../common/constants.js";

export type HeaderList = string[];

/**
 * Hop-by-hop headers Envoy's HTTP/1 codec consumes and never forwards (RFC 9110 §7.6.1); undici also refuses
 * most of them as request headers. `expect` is answered by node (100-continue) before we see the request.
 */
const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "upgrade",
  "expect",
  "trailer",
  "http2-settings",
]);

/** Header names listed in a `Connection` value (RFC 9110 §7.6.1), lower-cased; pseudo-headers and `host` never. */
function connectionOptions(value: string, into: string[] | undefined): string[] | undefined {
  for (const part of value.split(",")) {
    const n = part.trim().toLowerCase();
    // Framing headers stay: they say where the body ends, whatever the client nominates.
    if (n === "" || n === "host" || n === "content-length" || n.startsWith(":") || HOP_BY_HOP.has(n) || n === "close")
      continue;
    if (into === undefined) into = [n];
    else into.push(n);
  }
  return into;
}

export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}

export interface RequestHead {
  readonly list: HeaderList;
  /**
   * HTTP/1.1 framing says no body follows: no transfer-encoding and no (or a zero) content-length — exactly when
   * Envoy's codec sets end_stream on the headers.
   */
  readonly headerOnly: boolean;
}

/**
 * The request header map Envoy hands to ext_proc: `:authority`, `:path`, `:method`, `:scheme`, then the client's
 * headers lower-cased. Like Envoy (`generate_request_id`) it adds `x-request-id` when absent and sets
 * `x-forwarded-proto`. Reads rawHeaders only, so node never builds its lazy `req.headers` object.
 */
export function requestHead(req: IncomingMessage): RequestHead {
  const raw = req.rawHeaders;
  const out: HeaderList = [
    ":authority",
    "",
    ":path",
    req.url ?? "/",
    ":method",
    req.method ?? "GET",
    ":scheme",
    "http",
  ];
  let hasRequestId = false;
  let chunked = false;
  let contentLength: string | undefined;
  let nominated: string[] | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (name === "host") {
      if (out[1] === "") out[1] = value;
      continue;
    }
    if (name === "transfer-encoding") chunked = true;
    if (name === "connection") nominated = connectionOptions(value, nominated);
    if (name === "x-forwarded-proto" || HOP_BY_HOP.has(name)) continue;
    if (name === REQUEST_ID_HEADER) hasRequestId = true;
    else if (name === "content-length") contentLength = value;
    out.push(name, value);
  }
  // Envoy drops the request headers that `Connection` nominates (measured on Envoy 1.40, docs/security.md): they
  // are meant for this hop only and reached neither ext_proc nor the pod. It forwards Proxy-Authorization, and it
  // leaves nominated headers in responses alone, so the gateway does the same.
  if (nominated !== undefined)
    for (const n of nominated) {
      if (n === REQUEST_ID_HEADER) hasRequestId = false;
      removeHeader(out, n);
    }
  out.push("x-forwarded-proto", "http");
  if (!hasRequestId) out.push(REQUEST_ID_HEADER, randomUUID());
  return { list: out, headerOnly: !chunked && (contentLength === undefined || contentLength.trim() === "0") };
}

/** `:status` first, then the upstream's headers minus hop-by-hop ones. */
export function responseHeaderList(status: number, headers: Readonly<Record<string, string | string[] | undefined>>) {
  const out: HeaderList = [":status", String(status)];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    if (typeof value === "string") out.push(name, value);
    else for (const v of value) out.push(name, v);
  }
  return out;
}

export function getHeader(list: HeaderList, name: string): string | undefined {
  for (let i = 0; i < list.length; i += 2) if (list[i] === name) return list[i + 1];
  return undefined;
}

export function removeHeader(list: HeaderList, name: string): void {
  let w = 0;
  for (let r = 0; r < list.length; r += 2) {
    if (list[r] === name) continue;
    if (w !== r) {
      list[w] = list[r]!;
      list[w + 1] = list[r + 1]!;
    }
    w += 2;
  }
  list.length = w;
}

export function setHeader(list: HeaderList, name: string, value: string): void {
  let found = false;
  let w = 0;
  for (let r = 0; r < list.length; r += 2) {
    if (list[r] === name) {
      // Overwrite leaves exactly one value, at the position of the first.
      if (found) continue;
      found = true;
      list[w] = name;
      list[w + 1] = value;
      w += 2;
      continue;
    }
    if (w !== r) {
      list[w] = list[r]!;
      list[w + 1] = list[r + 1]!;
    }
    w += 2;
  }
  list.length = w;
  if (!found) list.push(name, value);
}

/** Headers for the upstream request: pseudo-headers dropped, `:authority` becomes `host` (as Envoy's codec does). */
export function upstreamRequestHeaders(list: HeaderList): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    if (name.charCodeAt(0) === 58 /* ":" */) {
      if (name === ":authority" && list[i + 1] !== "") out.push("host", list[i + 1]!);
      continue;
    }
    out.push(name, list[i + 1]!);
  }
  return out;
}

/** Headers for the client response: everything but pseudo-headers. */
export function clientResponseHeaders(list: HeaderList): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    if (name.charCodeAt(0) !== 58) out.push(name, list[i + 1]!);
  }
  return out;
}

// ---- ext_proc HeaderMap / HeaderMutation: the shapes src/extproc/messages.ts declares for both ends ----

export type {
  HeaderMap as HeaderMapMsg,
  HeaderMutation as HeaderMutationMsg,
  HeaderValue as HeaderValueMsg,
  HeaderValueOption as HeaderValueOptionMsg,
} from "../extproc/messages.js";

import type {
  HeaderMap as HeaderMapMsg,
  HeaderMutation as HeaderMutationMsg,
  HeaderValue as HeaderValueMsg,
} from "../extproc/messages.js";

/** Envoy sends values only in `raw_value` (bytes); latin1 keeps every byte as one char, as node's http does. */
export function toHeaderMap(list: HeaderList): HeaderMapMsg {
  const headers = new Array<HeaderValueMsg>(list.length >> 1);
  for (let i = 0; i < list.length; i += 2) {
    headers[i >> 1] = { key: list[i]!, raw_value: Buffer.from(list[i + 1]!, "latin1") };
  }
  return { headers };
}

export function fromHeaderMap(map: HeaderMapMsg | undefined): HeaderList {
  const out: HeaderList = [];
  for (const h of map?.headers ?? []) {
    if (!h.key) continue;
    out.push(h.key.toLowerCase(), h.raw_value !== undefined ? h.raw_value.toString("latin1") : (h.value ?? ""));
  }
  return out;
}

const TOKEN = /^:?[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const BAD_VALUE = /[\r\n\0]/;

export type MutationTarget = "request" | "response" | "trailers";

/**
 * Envoy's default `mutation_rules` silently ignore changes to `:method`, `:authority`, `:scheme`, `host` and
 * `x-envoy-*`; `:path` (request) and `:status` (response) may change; other pseudo-headers are ignored.
 */
function mutable(name: string, target: MutationTarget): boolean {
  if (name.startsWith("x-envoy-")) return false;
  if (name === "host") return false;
  if (name.charCodeAt(0) === 58)
    return (target === "request" && name === ":path") || (target === "response" && name === ":status");
  return true;
}

/**
 * Applies an ext_proc HeaderMutation in place. Returns an error message for a mutation Envoy would reject
 * (→ local 500), otherwise undefined.
 *
 * Append semantics: the deprecated `append` BoolValue wins when present; otherwise `append_action`, except that
 * its zero value (APPEND_IF_EXISTS_OR_ADD) is read as overwrite because ext_proc treats an unset append as
 * overwrite — which is what every EPP (GIE included) relies on when it leaves both unset.
 */
export function applyHeaderMutation(
  list: HeaderList,
  mutation: HeaderMutationMsg | undefined,
  target: MutationTarget,
): string | undefined {
  if (mutation === undefined) return undefined;
  for (const raw of mutation.remove_headers ?? []) {
    const name = raw.toLowerCase();
    if (name.charCodeAt(0) === 58 || !mutable(name, target)) continue;
    removeHeader(list, name);
  }
  for (const option of mutation.set_headers ?? []) {
    const h = option.header;
    if (h?.key === undefined || h.key === "") return "set_headers entry without a key";
    const name = h.key.toLowerCase();
    if (!TOKEN.test(name)) return `invalid header name "${h.key}"`;
    if (h.raw_value !== undefined && h.raw_value.length > 0 && h.value !== undefined && h.value !== "")
      return `header "${name}" sets both value and raw_value`;
    const value =
      h.raw_value !== undefined && h.raw_value.length > 0 ? h.raw_value.toString("latin1") : (h.value ?? "");
    if (BAD_VALUE.test(value)) return `invalid value for header "${name}"`;
    if (!mutable(name, target)) continue;
    if (value === "" && option.keep_empty_value !== true) continue;
    if (name === ":status" && !/^[1-5]\d\d$/.test(value)) return `invalid :status "${value}"`;
    let action: number;
    if (option.append?.value !== undefined) action = option.append.value ? 0 : 2;
    else action = option.append_action === undefined || option.append_action === 0 ? 2 : option.append_action;
    switch (action) {
      case 0: // APPEND_IF_EXISTS_OR_ADD
        list.push(name, value);
        break;
      case 1: // ADD_IF_ABSENT
        if (getHeader(list, name) === undefined) list.push(name, value);
        break;
      case 3: // OVERWRITE_IF_EXISTS
        if (getHeader(list, name) !== undefined) setHeader(list, name, value);
        break;
      default: // OVERWRITE_IF_EXISTS_OR_ADD
        setHeader(list, name, value);
    }
  }
  return undefined;
}
