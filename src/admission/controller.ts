/**
 * The one Admission the director calls: budgets → (Critical bypass) → shedding or flow control.
 *
 * 1. Budgets (budgets.ts) charge every request, Critical included — a tenant's budget is a budget. Over budget →
 *    SY_RATE_LIMITED 429 with retry-after and OpenAI-style x-ratelimit-* headers. The charge is reconciled with the
 *    real usage at release(), and refunded when the request is rejected later in admission or never reaches a
 *    model server.
 * 2. Critical requests are admitted at once, saturated or not.
 * 3. Without flow control (legacy, GIE's gate off): Sheddable / priority < 0 is shed while the candidates are
 *    saturated (shedding.ts); everything else is admitted.
 *    With flow control: Sheddable is shed while saturated or while others wait; Standard (priority ≥ 0) is admitted
 *    at once only when nothing of equal or higher priority is waiting and the candidates are not saturated —
 *    otherwise it waits in the queue (flow-control.ts) and admit() returns a pending promise.
 *
 * Successful admissions carry no x-ratelimit-* headers: AdmissionTicket.headers become REQUEST headers towards the
 * model server, which has no use for them, and an ext_proc request-path answer cannot add client response headers.
 * Clients see the headers on the 429.
 *
 * Hot path: with neither budgets nor flow control configured, admit() costs what the legacy shed-only admission
 * did (one saturation check for sheddable traffic, a shared no-op ticket, no allocation).
 */
import type { Cancellation } from "../common/cancellation.js";
import type { Endpoint, PoolSpec } from "../datastore/types.js";
import { LabelCapper } from "../observability/label-cap.js";
import type { Logger } from "../observability/logger.js";
import type { EppMetrics } from "../observability/metrics.js";
import type { SaturationDetector } from "../scheduling/index.js";
import { type BudgetCharge, BudgetLedger } from "./budgets.js";
import { type AdmissionConfig, type AdmissionConfigSource, parseAdmissionConfig } from "./config.js";
import { FlowController, type QueuedRequestInfo, type QueueOutcome } from "./flow-control.js";
import { shouldShed } from "./shedding.js";
import type { Admission, AdmissionRequest, AdmissionTicket } from "./types.js";

const NOOP_TICKET: AdmissionTicket = { release() {} };

type Settle = (ticket: Ticket, usedTokens: number | undefined, served: boolean) => void;

class Ticket implements AdmissionTicket {
  readonly model: string;
  readonly charge: BudgetCharge | undefined;
  readonly #settle: Settle;
  #released = false;

  constructor(model: string, charge: BudgetCharge | undefined, settle: Settle) {
    this.model = model;
    this.charge = charge;
    this.#settle = settle;
  }

  release(usedTokens: number | undefined, served = true): void {
    if (this.#released) return;
    this.#released = true;
    this.#settle(this, usedTokens, served);
  }
}

interface FlowLabels {
  fairness_id: string;
  priority: string;
  inference_pool: string;
  model_name: string;
  target_model_name: string;
}

const WAIT_OUTCOME: Readonly<Record<QueueOutcome, string>> = {
  Dispatched: "dispatched",
  RejectedCapacity: "queue_full",
  EvictedTTL: "queue_timeout",
  EvictedContextCancelled: "client_disconnected",
  EvictedOther: "shutdown",
};

export interface AdmissionControllerOptions {
  readonly settings: AdmissionConfig;
  readonly detector: SaturationDetector;
  readonly metrics?: EppMetrics;
  /** Pool name for the flow-control labels. */
  readonly poolName?: () => string;
  /** Monotonic ms (performance.now()), the clock of endpoint metrics; injectable for tests. */
  readonly now?: () => number;
  /** Flow-control re-check period (the metrics refresh interval), clamped to 10–50 ms. */
  readonly dispatchIntervalMs?: number;
}

export class AdmissionController implements Admission {
  readonly settings: AdmissionConfig;
  readonly #detector: SaturationDetector;
  readonly #metrics: EppMetrics | undefined;
  readonly #now: () => number;
  readonly #poolName: () => string;
  readonly #ledger: BudgetLedger | undefined;
  readonly #fc: FlowController | undefined;
  readonly #tenants: LabelCapper;
  readonly #models: Pick<LabelCapper, "value">;
  readonly #flowLabels = new WeakMap<QueuedRequestInfo, FlowLabels>();
  readonly #settle: Settle = (t, used, served) => this.#onRelease(t, used, served);

  constructor(options: AdmissionControllerOptions) {
    const s = options.settings;
    this.settings = s;
    this.#detector = options.detector;
    this.#metrics = options.metrics;
    this.#now = options.now ?? (() => performance.now());
    this.#poolName = options.poolName ?? (() => "");
    const m = options.metrics;
    this.#tenants = new LabelCapper({
      limit: s.admission.tenantLabelLimit,
      ...(m ? { maxLength: m.labelMaxLength, onCapped: m.labelCapped("fairness_id") } : {}),
    });
    // Model names share the EPP-wide bound (length, number, idle expiry) with the request series.
    this.#models = m
      ? { value: (name: string) => m.modelLabel(name) }
      : new LabelCapper({ limit: s.admission.tenantLabelLimit });
    if (s.admission.budgets.length > 0)
      this.#ledger = new BudgetLedger({
        rules: s.admission.budgets,
        defaultMaxTokens: s.admission.defaultMaxTokens,
        maxTrackedKeys: s.admission.maxTrackedKeys,
        now: this.#now,
      });
    if (s.flowControl.enabled)
      this.#fc = new FlowController({
        settings: s.flowControl,
        isSaturated: (cands) => this.#detector.isSaturated(cands, this.#now()),
        now: this.#now,
        ...(options.dispatchIntervalMs === undefined ? {} : { intervalMs: options.dispatchIntervalMs }),
        hooks: {
          onEnqueue: (info) => this.#onEnqueue(info),
          onDequeue: (i, o, ms) => this.#onDequeue(i, o, ms),
          onEnqueueDecided: (i, outcome, ms) =>
            this.#metrics?.flowEnqueueDuration.observe(
              { fairness_id: this.#tenants.value(i.tenant), priority: String(i.priority), outcome },
              ms / 1000,
            ),
          onDispatchCycle: (ms) => this.#metrics?.flowDispatchCycle.observe(ms / 1000),
        },
      });
  }

  /** The budget ledger, when budgets are configured. */
  get budgets(): BudgetLedger | undefined {
    return this.#ledger;
  }

  /** The flow-control queue, when flow control is enabled. */
  get flowControl(): FlowController | undefined {
    return this.#fc;
  }

  admit(
    request: AdmissionRequest,
    candidates: () => readonly Endpoint[],
    cancel: Cancellation,
  ): AdmissionTicket | Promise<AdmissionTicket> {
    let charge: BudgetCharge | undefined;
    const ledger = this.#ledger;
    if (ledger) {
      const result = ledger.charge(request);
      if (!result.ok) {
        this.#metrics?.rateLimited.inc({
          tenant: this.#tenants.value(request.tenant),
          model_name: this.#models.value(request.model),
          limit: result.limit,
        });
        this.#metrics?.shedTotal.inc({ criticality: request.criticality, reason: "rate_limited" });
        throw result.error;
      }
      charge = result.charge;
      if (charge.chargedTokens)
        this.#metrics?.tokensCharged.inc(
          { model_name: this.#models.value(request.model), kind: "estimated" },
          charge.estimate,
        );
    }
    const fc = this.#fc;
    if (request.criticality === "Critical") return this.#ticket(request, charge);
    const sheddable = request.criticality === "Sheddable" || request.priority < 0;
    if (sheddable || !fc) {
      // Shedding contract (shedding.ts); with flow control a non-empty queue also means "busy".
      const saturated =
        sheddable && ((fc !== undefined && fc.length > 0) || this.#detector.isSaturated(candidates(), this.#now()));
      const shed = shouldShed(request, saturated);
      if (shed) {
        charge?.refund();
        this.#metrics?.shedTotal.inc({ criticality: request.criticality, reason: "saturated" });
        throw shed;
      }
      return this.#ticket(request, charge);
    }
    if (!fc.hasWaitingAtOrAbove(request.priority) && !this.#detector.isSaturated(candidates(), this.#now()))
      return this.#ticket(request, charge);
    const info: QueuedRequestInfo = {
      requestId: request.requestId,
      tenant: request.tenant,
      priority: request.priority,
      bytes: request.bytes,
      model: request.model,
      targetModel: request.targetModel,
    };
    return fc.enqueue(info, candidates, cancel.signal).then(
      () => this.#ticket(request, charge),
      (err: unknown) => {
        charge?.refund();
        throw err;
      },
    );
  }

  /** Stops the queue (rejecting what waits) and its timer. */
  close(): void {
    this.#fc?.close();
  }

  #ticket(request: AdmissionRequest, charge: BudgetCharge | undefined): AdmissionTicket {
    if (charge === undefined && this.#fc === undefined) return NOOP_TICKET;
    return new Ticket(request.model, charge, this.#settle);
  }

  #onRelease(ticket: Ticket, usedTokens: number | undefined, served: boolean): void {
    const charge = ticket.charge;
    if (charge) {
      if (!served) charge.refund();
      else {
        const charged = charge.reconcile(usedTokens);
        if (charge.chargedTokens)
          this.#metrics?.tokensCharged.inc(
            { model_name: this.#models.value(ticket.model), kind: "reconciled" },
            charged,
          );
      }
    }
    this.#fc?.notifyCapacity();
  }

  #onEnqueue(info: QueuedRequestInfo): void {
    const m = this.#metrics;
    if (!m) return;
    const labels: FlowLabels = {
      fairness_id: this.#tenants.value(info.tenant),
      priority: String(info.priority),
      inference_pool: this.#poolName(),
      model_name: this.#models.value(info.model),
      target_model_name: this.#models.value(info.targetModel),
    };
    this.#flowLabels.set(info, labels);
    m.flowQueueSize.inc(labels);
    m.flowQueueBytes.inc(labels, info.bytes);
  }

  #onDequeue(info: QueuedRequestInfo, outcome: QueueOutcome, waitedMs: number): void {
    const m = this.#metrics;
    if (!m) return;
    const labels = this.#flowLabels.get(info);
    const seconds = waitedMs / 1000;
    if (labels) {
      this.#flowLabels.delete(info);
      m.flowQueueSize.dec(labels);
      m.flowQueueBytes.dec(labels, info.bytes);
      m.flowQueueDuration.observe({ ...labels, outcome }, seconds);
    } else {
      m.flowQueueDuration.observe(
        {
          fairness_id: this.#tenants.value(info.tenant),
          priority: String(info.priority),
          inference_pool: this.#poolName(),
          model_name: this.#models.value(info.model),
          target_model_name: this.#models.value(info.targetModel),
          outcome,
        },
        seconds,
      );
    }
    m.queueWait.observe({ priority: String(info.priority), outcome: WAIT_OUTCOME[outcome] }, seconds);
    if (outcome !== "Dispatched")
      // Only Standard traffic queues: Critical bypasses the queue and Sheddable is shed instead.
      m.shedTotal.inc({
        criticality: "Standard",
        reason: WAIT_OUTCOME[outcome] === "shutdown" ? "queue_timeout" : WAIT_OUTCOME[outcome],
      });
  }
}

/** What the EPP hands the admission factory (src/epp/routing.ts builds it). */
export interface AdmissionFactoryContext {
  readonly config: AdmissionConfigSource;
  readonly datastore: { pool(): PoolSpec | undefined };
  readonly metrics?: EppMetrics;
  readonly logger?: Logger;
  readonly detector: SaturationDetector;
  readonly refreshIntervalMs: number;
}

/**
 * Builds the admission controller from the EPP config. Throws ConfigError for an invalid admission, flowControl or
 * autoscaling section (the autoscaling loop itself is src/autoscaling's, started by src/epp).
 */
export function createAdmissionController(ctx: AdmissionFactoryContext): AdmissionController {
  const settings = parseAdmissionConfig(ctx.config);
  const metrics = ctx.metrics;
  const controller = new AdmissionController({
    settings,
    detector: ctx.detector,
    ...(metrics ? { metrics } : {}),
    poolName: () => ctx.datastore.pool()?.name ?? "",
    dispatchIntervalMs: ctx.refreshIntervalMs,
  });
  const fc = settings.flowControl;
  ctx.logger?.info(
    {
      budgets: settings.admission.budgets.map((b) => b.name),
      flowControl: fc.enabled
        ? { maxRequests: fc.maxRequests, maxBytes: fc.maxBytes, ttlMs: fc.defaultRequestTTLMs, fairness: fc.fairness }
        : false,
    },
    "admission configured",
  );
  return controller;
}
