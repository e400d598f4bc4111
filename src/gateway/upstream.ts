/**
 * The upstream side: one undici Agent (a keep-alive Pool per origin) and Envoy's retry over the destination list —
 * a connection failure on one endpoint moves to the next, replaying the request body from its BodyFeed.
 */
import type { Readable } from "node:stream";
import { Agent, type Dispatcher } from "undici";
import { isConnectFailure } from "../common/connect.js";
import type { BodyFeed } from "./body-feed.js";
import { GatewayError } from "./errors.js";
import type { HeaderList } from "./headers.js";

export interface UpstreamOptions {
  /** Response-headers timeout and body idle timeout, ms. */
  readonly timeoutMs: number;
  /** Connections per origin. */
  readonly connections: number;
}

export interface UpstreamRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: HeaderList;
  /** Undefined for header-only requests. */
  readonly body: BodyFeed | undefined;
  readonly signal: AbortSignal;
}

export interface UpstreamHooks {
  /** An attempt to `endpoint` begins (in-flight accounting). */
  attempt(endpoint: string): void;
  /** The attempt to `endpoint` failed to connect; the next one will be tried. */
  failed(endpoint: string, retrying: boolean): void;
}

export interface UpstreamResult {
  readonly endpoint: string;
  readonly response: Dispatcher.ResponseData;
}

export class Upstream {
  readonly #agent: Agent;

  constructor(options: UpstreamOptions) {
    this.#agent = new Agent({
      connections: options.connections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  /**
   * Sends the request to the first endpoint that accepts a connection. Throws GatewayError when none does or the
   * exchange fails before response headers; rethrows the abort reason when `signal` fires.
   */
  async send(endpoints: readonly string[], req: UpstreamRequest, hooks: UpstreamHooks): Promise<UpstreamResult> {
    let lastError: unknown;
    for (let i = 0; i < endpoints.length; i++) {
      const endpoint = endpoints[i]!;
      if (i > 0 && req.body !== undefined && !req.body.canReplay) break;
      hooks.attempt(endpoint);
      try {
        const response = await this.#agent.request({
          origin: `http://${endpoint}`,
          path: req.path,
          method: req.method as Dispatcher.HttpMethod,
          headers: req.headers,
          // undici documents AsyncIterable bodies (Dispatcher.md) but its .d.ts omits them.
          body: req.body?.open() as Readable | undefined,
          signal: req.signal,
        });
        return { endpoint, response };
      } catch (err) {
        if (req.signal.aborted) {
          hooks.failed(endpoint, false);
          throw err;
        }
        const retrying = isConnectFailure(err) && i + 1 < endpoints.length;
        hooks.failed(endpoint, retrying);
        lastError = err;
        if (!retrying) break;
      }
    }
    throw classify(lastError, endpoints);
  }

  async close(): Promise<void> {
    await this.#agent.destroy();
  }
}

function classify(err: unknown, endpoints: readonly string[]): GatewayError {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (isConnectFailure(err))
    return new GatewayError(
      "GW_UPSTREAM_CONNECT",
      `upstream connect error: ${endpoints.join(",")}: ${String(code)} ${message}`,
      { cause: err },
    );
  if (code === "UND_ERR_HEADERS_TIMEOUT")
    return new GatewayError("GW_UPSTREAM_TIMEOUT", "upstream request timeout", { cause: err });
  return new GatewayError("GW_UPSTREAM_ERROR", `upstream error: ${message}`, { cause: err });
}
