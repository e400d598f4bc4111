/**
 * The load generator: runs in its own process (docs/design/benchmarks.md §4.1) so its event loop never competes with
 * the gateway, the EPP or the simulators, and reports its own CPU so a saturated client cannot pass for a slow fleet.
 *
 * Open loop: request i is sent at Σ gap / rate regardless of how earlier requests fare (a closed loop would slow
 * down with the fleet and hide queueing). Closed loop is used only to measure capacity.
 *
 * Per request it records, client-side from the SSE stream: TTFT (first read carrying a content token), the gaps
 * between token-carrying reads (inference-perf ITL: a read holding k tokens gives one gap and k−1 zeros), e2e,
 * the server's usage numbers, and which endpoint served it (x-gateway-destination-endpoint-served, else
 * x-inference-pod). Nothing is JSON-parsed per token: tokens are counted by a byte pattern, usage is read once
 * from the tail of the stream.
 */
import { writeFileSync } from "node:fs";
import { Agent, type ClientRequest, type IncomingMessage, request } from "node:http";
import { DESTINATION_ENDPOINT_SERVED_KEY, OBJECTIVE_HEADER } from "../common/constants.js";
import {
  type BuiltRequest,
  type Criticality,
  generateTrace,
  RequestBuilder,
  type TraceItem,
  type WorkloadSpec,
} from "./workload.js";

export interface LoadJob {
  /** Gateway base URL, e.g. http://127.0.0.1:8081 */
  readonly url: string;
  readonly workload: WorkloadSpec;
  readonly traceLength: number;
  /** Prefix-cache salt for this run (see RequestBuilder). */
  readonly salt: string;
  readonly kind: "open" | "closed";
  /** Open loop: offered requests per second. */
  readonly rate?: number;
  /** Closed loop: requests kept in flight. */
  readonly concurrency?: number;
  /** How long new requests are sent. */
  readonly durationMs: number;
  readonly maxRequests: number;
  /** After durationMs, how long in-flight requests may finish before they are aborted. */
  readonly drainMs: number;
  /** Tokens received before this offset are not counted in tokensInWindow (closed-loop ramp-up). */
  readonly windowStartMs: number;
  /** Where the LoadResult JSON is written. */
  readonly out: string;
}

export type Outcome = "ok" | "shed" | "error" | "aborted";

export interface RequestRecord {
  readonly i: number;
  readonly crit: Criticality;
  readonly lora: string | undefined;
  /** Send time, ms after the stage started. */
  readonly sent: number;
  readonly status: number;
  readonly outcome: Outcome;
  /** ms; undefined when no token arrived. */
  readonly ttft: number | undefined;
  /** ms from send to the end of the response (or the abort). */
  readonly e2e: number;
  /** Output tokens: usage.completion_tokens when present, else tokens counted in the stream. */
  readonly out: number;
  readonly prompt: number;
  readonly cached: number;
  readonly endpoint: string;
  /** (last token − first token) / (tokens − 1), ms. */
  readonly tpot: number | undefined;
  readonly error: string | undefined;
}

export interface LoadResult {
  readonly kind: "open" | "closed";
  readonly rate: number | undefined;
  readonly concurrency: number | undefined;
  readonly durationMs: number;
  /** Wall time from the first send to the last response or abort. */
  readonly elapsedMs: number;
  readonly records: readonly RequestRecord[];
  /** Pooled inter-token gaps, ms (capped at MAX_ITL_SAMPLES). */
  readonly itl: readonly number[];
  /** Output tokens received inside [windowStartMs, durationMs]. */
  readonly tokensInWindow: number;
  readonly windowMs: number;
  /** Average CPU over the stage, and the busiest one-second window, in % of one core. */
  readonly cpu: {
    readonly userMs: number;
    readonly systemMs: number;
    readonly wallMs: number;
    readonly pct: number;
    readonly peakPct: number;
  };
  /** How late sends left relative to their schedule, ms (p50, p99, max). */
  readonly scheduleLagMs: { readonly p50: number; readonly p99: number; readonly max: number };
}

export interface Progress {
  readonly t: number;
  readonly sent: number;
  readonly done: number;
  readonly inflight: number;
  readonly ok: number;
  readonly shed: number;
  readonly errors: number;
}

const MAX_ITL_SAMPLES = 400_000;
const CONTENT = Buffer.from('{"content":');
const TAIL_BYTES = 2048;

class Flight {
  readonly item: TraceItem;
  readonly sentAt: number;
  readonly sentOffset: number;
  req: ClientRequest | undefined;
  status = 0;
  endpoint = "";
  firstAt = 0;
  lastAt = 0;
  tokens = 0;
  tail = "";
  errorBody = "";
  done = false;

  constructor(item: TraceItem, sentAt: number, sentOffset: number) {
    this.item = item;
    this.sentAt = sentAt;
    this.sentOffset = sentOffset;
  }
}

function countPattern(buf: Buffer, pattern: Buffer): number {
  let n = 0;
  let at = buf.indexOf(pattern);
  while (at !== -1) {
    n++;
    at = buf.indexOf(pattern, at + pattern.length);
  }
  return n;
}

function lastInt(text: string, key: string): number | undefined {
  const at = text.lastIndexOf(`"${key}":`);
  if (at === -1) return undefined;
  const m = /^\s*(\d+)/.exec(text.slice(at + key.length + 3));
  return m ? Number(m[1]) : undefined;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** Runs one stage and resolves with its result (also written to job.out). `onProgress` fires about once a second. */
export async function runLoad(job: LoadJob, onProgress: (p: Progress) => void = () => {}): Promise<LoadResult> {
  if (job.kind === "open" && !(job.rate !== undefined && job.rate > 0))
    throw new RangeError("open-loop load needs rate > 0");
  if (job.kind === "closed" && !(job.concurrency !== undefined && job.concurrency >= 1))
    throw new RangeError("closed-loop load needs concurrency >= 1");
  const trace = generateTrace(job.workload, job.traceLength);
  const builder = new RequestBuilder(trace, job.salt);
  const limit = Math.min(job.maxRequests, trace.items.length);
  // Bodies are rendered before the clock starts: the send loop does no string building.
  const bodies: BuiltRequest[] = trace.items.slice(0, limit).map((it) => builder.build(it));
  const target = new URL(job.url);
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY, keepAliveMsecs: 30_000 });

  const records: RequestRecord[] = [];
  const itl: number[] = [];
  const lags: number[] = [];
  const inflight = new Set<Flight>();
  let tokensInWindow = 0;
  let next = 0;
  let ok = 0;
  let shed = 0;
  let errors = 0;
  let sendingDone = false;
  let finishResolve: () => void = () => {};
  const finished = new Promise<void>((r) => {
    finishResolve = r;
  });

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const windowStart = t0 + job.windowStartMs;
  const sendEnd = t0 + job.durationMs;

  const checkDone = () => {
    if (sendingDone && inflight.size === 0) finishResolve();
  };

  const finish = (f: Flight, outcome: Outcome, error: string | undefined) => {
    if (f.done) return;
    f.done = true;
    inflight.delete(f);
    const now = performance.now();
    const usageOut = lastInt(f.tail, "completion_tokens");
    const out = outcome === "ok" && usageOut !== undefined ? usageOut : f.tokens;
    const ttft = f.firstAt > 0 ? f.firstAt - f.sentAt : undefined;
    const tpot = f.firstAt > 0 && f.tokens > 1 ? (f.lastAt - f.firstAt) / (f.tokens - 1) : undefined;
    if (outcome === "ok") ok++;
    else if (outcome === "shed") shed++;
    else if (outcome === "error") errors++;
    records.push({
      i: f.item.index,
      crit: f.item.criticality,
      lora: f.item.lora,
      sent: f.sentOffset,
      status: f.status,
      outcome,
      ttft,
      e2e: now - f.sentAt,
      out,
      prompt: lastInt(f.tail, "prompt_tokens") ?? 0,
      cached: lastInt(f.tail, "cached_tokens") ?? 0,
      endpoint: f.endpoint,
      tpot,
      error,
    });
    if (job.kind === "closed" && !sendingDone) send();
    checkDone();
  };

  const onResponse = (f: Flight, res: IncomingMessage) => {
    f.status = res.statusCode ?? 0;
    const served = res.headers[DESTINATION_ENDPOINT_SERVED_KEY];
    const pod = res.headers["x-inference-pod"];
    f.endpoint = (typeof served === "string" ? served : undefined) ?? (typeof pod === "string" ? pod : "") ?? "";
    if (f.status !== 200) {
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        if (f.errorBody.length < 300) f.errorBody += d;
      });
      res.on("end", () => finish(f, f.status === 429 ? "shed" : "error", `${f.status} ${f.errorBody.slice(0, 200)}`));
      res.on("error", (err) => finish(f, "error", err.message));
      return;
    }
    res.on("data", (chunk: Buffer) => {
      const now = performance.now();
      const k = countPattern(chunk, CONTENT);
      if (k > 0) {
        if (f.firstAt === 0) f.firstAt = now;
        else if (itl.length < MAX_ITL_SAMPLES) {
          itl.push(now - f.lastAt);
          for (let j = 1; j < k && itl.length < MAX_ITL_SAMPLES; j++) itl.push(0);
        }
        f.lastAt = now;
        f.tokens += k;
        if (now >= windowStart && now <= sendEnd) tokensInWindow += k;
      }
      const s =
        chunk.length > TAIL_BYTES ? chunk.toString("latin1", chunk.length - TAIL_BYTES) : chunk.toString("latin1");
      f.tail = f.tail.length + s.length > TAIL_BYTES ? (f.tail + s).slice(-TAIL_BYTES) : f.tail + s;
    });
    res.on("end", () => finish(f, "ok", undefined));
    res.on("error", (err) => finish(f, "error", err.message));
    res.on("aborted", () => finish(f, "error", "response aborted"));
  };

  const send = () => {
    if (next >= limit) {
      sendingDone = true;
      return;
    }
    const item = trace.items[next]!;
    const built = bodies[next]!;
    next++;
    const now = performance.now();
    const f = new Flight(item, now, now - t0);
    inflight.add(f);
    const headers: Record<string, string | number> = {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(built.body),
    };
    if (built.objective !== undefined) headers[OBJECTIVE_HEADER] = built.objective;
    const req = request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        method: "POST",
        path: "/v1/chat/completions",
        headers,
      },
      (res) => onResponse(f, res),
    );
    f.req = req;
    req.on("error", (err) => finish(f, "error", err.message));
    req.end(built.body);
  };

  let cpuPeakPct = 0;
  let cpuLast = process.cpuUsage();
  let cpuLastAt = performance.now();
  const progressTimer = setInterval(() => {
    const nowCpu = process.cpuUsage();
    const at = performance.now();
    const pct = ((nowCpu.user - cpuLast.user + nowCpu.system - cpuLast.system) / 1000 / (at - cpuLastAt)) * 100;
    if (pct > cpuPeakPct) cpuPeakPct = pct;
    cpuLast = nowCpu;
    cpuLastAt = at;
    onProgress({
      t: performance.now() - t0,
      sent: next,
      done: records.length,
      inflight: inflight.size,
      ok,
      shed,
      errors,
    });
  }, 1000);

  let sendTimer: NodeJS.Timeout | undefined;
  if (job.kind === "open") {
    const rate = job.rate!;
    let due = t0;
    const tick = () => {
      sendTimer = undefined;
      const now = performance.now();
      while (next < limit && due <= now) {
        if (due >= sendEnd) break;
        lags.push(now - due);
        send();
        const it = trace.items[next];
        if (it !== undefined) due += (it.gap * 1000) / rate;
      }
      if (next >= limit || due >= sendEnd || performance.now() >= sendEnd) {
        sendingDone = true;
        checkDone();
        return;
      }
      sendTimer = setTimeout(tick, Math.max(0, due - performance.now()));
    };
    // The first request leaves after its own gap, like every other one.
    due = t0 + (trace.items[0]!.gap * 1000) / rate;
    sendTimer = setTimeout(tick, Math.max(0, due - t0));
  } else {
    const c = Math.min(job.concurrency!, limit);
    for (let j = 0; j < c; j++) send();
    sendTimer = setTimeout(() => {
      sendTimer = undefined;
      sendingDone = true;
      checkDone();
    }, job.durationMs);
  }

  // Hard stop: whatever is still in flight at durationMs + drainMs is aborted and recorded as such.
  const deadline = setTimeout(
    () => {
      if (sendTimer !== undefined) clearTimeout(sendTimer);
      sendingDone = true;
      for (const f of [...inflight]) {
        finish(f, "aborted", "aborted at the stage deadline");
        f.req?.destroy();
      }
      checkDone();
    },
    job.durationMs + (job.kind === "closed" ? 0 : job.drainMs),
  );

  await finished;
  clearTimeout(deadline);
  clearInterval(progressTimer);
  if (sendTimer !== undefined) clearTimeout(sendTimer);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();
  lags.sort((a, b) => a - b);
  const result: LoadResult = {
    kind: job.kind,
    rate: job.rate,
    concurrency: job.concurrency,
    durationMs: job.durationMs,
    elapsedMs: wallMs,
    records: records.sort((a, b) => a.i - b.i),
    itl,
    tokensInWindow,
    windowMs: Math.max(1, job.durationMs - job.windowStartMs),
    cpu: {
      userMs: cpu.user / 1000,
      systemMs: cpu.system / 1000,
      wallMs,
      pct: ((cpu.user + cpu.system) / 1000 / wallMs) * 100,
      peakPct: cpuPeakPct,
    },
    scheduleLagMs: { p50: quantile(lags, 0.5), p99: quantile(lags, 0.99), max: lags[lags.length - 1] ?? 0 },
  };
  writeFileSync(job.out, JSON.stringify(result));
  return result;
}
