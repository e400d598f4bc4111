/**
 * A live view of a running EPP: polls /debug/endpoints and redraws the endpoint table. Used by `switchyard top`
 * and reusable by the local stack. On a TTY the table is redrawn in place with ANSI cursor moves; otherwise each
 * poll appends a plain table, so logs and pipes stay readable. An unreachable EPP never stops the loop: the error
 * is shown and the next poll retries.
 */
import type { DebugSnapshot } from "./debug.js";
import { renderEndpointTable } from "./table.js";

export const DEBUG_ENDPOINTS_PATH = "/debug/endpoints";

/** Thrown for every way fetching a snapshot can fail; `message` is meant for the user as is. */
export class SnapshotError extends Error {
  override readonly name = "SnapshotError";
}

/**
 * Accepts `http://host:port`, `host:port` or a full `…/debug/endpoints` URL and returns the snapshot URL.
 * Throws SnapshotError for anything that is not http(s).
 */
export function snapshotUrl(input: string): string {
  const text = input.trim();
  if (text === "") throw new SnapshotError("empty URL (expected e.g. http://127.0.0.1:9090)");
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  } catch {
    throw new SnapshotError(`invalid URL "${input}" (expected e.g. http://127.0.0.1:9090)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new SnapshotError(`unsupported scheme "${url.protocol}" in "${input}" (use http or https)`);
  if (!url.pathname.endsWith(DEBUG_ENDPOINTS_PATH))
    url.pathname = `${url.pathname.replace(/\/+$/, "")}${DEBUG_ENDPOINTS_PATH}`;
  url.search = "";
  url.hash = "";
  return url.toString();
}

function causeOf(err: unknown): string {
  // fetch() reports "fetch failed" and puts the socket error (ECONNREFUSED, ENOTFOUND…) in `cause`.
  const cause = (err as { cause?: unknown })?.cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return typeof code === "string" && !cause.message.includes(code) ? `${code} ${cause.message}` : cause.message;
  }
  return err instanceof Error ? err.message : String(err);
}

function isSnapshot(v: unknown): v is DebugSnapshot {
  if (typeof v !== "object" || v === null) return false;
  const o = v as Record<string, unknown>;
  return (
    o.version === 1 && Array.isArray(o.endpoints) && Array.isArray(o.decisions) && typeof o.saturation === "number"
  );
}

/** GETs one snapshot. Rejects with SnapshotError naming the URL and what went wrong. */
export interface FetchSnapshotOptions {
  readonly timeoutMs?: number;
  /**
   * The bearer token for an EPP that checks scrapers (`--metrics-endpoint-auth`, docs/security.md), read before each
   * request so a rotated service-account token file is picked up. May throw SnapshotError.
   */
  readonly token?: () => string | undefined;
}

export async function fetchSnapshot(url: string, options: FetchSnapshotOptions = {}): Promise<DebugSnapshot> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const token = options.token?.();
  const headers: Record<string, string> = { accept: "application/json" };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers });
  } catch (err) {
    if ((err as Error)?.name === "TimeoutError")
      throw new SnapshotError(`${url}: no answer within ${timeoutMs} ms`, { cause: err });
    throw new SnapshotError(`cannot reach ${url}: ${causeOf(err)}`, { cause: err });
  }
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    throw new SnapshotError(`${url}: response cut short: ${causeOf(err)}`, { cause: err });
  }
  if (res.status === 404)
    throw new SnapshotError(
      `${url}: HTTP 404 (is this the EPP's metrics port, default 9090, and was the EPP started with --enable-debug-endpoints?)`,
    );
  if (res.status === 401 || res.status === 403)
    throw new SnapshotError(
      `${url}: HTTP ${res.status} (the EPP checks scrapers, --metrics-endpoint-auth: ${token === undefined ? "pass a bearer token with --token-file or SWITCHYARD_TOKEN" : "the token was refused or lacks get on this path"}; see docs/security.md)`,
    );
  if (res.status !== 200)
    throw new SnapshotError(`${url}: HTTP ${res.status} (is this the EPP's metrics port, default 9090?)`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new SnapshotError(`${url}: not JSON (is this the EPP's metrics port, default 9090?)`);
  }
  if (!isSnapshot(doc))
    throw new SnapshotError(
      `${url}: not a switchyard /debug/endpoints document (version ${JSON.stringify((doc as { version?: unknown })?.version)}, expected 1)`,
    );
  return doc;
}

/** Where the view writes: process.stdout, or a test double. */
export interface ViewOutput {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

export interface LiveViewOptions {
  /** Anything snapshotUrl() accepts. */
  readonly url: string;
  readonly out: ViewOutput;
  /** Poll period. Default 1000 ms. */
  readonly intervalMs?: number;
  /** Redraw in place. Default: out.isTTY. */
  readonly tty?: boolean;
  /** ANSI colours. Default: same as tty. */
  readonly color?: boolean;
  /** Recent decisions listed under the table. Default 5. */
  readonly decisions?: number;
  /** Per-poll deadline. Default: the interval, at least 1 s, at most 5 s. */
  readonly timeoutMs?: number;
  /** Stops the loop (Ctrl-C). */
  readonly signal?: AbortSignal;
  /** Stop after this many polls (tests). Default: unbounded. */
  readonly maxPolls?: number;
  /** Bearer token for each poll (see FetchSnapshotOptions.token). */
  readonly token?: () => string | undefined;
}

const HIDE_CURSOR = "\u001b[?25l";
const SHOW_CURSOR = "\u001b[?25h";
/** Cursor home + clear to end of screen: redraws without scrolling the terminal. */
const HOME_AND_CLEAR = "\u001b[H\u001b[0J";

/**
 * Polls until `signal` aborts (or `maxPolls` is reached). Resolves with the number of polls that failed, so a
 * caller can turn "never reached the EPP" into an exit code.
 */
export async function runLiveView(options: LiveViewOptions): Promise<{ polls: number; failures: number }> {
  const url = snapshotUrl(options.url);
  const intervalMs = options.intervalMs ?? 1_000;
  if (!Number.isFinite(intervalMs) || intervalMs <= 0)
    throw new SnapshotError(`interval must be a positive duration, got ${String(options.intervalMs)}`);
  const out = options.out;
  const tty = options.tty ?? out.isTTY === true;
  const color = options.color ?? tty;
  const decisions = options.decisions ?? 5;
  const timeoutMs = options.timeoutMs ?? Math.min(5_000, Math.max(1_000, intervalMs));
  const signal = options.signal;
  let polls = 0;
  let failures = 0;
  if (tty) out.write(HIDE_CURSOR);
  try {
    while (!signal?.aborted && (options.maxPolls === undefined || polls < options.maxPolls)) {
      const started = Date.now();
      let text: string;
      try {
        const snap = await fetchSnapshot(url, { timeoutMs, ...(options.token ? { token: options.token } : {}) });
        text = renderEndpointTable(snap, { color, decisions });
      } catch (err) {
        failures++;
        const msg = err instanceof Error ? err.message : String(err);
        text = `${new Date().toISOString()}  ${msg} (retrying every ${intervalMs} ms)\n`;
      }
      polls++;
      if (signal?.aborted) break;
      out.write(tty ? `${HOME_AND_CLEAR}${text}` : `${text}\n`);
      if (options.maxPolls !== undefined && polls >= options.maxPolls) break;
      await sleep(Math.max(0, intervalMs - (Date.now() - started)), signal);
    }
  } finally {
    if (tty) out.write(SHOW_CURSOR);
  }
  return { polls, failures };
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
