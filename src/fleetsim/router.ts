/**
 * The routing side of the fleet simulation: either a baseline balancer (the dev gateway's own round-robin and
 * least-request, src/gateway/endpoints.ts) or the real EPP request path — Director → AdmissionController →
 * scheduler and plugins → Datastore endpoints — driven through the RequestLifecycle seam the ext_proc stream uses
 * (src/request/lifecycle.ts), with no gRPC in between (docs/design/benchmarks.md §5.3).
 *
 * Own-load accounting: every routed request reports dispatch (route), response start, first token and completion
 * to a `RequestEvents`. For the EPP these are the lifecycle calls, so whatever the director counts on them
 * (today endpoint.inflightRequests / inflightTokens; later src/datastore/load.ts) is exercised unchanged.
 */

import { parseAdmissionConfig } from "../admission/config.js";
import { AdmissionController } from "../admission/controller.js";
import { LazyCancellation } from "../common/cancellation.js";
import { ConfigError, SwitchyardError, toSwitchyardError } from "../common/errors.js";
import { Datastore } from "../datastore/datastore.js";
import type { Endpoint, ResourceSet } from "../datastore/types.js";
import { InFlight, LeastRequestBalancer, RoundRobinBalancer } from "../gateway/endpoints.js";
import { silentLogger } from "../observability/logger.js";
import { EppMetrics } from "../observability/metrics.js";
import { Director } from "../request/director.js";
import type { RequestLifecycle } from "../request/lifecycle.js";
import {
  createPluginHandle,
  createRandom,
  createScheduler,
  defaultPickerConfig,
  loadPickerConfig,
  type PickerConfig,
} from "../scheduling/index.js";
import { parseManifestText } from "../sources/file-parse.js";
import { addToResourceSet, emptyResourceSet } from "../sources/normalize.js";
import type { EventQueue } from "./clock.js";

/** Usage a completed response reports (the usage chunk of a streamed chat completion). */
export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly cachedTokens: number;
}

/** What the router learns about one routed request after the decision. */
export interface RequestEvents {
  /** The pod answered with `status` (200 = the stream started; anything else ends the request). */
  responseStarted(status: number): void;
  firstToken(): void;
  completed(usage: Usage): void;
}

export interface RouteInput {
  readonly requestId: string;
  readonly body: Buffer;
  readonly headers: ReadonlyMap<string, string>;
}

export type RouteResult =
  | { readonly ok: true; readonly endpoint: string; readonly events: RequestEvents }
  | { readonly ok: false; readonly status: number; readonly code: string };

export interface Router {
  readonly name: string;
  route(input: RouteInput): RouteResult;
  /** Per-endpoint metrics the EPP reads (baselines read none). */
  readonly endpoints: readonly Endpoint[] | undefined;
}

/** Balancer baselines, as `switchyard gateway --lb round-robin|least-request` (no EPP, no metrics). */
export class BalancerRouter implements Router {
  readonly name: string;
  readonly endpoints = undefined;
  readonly #keys: readonly string[];
  readonly #inFlight = new InFlight();
  readonly #balancer: RoundRobinBalancer | LeastRequestBalancer;

  constructor(
    name: string,
    keys: readonly string[],
    kind: "round-robin" | "least-request",
    choices: number,
    seed: number,
  ) {
    this.name = name;
    this.#keys = keys;
    this.#balancer =
      kind === "round-robin"
        ? new RoundRobinBalancer()
        : new LeastRequestBalancer(this.#inFlight, choices, createRandom(seed));
  }

  route(_input: RouteInput): RouteResult {
    const endpoint = this.#balancer.order(this.#keys)[0]!;
    const inFlight = this.#inFlight;
    inFlight.acquire(endpoint);
    let open = true;
    const release = () => {
      if (open) inFlight.release(endpoint);
      open = false;
    };
    return {
      ok: true,
      endpoint,
      events: {
        responseStarted: (status) => {
          if (status !== 200) release();
        },
        firstToken: () => {},
        completed: release,
      },
    };
  }
}

const SSE_HEADERS: ReadonlyMap<string, string> = new Map([["content-type", "text/event-stream; charset=utf-8"]]);
const ERROR_HEADERS: ReadonlyMap<string, string> = new Map([["content-type", "application/json"]]);
const FIRST_CHUNK = Buffer.from(
  'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"x"}}]}\n\n',
);

function usageChunk(u: Usage): Buffer {
  const total = u.promptTokens + u.completionTokens;
  return Buffer.from(
    `data: {"object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":${u.promptTokens},"completion_tokens":${u.completionTokens},"total_tokens":${total},"prompt_tokens_details":{"cached_tokens":${u.cachedTokens}}}}\n\ndata: [DONE]\n\n`,
  );
}

export interface EppRouterOptions {
  readonly name: string;
  readonly q: EventQueue;
  /** The pool as `--resources` YAML (src/local/stack.ts fleetResources). */
  readonly resourcesYaml: string;
  readonly poolName: string;
  readonly poolNamespace: string;
  /** EndpointPickerConfig: a file, inline text, or neither for the built-in default. */
  readonly configFile?: string | undefined;
  readonly configText?: string | undefined;
  readonly seed: number;
}

/** Loads an EndpointPickerConfig for a mode; flow control is refused (its queue runs on real timers). */
export function pickerConfigFor(o: { configFile?: string | undefined; configText?: string | undefined }): PickerConfig {
  if (o.configText !== undefined) return loadPickerConfig({ text: o.configText });
  if (o.configFile !== undefined) return loadPickerConfig({ file: o.configFile });
  return defaultPickerConfig();
}

/** The EPP's request path in-process: Director + admission + scheduler over a Datastore fed by the scrape model. */
export class EppRouter implements Router {
  readonly name: string;
  readonly datastore: Datastore;
  readonly director: Director;

  constructor(o: EppRouterOptions) {
    this.name = o.name;
    const config = pickerConfigFor(o);
    const settings = parseAdmissionConfig(config);
    if (settings.flowControl.enabled)
      throw new ConfigError(
        "flow control is not modelled in virtual time (its dispatch queue runs on real timers); remove the flowControl section or the feature gate",
        config.file,
        "flowControl",
      );
    this.datastore = new Datastore({ poolName: o.poolName, poolNamespace: o.poolNamespace });
    this.datastore.apply(resourceSet(o.resourcesYaml, o.poolNamespace));
    const ds = this.datastore;
    const handle = createPluginHandle({ now: () => o.q.now, seed: o.seed, endpoints: () => ds.endpoints() });
    const scheduler = createScheduler(config, handle);
    const admission = new AdmissionController({
      settings,
      detector: scheduler.pluginSet.saturationDetector,
      now: () => o.q.now,
    });
    this.director = new Director({
      pool: ds,
      scheduler,
      now: () => o.q.now,
      admission,
      metrics: new EppMetrics({ processMetrics: false, modelLabelIdleMs: Number.POSITIVE_INFINITY }),
      logger: silentLogger,
      random: createRandom(o.seed ^ 0x5eed),
    });
  }

  get endpoints(): readonly Endpoint[] {
    return this.datastore.endpoints();
  }

  route(input: RouteInput): RouteResult {
    const lc = this.director.begin();
    let decision: ReturnType<RequestLifecycle["route"]>;
    try {
      decision = lc.route(
        {
          requestId: input.requestId,
          headers: input.headers,
          method: "POST",
          path: "/v1/chat/completions",
          body: input.body,
          headerOnly: false,
          subsetHint: undefined,
        },
        new LazyCancellation(),
      );
    } catch (err) {
      lc.done("error");
      const e = toSwitchyardError(err);
      return { ok: false, status: e.status, code: e.code };
    }
    if (decision instanceof Promise) {
      // Only the flow-control queue returns a promise, and the constructor refuses flow control.
      lc.done("error");
      throw new SwitchyardError("SY_INTERNAL", "admission queued a request in virtual time");
    }
    return {
      ok: true,
      endpoint: decision.endpoints[0]!,
      events: {
        responseStarted(status) {
          lc.responseHeaders({
            status,
            headers: status === 200 ? SSE_HEADERS : ERROR_HEADERS,
            servedEndpoint: undefined,
          });
          if (status !== 200) {
            lc.responseBody(Buffer.from('{"error":{}}'), true);
            lc.done("completed");
          }
        },
        firstToken() {
          lc.responseBody(FIRST_CHUNK, false);
        },
        completed(usage) {
          lc.responseBody(usageChunk(usage), true);
          lc.done("completed");
        },
      },
    };
  }
}

/** `--resources` text → the ResourceSet the file source would apply (src/sources/file.ts). */
export function resourceSet(yaml: string, namespace: string): ResourceSet {
  const parsed = parseManifestText("(fleetsim)", yaml, namespace);
  if (parsed.wholeFile !== undefined) throw new Error(`fleetsim resources: ${parsed.wholeFile}`);
  const set = emptyResourceSet();
  for (const entry of parsed.entries) {
    if (!("ok" in entry)) throw new Error(`fleetsim resources: ${entry.invalid.message}`);
    const obj = entry.ok;
    addToResourceSet(set, obj);
  }
  return set;
}
