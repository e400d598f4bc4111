/**
 * The director on its own, behind its narrow seams (src/request/pool-view.ts, the Scheduler type, the Admission
 * interface) with small fakes: what it routes to, how failures map to catalogued errors, and that every request
 * gives back what it took (in-flight counters, admission tickets) however it ends.
 */
import { describe, expect, it } from "vitest";
import type { Admission, AdmissionRequest, AdmissionTicket } from "../../src/admission/types.js";
import { LazyCancellation } from "../../src/common/cancellation.js";
import { MODEL_NAME_REWRITE_HEADER, OBJECTIVE_HEADER } from "../../src/common/constants.js";
import { SwitchyardError } from "../../src/common/errors.js";
import type { ResolvedRewrite } from "../../src/datastore/datastore.js";
import type { Endpoint, ModelSpec, ObjectiveSpec } from "../../src/datastore/types.js";
import { DecisionLog } from "../../src/observability/decisions.js";
import { silentLogger } from "../../src/observability/logger.js";
import { EppMetrics } from "../../src/observability/metrics.js";
import { Director, type DirectorOptions } from "../../src/request/director.js";
import type { IncomingRequest, RoutingDecision } from "../../src/request/lifecycle.js";
import type { PoolView } from "../../src/request/pool-view.js";
import type { Scheduler, SchedulingRequest, SchedulingResult } from "../../src/scheduling/index.js";
import { sample } from "../observability/helpers.js";
import { endpoint } from "../scheduling/helpers.js";

/** A pool of plain maps: exactly what the director may ask, nothing more. */
class FakePool implements PoolView {
  readonly models = new Map<string, ModelSpec>();
  readonly objectives = new Map<string, ObjectiveSpec>();
  readonly rewrites = new Map<string, ResolvedRewrite>();
  members: Endpoint[] = [];

  model(name: string): ModelSpec | undefined {
    return this.models.get(name);
  }
  objective(name: string): ObjectiveSpec | undefined {
    return this.objectives.get(name);
  }
  resolveRewrite(model: string): ResolvedRewrite | undefined {
    return this.rewrites.get(model);
  }
  endpoints(): readonly Endpoint[] {
    return this.members;
  }
}

/** Picks the candidate `choose` names (default: the first), and records what it saw. */
class FakeScheduler implements Pick<Scheduler, "schedule" | "preRequest"> {
  readonly seen: { request: SchedulingRequest; candidates: string[] }[] = [];
  readonly preRequests: { requestId: string; chosen: string[] }[] = [];
  choose: (candidates: readonly Endpoint[]) => readonly Endpoint[] = (c) => [c[0]!];
  fail: SwitchyardError | undefined;

  schedule(request: SchedulingRequest, candidates: readonly Endpoint[]): SchedulingResult {
    this.seen.push({ request, candidates: candidates.map((e) => e.key) });
    if (this.fail) throw this.fail;
    const endpoints = this.choose(candidates);
    return {
      endpoints,
      profile: "fake",
      breakdown: [],
      scoredCount: candidates.length,
      best: () => [],
      rejected: [],
      scoresOf: () => undefined,
      bestScoreOf: () => undefined,
    };
  }

  preRequest(request: SchedulingRequest, chosen: readonly Endpoint[]): void {
    this.preRequests.push({ requestId: request.requestId, chosen: chosen.map((e) => e.key) });
  }
}

/** Admits at once, rejects, or holds the request until the test resolves it; counts ticket releases. */
class FakeAdmission implements Admission {
  readonly requests: AdmissionRequest[] = [];
  readonly releases: { used: number | undefined; served: boolean | undefined }[] = [];
  reject: SwitchyardError | undefined;
  hold = false;
  held: ((t: AdmissionTicket) => void) | undefined;

  admit(request: AdmissionRequest): AdmissionTicket | Promise<AdmissionTicket> {
    this.requests.push(request);
    if (this.reject) throw this.reject;
    const ticket: AdmissionTicket = { release: (used, served) => this.releases.push({ used, served }) };
    if (!this.hold) return ticket;
    return new Promise((resolve) => {
      this.held = () => resolve(ticket);
    });
  }

  close(): void {}
}

function setup(options: Partial<DirectorOptions> = {}) {
  const pool = new FakePool();
  pool.members = [endpoint("10.1.0.1"), endpoint("10.1.0.2"), endpoint("10.1.0.3")];
  const scheduler = new FakeScheduler();
  const admission = new FakeAdmission();
  const metrics = new EppMetrics();
  const decisions = new DecisionLog(10);
  const director = new Director({
    pool,
    scheduler,
    admission,
    metrics,
    logger: silentLogger,
    decisions,
    random: () => 0,
    ...options,
  });
  return { pool, scheduler, admission, metrics, decisions, director };
}

function incoming(body: object | string, init: Partial<IncomingRequest> = {}): IncomingRequest {
  return {
    requestId: "req-1",
    headers: new Map(),
    method: "POST",
    path: "/v1/completions",
    body: Buffer.from(typeof body === "string" ? body : JSON.stringify(body)),
    headerOnly: false,
    subsetHint: undefined,
    ...init,
  };
}

const route = (d: Director, r: IncomingRequest) => {
  const lifecycle = d.begin();
  return { lifecycle, decision: lifecycle.route(r, new LazyCancellation()) };
};

function rejection(fn: () => unknown): SwitchyardError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchyardError);
    return err as SwitchyardError;
  }
  throw new Error("expected a rejection");
}

const model = (name: string, init: Partial<ModelSpec> = {}): ModelSpec => ({
  name,
  namespace: "default",
  creationTimestamp: 0,
  modelName: name,
  criticality: "Standard",
  targetModels: [],
  poolRef: "pool",
  ...init,
});

describe("routing", () => {
  it("routes to the scheduler's pick, runs PreRequest for it, and forwards the body unchanged", () => {
    const { director, scheduler, pool } = setup();
    scheduler.choose = (c) => [c[1]!, c[0]!];
    const r = incoming({ model: "m", prompt: "hello" });
    const { decision } = route(director, r);
    const d = decision as RoutingDecision;
    expect(d.endpoints).toEqual([pool.members[1]!.key, pool.members[0]!.key]);
    expect(d.body).toBe(r.body);
    expect(scheduler.seen[0]!.candidates).toEqual(pool.members.map((e) => e.key));
    expect(scheduler.preRequests).toEqual([{ requestId: "req-1", chosen: d.endpoints }]);
    expect(pool.members[1]!.inflightRequests).toBe(1);
    expect(pool.members[0]!.inflightRequests).toBe(0);
  });

  it("resolves the target through the InferenceModel split, then the rewrite, and splices only the model", () => {
    const { director, pool, scheduler, metrics } = setup();
    pool.models.set("m", model("m", { criticality: "Critical", targetModels: [{ name: "m-v2", weight: 1 }] }));
    pool.rewrites.set("m-v2", { rewriteName: "rw", targets: [{ modelRewrite: "m-v3", weight: 1 }] });
    const { decision } = route(director, incoming({ model: "m", prompt: "x" }));
    const d = decision as RoutingDecision;
    expect(JSON.parse(d.body.toString()).model).toBe("m-v3");
    const seen = scheduler.seen[0]!.request;
    expect([seen.model, seen.targetModel, seen.criticality, seen.priority]).toEqual(["m", "m-v3", "Critical", 1]);
    return metrics.text().then((text) => {
      expect(sample(text, "inference_extension_model_rewrite_decisions_total", { model_rewrite_name: "rw" })).toBe(1);
    });
  });

  it("lets the rewrite header pick the target and the objective header set the priority", () => {
    const { director, pool, scheduler, admission } = setup();
    pool.objectives.set("batch", {
      name: "batch",
      namespace: "default",
      creationTimestamp: 0,
      priority: -3,
      poolRef: "p",
    });
    const headers = new Map([
      [MODEL_NAME_REWRITE_HEADER, "other"],
      [OBJECTIVE_HEADER, "batch"],
    ]);
    route(director, incoming({ model: "m", prompt: "x" }, { headers }));
    const seen = scheduler.seen[0]!.request;
    expect([seen.targetModel, seen.priority, seen.criticality]).toEqual(["other", -3, "Sheddable"]);
    expect(admission.requests[0]!.priority).toBe(-3);
  });

  it("narrows candidates to the subset hint, by IP", () => {
    const { director, pool, scheduler } = setup();
    route(director, incoming({ model: "m", prompt: "x" }, { subsetHint: ["10.1.0.3:9999"] }));
    expect(scheduler.seen[0]!.candidates).toEqual([pool.members[2]!.key]);
  });

  it("sends header-only requests to an endpoint without scheduling", () => {
    const { director, pool, scheduler, admission } = setup();
    const { decision } = route(director, incoming("", { headerOnly: true, method: "GET", path: "/v1/models" }));
    expect(pool.members.map((e) => e.key)).toContain((decision as RoutingDecision).endpoints[0]);
    expect(scheduler.seen).toHaveLength(0);
    expect(admission.requests).toHaveLength(0);
  });

  it("schedules a queued request after admission, on the candidates as they are then (late binding)", async () => {
    const { director, pool, scheduler, admission } = setup();
    admission.hold = true;
    const { decision } = route(director, incoming({ model: "m", prompt: "x" }));
    expect(decision).toBeInstanceOf(Promise);
    expect(scheduler.seen).toHaveLength(0);
    pool.members = pool.members.slice(2);
    admission.held!({ release: () => {} });
    expect((await decision).endpoints).toEqual([pool.members[0]!.key]);
    expect(scheduler.seen[0]!.candidates).toEqual([pool.members[0]!.key]);
  });
});

describe("rejection mapping", () => {
  it("maps an unparsable body to 400", () => {
    const { director } = setup();
    const err = rejection(() => route(director, incoming("{not json")));
    expect(err.status).toBe(400);
  });

  it("answers 404 for an unknown model only with rejectUnknownModels", () => {
    const { director } = setup({ rejectUnknownModels: true });
    expect(rejection(() => route(director, incoming({ model: "nope", prompt: "x" }))).code).toBe("SY_UNKNOWN_MODEL");
    const { director: lenient } = setup();
    expect(route(lenient, incoming({ model: "nope", prompt: "x" })).decision).toHaveProperty("endpoints");
  });

  it("answers 503 when the pool or the subset hint leaves no candidate, before admission", () => {
    const { director, pool, admission } = setup();
    expect(rejection(() => route(director, incoming({ model: "m", prompt: "x" }, { subsetHint: [] }))).code).toBe(
      "SY_NO_CANDIDATES",
    );
    pool.members = [];
    expect(rejection(() => route(director, incoming({ model: "m", prompt: "x" }))).code).toBe("SY_NO_CANDIDATES");
    expect(rejection(() => route(director, incoming("", { headerOnly: true }))).code).toBe("SY_NO_PODS");
    expect(admission.requests).toHaveLength(0);
  });

  it("passes admission's and the scheduler's errors through, counting each once", async () => {
    const { director, admission, scheduler, metrics, decisions } = setup();
    admission.reject = new SwitchyardError("SY_SHED", "shed");
    expect(rejection(() => route(director, incoming({ model: "m", prompt: "x" }))).code).toBe("SY_SHED");
    admission.reject = undefined;
    scheduler.fail = new SwitchyardError("SY_SCHEDULING_FAILED", "filtered out");
    const { lifecycle } = { lifecycle: director.begin() };
    const err = rejection(() => lifecycle.route(incoming({ model: "m", prompt: "x" }), new LazyCancellation()));
    expect(err.status).toBe(429);
    lifecycle.done("error");
    // The ticket of a request rejected after admission is refunded (not served).
    expect(admission.releases).toEqual([{ used: undefined, served: false }]);
    const text = await metrics.text();
    expect(sample(text, "inference_objective_request_error_total", { error_code: "ResourceExhausted" })).toBe(2);
    expect(sample(text, "inference_extension_scheduler_attempts_total", { status: "failure" })).toBe(1);
    expect(decisions.recent().map((d) => d.outcome)).toEqual(["rejected", "rejected"]);
  });
});

describe("accounting", () => {
  const sse = (text: string) => Buffer.from(text);

  it("a completed request gives back its in-flight counters and reconciles the ticket with real usage", async () => {
    const { director, pool, admission, metrics } = setup();
    const { lifecycle } = route(director, incoming({ model: "m", prompt: "x".repeat(40), max_tokens: 10 }));
    const chosen = pool.members[0]!;
    expect([chosen.inflightRequests, chosen.inflightTokens, chosen.routedRequests]).toEqual([1, 20, 1]);
    lifecycle.responseHeaders({
      status: 200,
      headers: new Map([["content-type", "application/json"]]),
      servedEndpoint: undefined,
    });
    lifecycle.responseBody(
      sse('{"model":"m","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}'),
      true,
    );
    lifecycle.done("completed");
    expect([chosen.inflightRequests, chosen.inflightTokens, chosen.routedRequests]).toEqual([0, 0, 1]);
    expect(admission.releases).toEqual([{ used: 15 }].map((r) => ({ ...r, served: undefined })));
    const text = await metrics.text();
    expect(sample(text, "inference_objective_running_requests", { model_name: "m" })).toBe(0);
    expect(sample(text, "inference_objective_request_total", { model_name: "m" })).toBe(1);
    expect(sample(text, "inference_objective_input_tokens_count", { model_name: "m" })).toBe(1);
  });

  it("a cancelled request gives everything back once and counts as Cancelled", async () => {
    const { director, pool, admission, metrics } = setup();
    const { lifecycle } = route(director, incoming({ model: "m", prompt: "x" }));
    lifecycle.done("cancelled");
    lifecycle.done("cancelled");
    const chosen = pool.members[0]!;
    expect([chosen.inflightRequests, chosen.inflightTokens]).toEqual([0, 0]);
    expect(admission.releases).toEqual([{ used: undefined, served: true }]);
    const text = await metrics.text();
    expect(sample(text, "inference_objective_request_error_total", { error_code: "Cancelled" })).toBe(1);
    expect(sample(text, "inference_objective_running_requests", { model_name: "m" })).toBe(0);
  });

  it("a request cancelled while queued never touches an endpoint", async () => {
    const { director, pool, admission } = setup();
    admission.hold = true;
    const { lifecycle } = route(director, incoming({ model: "m", prompt: "x" }));
    lifecycle.done("cancelled");
    for (const e of pool.members) expect([e.inflightRequests, e.routedRequests]).toEqual([0, 0]);
    expect(admission.releases).toEqual([]);
  });
});
