/**
 * The director: what happens to one request between the ext_proc state machine and the model server, in GIE's
 * order (scheduling.md §1): parse → target model (rewrite header, InferenceModel split, InferenceModelRewrite) →
 * priority (objective header) → admission → candidates (subset hint) → schedule → forward; then response
 * accounting. It sees only the protocol-free seam in src/extproc/handler.ts.
 */
import { randomInt } from "node:crypto";
import type { Admission, AdmissionTicket } from "../admission/types.js";
import {
  DEFAULT_FAIRNESS_ID,
  FAIRNESS_ID_HEADER,
  MODEL_NAME_REWRITE_HEADER,
  OBJECTIVE_HEADER,
} from "../common/constants.js";
import { SwitchyardError, toSwitchyardError } from "../common/errors.js";
import { type Datastore, pickWeighted } from "../datastore/datastore.js";
import type { Criticality, Endpoint } from "../datastore/types.js";
import type {
  IncomingRequest,
  LifecycleFactory,
  RequestLifecycle,
  ResponseHeadersInfo,
  ResponseHeadersResult,
  RoutingDecision,
} from "../extproc/handler.js";
import type { DecisionLog } from "../observability/decisions.js";
import type { Logger } from "../observability/logger.js";
import type { EppMetrics } from "../observability/metrics.js";
import type { PreRequest, Scheduler, SchedulingRequest } from "../scheduling/types.js";
import { type ParsedRequest, parseRequest, rewriteModel } from "./openai.js";
import { ResponseAccountant } from "./usage.js";

export interface DirectorOptions {
  readonly datastore: Datastore;
  readonly scheduler: Scheduler;
  readonly preRequest?: readonly PreRequest[];
  readonly admission: Admission;
  readonly metrics: EppMetrics;
  readonly logger: Logger;
  readonly decisions?: DecisionLog;
  /** GIE v1 serves unknown models as Standard; with this set they get 404. Default false. */
  readonly rejectUnknownModels?: boolean;
  /** `--disable-endpoint-subset-filter`. Default false. */
  readonly disableSubsetFilter?: boolean;
  /** Header naming the tenant for budgets and fairness. Default x-gateway-inference-fairness-id. */
  readonly tenantHeader?: string;
  /** [0,1) random source; injectable for tests. */
  readonly random?: () => number;
}

const PRIORITY_OF: Readonly<Record<Criticality, number>> = { Critical: 1, Standard: 0, Sheddable: -1 };

/** Path source order, GIE openai parser: `:path` → x-original-path → x-forwarded-path → /v1/completions. */
function requestPath(headers: ReadonlyMap<string, string>): string {
  return headers.get(":path") ?? headers.get("x-original-path") ?? headers.get("x-forwarded-path") ?? "/v1/completions";
}

/** IP part of `ip:port` / `[v6]:port` / bare ip; the subset hint matches by IP only (ext-proc-protocol.md §5.8). */
function hostOf(value: string): string {
  const v = value.trim();
  if (v.startsWith("[")) return v.slice(1, v.indexOf("]"));
  const colon = v.lastIndexOf(":");
  return colon > 0 && v.indexOf(":") === colon ? v.slice(0, colon) : v;
}

export class Director implements LifecycleFactory {
  readonly #o: DirectorOptions;
  readonly #random: () => number;
  readonly #tenantHeader: string;

  constructor(options: DirectorOptions) {
    this.#o = options;
    this.#random = options.random ?? Math.random;
    this.#tenantHeader = (options.tenantHeader ?? FAIRNESS_ID_HEADER).toLowerCase();
  }

  begin(): RequestLifecycle {
    return new RequestContext(this.#o, this.#random, this.#tenantHeader);
  }
}

class RequestContext implements RequestLifecycle {
  readonly #o: DirectorOptions;
  readonly #random: () => number;
  readonly #tenantHeader: string;
  readonly #received = performance.now();
  #requestId = "";
  #model = "";
  #targetModel = "";
  #criticality: Criticality = "Standard";
  #parsed: ParsedRequest | undefined;
  #endpoint: Endpoint | undefined;
  #inflightTokens = 0;
  #ticket: AdmissionTicket | undefined;
  #decidedAt = 0;
  #accountant: ResponseAccountant | undefined;
  #status = 0;
  #errorCounted = false;
  #routed = false;
  #finished = false;

  constructor(options: DirectorOptions, random: () => number, tenantHeader: string) {
    this.#o = options;
    this.#random = random;
    this.#tenantHeader = tenantHeader;
  }

  async route(request: IncomingRequest, signal: AbortSignal): Promise<RoutingDecision> {
    this.#requestId = request.requestId;
    try {
      return request.headerOnly ? this.#routeHeaderOnly() : await this.#routeWithBody(request, signal);
    } catch (err) {
      const e = toSwitchyardError(err);
      this.#countError(e.gieCode);
      this.#o.decisions?.push({
        time: new Date().toISOString(),
        requestId: this.#requestId,
        model: this.#model,
        targetModel: this.#targetModel,
        criticality: this.#criticality,
        priority: PRIORITY_OF[this.#criticality],
        outcome: "rejected",
        error: { code: e.code, status: e.status, message: e.message },
      });
      const log = this.#o.logger;
      if (log.isLevelEnabled("debug"))
        log.debug(
          {
            requestId: this.#requestId,
            model: this.#model,
            targetModel: this.#targetModel,
            code: e.code,
            status: e.status,
          },
          `request rejected: ${e.message}`,
        );
      throw e;
    }
  }

  /** GIE §5.7: header-only requests (GET) go to a random endpoint without scheduling. */
  #routeHeaderOnly(): RoutingDecision {
    const endpoints = this.#o.datastore.endpoints();
    if (endpoints.length === 0) throw new SwitchyardError("SY_NO_PODS", "no pods available in datastore");
    const chosen = endpoints[randomInt(endpoints.length)]!;
    this.#routed = true;
    chosen.routedRequests++;
    return { endpoints: [chosen.key], body: Buffer.alloc(0) };
  }

  async #routeWithBody(request: IncomingRequest, signal: AbortSignal): Promise<RoutingDecision> {
    const o = this.#o;
    const headers = request.headers;
    const parsed = parseRequest(request.body, requestPath(headers));
    this.#parsed = parsed;
    this.#model = parsed.model;
    o.metrics.requestSizes.observe({ model_name: parsed.model, target_model_name: parsed.model }, request.body.length);

    // Target model: rewrite header first, then the InferenceModel's weighted split, then InferenceModelRewrite.
    let target = headers.get(MODEL_NAME_REWRITE_HEADER) || parsed.model;
    const model = o.datastore.model(parsed.model);
    if (model) {
      this.#criticality = model.criticality;
      target = pickWeighted(model.targetModels, this.#random)?.name ?? target;
    }
    const rewrite = o.datastore.resolveRewrite(target);
    if (rewrite) {
      const picked = pickWeighted(rewrite.targets, this.#random)?.modelRewrite ?? target;
      o.metrics.modelRewriteDecisions.inc({
        model_rewrite_name: rewrite.rewriteName,
        model_name: parsed.model,
        target_model: picked,
      });
      target = picked;
    }
    if (!model && !rewrite && o.rejectUnknownModels && target === parsed.model)
      throw new SwitchyardError("SY_UNKNOWN_MODEL", `model "${parsed.model}" is not served by this pool`);
    this.#targetModel = target;

    // Priority: the InferenceObjective named by the header wins; otherwise the model's criticality.
    let priority = PRIORITY_OF[this.#criticality];
    const objectiveName = headers.get(OBJECTIVE_HEADER);
    if (objectiveName) {
      const objective = o.datastore.objective(objectiveName);
      if (objective) {
        priority = objective.priority;
        if (priority < 0) this.#criticality = "Sheddable";
      }
    }

    const hint = o.disableSubsetFilter ? undefined : request.subsetHint;
    const candidates = (): readonly Endpoint[] => this.#candidates(hint);
    if (candidates().length === 0)
      throw new SwitchyardError("SY_NO_CANDIDATES", "failed to find endpoint candidates for serving the request");

    const inputTokens = parsed.inputTokens;
    this.#ticket = await o.admission.admit(
      {
        requestId: this.#requestId,
        model: parsed.model,
        targetModel: target,
        criticality: this.#criticality,
        priority,
        tenant: headers.get(this.#tenantHeader) || DEFAULT_FAIRNESS_ID,
        inputTokens,
        maxTokens: parsed.maxTokens,
        bytes: request.body.length,
      },
      candidates,
      signal,
    );
    // Late binding: candidates are re-read after admission, which may have queued the request.
    const now = candidates();
    if (now.length === 0)
      throw new SwitchyardError("SY_NO_CANDIDATES", "failed to find endpoint candidates for serving the request");

    const schedulingRequest: SchedulingRequest = {
      requestId: this.#requestId,
      model: parsed.model,
      targetModel: target,
      criticality: this.#criticality,
      priority,
      prefixText: parsed.prefixText,
      inputTokens,
      maxTokens: parsed.maxTokens,
      headers,
    };
    const t0 = performance.now();
    let result: ReturnType<Scheduler["schedule"]>;
    try {
      result = o.scheduler.schedule(schedulingRequest, now);
    } catch (err) {
      o.metrics.schedulerAttempts.inc({
        status: "failure",
        target_model_name: target,
        pod_name: "",
        namespace: "",
        port: "",
      });
      throw err;
    }
    const elapsed = performance.now() - t0;
    o.metrics.schedulerE2e.observe(elapsed / 1000);
    for (const p of o.preRequest ?? []) p.preRequest(schedulingRequest, result.endpoints);

    const primary = result.endpoints[0]!;
    o.metrics.schedulerAttempts.inc({
      status: "success",
      target_model_name: target,
      pod_name: primary.podName,
      namespace: primary.namespace,
      port: String(primary.port),
    });
    o.metrics.requestTotal.inc({ model_name: parsed.model, target_model_name: target, priority: String(priority) });
    o.metrics.runningRequests.inc({ model_name: parsed.model });
    this.#endpoint = primary;
    this.#inflightTokens = inputTokens + (parsed.maxTokens ?? Math.ceil(inputTokens * 1.5));
    primary.inflightRequests++;
    primary.routedRequests++;
    primary.inflightTokens += this.#inflightTokens;
    this.#routed = true;
    this.#decidedAt = performance.now();

    const keys = result.endpoints.map((e) => e.key);
    o.decisions?.push({
      time: new Date().toISOString(),
      requestId: this.#requestId,
      model: parsed.model,
      targetModel: target,
      criticality: this.#criticality,
      priority,
      outcome: "routed",
      endpoints: keys,
      scores: result.breakdown,
      filtered: result.rejected,
      schedulingMicros: Math.round(elapsed * 1000),
    });
    const log = o.logger;
    if (log.isLevelEnabled("debug"))
      log.debug(
        {
          requestId: this.#requestId,
          model: parsed.model,
          targetModel: target,
          criticality: this.#criticality,
          priority,
          objective: objectiveName,
          candidates: result.breakdown,
          filtered: result.rejected,
          chosen: keys,
        },
        "request routed",
      );

    const body = target === parsed.model ? request.body : rewriteModel(request.body, target, parsed.modelRange);
    return {
      endpoints: keys,
      body,
      ...(this.#ticket.headers ? { setHeaders: this.#ticket.headers } : {}),
    };
  }

  #candidates(hint: readonly string[] | undefined): readonly Endpoint[] {
    const all = this.#o.datastore.endpoints();
    if (hint === undefined) return all;
    if (hint.length === 0) return [];
    const hosts = new Set(hint.map(hostOf));
    return all.filter((e) => hosts.has(e.address));
  }

  responseHeaders(info: ResponseHeadersInfo): ResponseHeadersResult {
    this.#status = info.status;
    const parsed = this.#parsed;
    const contentType = info.headers.get("content-type") ?? "";
    if (parsed) {
      this.#accountant = new ResponseAccountant({
        streaming: contentType.includes("text/event-stream") || parsed.stream,
        api: parsed.api,
        clientModel: parsed.model,
        targetModel: this.#targetModel,
      });
    }
    if (info.status !== 0 && info.status !== 200) this.#countError("ModelServerError");
    return {};
  }

  responseBody(chunk: Buffer, endOfStream: boolean): Buffer {
    const accountant = this.#accountant;
    if (!accountant) return chunk;
    const wasStarted = accountant.firstContentAt !== undefined;
    const out = accountant.feed(chunk, endOfStream);
    if (!wasStarted && accountant.firstContentAt !== undefined && this.#decidedAt > 0)
      this.#o.metrics.ttft.observe(
        { model_name: this.#model, target_model_name: this.#targetModel },
        (accountant.firstContentAt - this.#decidedAt) / 1000,
      );
    if (endOfStream) this.#recordCompletion(accountant);
    return out;
  }

  #recordCompletion(accountant: ResponseAccountant): void {
    const m = this.#o.metrics;
    const labels = { model_name: this.#model, target_model_name: this.#targetModel };
    const seconds = (performance.now() - this.#received) / 1000;
    m.requestDuration.observe(labels, seconds);
    m.responseSizes.observe(labels, accountant.bytes);
    const usage = accountant.usage();
    if (usage) {
      m.inputTokens.observe(labels, usage.promptTokens);
      m.outputTokens.observe(labels, usage.completionTokens);
      m.promptCachedTokens.observe(labels, usage.cachedTokens);
      // NTPOT as GIE: (response complete − request received) / output tokens, only when output tokens > 0.
      if (usage.completionTokens > 0) m.ntpot.observe(labels, seconds / usage.completionTokens);
    }
    this.#ticket?.release(usage?.totalTokens);
    this.#ticket = undefined;
  }

  #countError(code: string): void {
    if (this.#errorCounted) return;
    this.#errorCounted = true;
    this.#o.metrics.requestErrorTotal.inc({
      model_name: this.#model,
      target_model_name: this.#targetModel || this.#model,
      error_code: code,
    });
  }

  done(outcome: "completed" | "cancelled" | "error"): void {
    if (this.#finished) return;
    this.#finished = true;
    const e = this.#endpoint;
    if (e) {
      e.inflightRequests--;
      e.inflightTokens -= this.#inflightTokens;
      this.#o.metrics.runningRequests.dec({ model_name: this.#model });
    }
    if (this.#ticket) {
      this.#ticket.release(undefined);
      this.#ticket = undefined;
    }
    if (this.#routed && outcome !== "completed" && this.#status === 0) this.#countError("Cancelled");
  }
}
