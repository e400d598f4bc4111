/**
 * The routing benchmark orchestrator (`switchyard bench`): starts the fleet, one EPP per EPP-backed mode and one
 * gateway per mode as child processes, measures the fleet's capacity with a closed loop, then sweeps open-loop
 * Poisson load across capacity fractions with the modes INTERLEAVED at every step (rr, lr, sy, rr, lr, sy …) so
 * machine noise lands on all of them alike (docs/design/benchmarks.md §4.5). Every stage is bounded in time and request
 * count; every child is stopped on exit, error or Ctrl-C.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_REFRESH_METRICS_INTERVAL_MS } from "../common/constants.js";
import { ConfigError } from "../common/errors.js";
import { parseFamilies } from "../datalayer/prom-parser.js";
import { DEFAULT_IDLE_SCRAPE_INTERVAL_MS } from "../datalayer/scraper.js";
import { type Child, Supervisor, waitFor } from "../local/children.js";
import { BASE_MODEL, fleetResources, localEppArgs, POOL_NAMESPACE, type SimPod } from "../local/stack.js";
import { benchPods, type FleetParams, findLlmdBinary, idleColdTtftMs, llmdArgs, simOptions } from "./fleet.js";
import { type GatewayTimings, logOffset, readLinesSince, summarizeGatewayLines } from "./gateway-timings.js";
import type { LoadJob, LoadResult, Progress } from "./loadgen.js";
import { type BenchResults, checkTargets, writeReport } from "./report.js";
import { READY_LINE } from "./sim-host.js";
import { aggregate, type SpreadSample, type StageExtras, type StageSummary, summarizeStage } from "./stats.js";
import { generateTrace, meanOutputTokens, traceLengthFor, type WorkloadSpec } from "./workload.js";

export type ModeId =
  | "round-robin"
  | "least-request"
  | "switchyard"
  | "switchyard-recommended"
  | "gie-default"
  | "vllm-router-cache-aware"
  | "vllm-router-power-of-two"
  | "sglang-router-cache-aware";
export const MODE_IDS: readonly ModeId[] = [
  "round-robin",
  "least-request",
  "switchyard",
  "switchyard-recommended",
  "gie-default",
  "vllm-router-cache-aware",
  "vllm-router-power-of-two",
  "sglang-router-cache-aware",
];
export const MODE_ALIASES: Readonly<Record<string, ModeId>> = {
  rr: "round-robin",
  "round-robin": "round-robin",
  lr: "least-request",
  "least-request": "least-request",
  sy: "switchyard",
  switchyard: "switchyard",
  epp: "switchyard",
  syr: "switchyard-recommended",
  "switchyard-recommended": "switchyard-recommended",
  gie: "gie-default",
  "gie-default": "gie-default",
  vca: "vllm-router-cache-aware",
  "vllm-router-cache-aware": "vllm-router-cache-aware",
  vp2: "vllm-router-power-of-two",
  "vllm-router-power-of-two": "vllm-router-power-of-two",
  sca: "sglang-router-cache-aware",
  "sglang-router-cache-aware": "sglang-router-cache-aware",
};
const SHORT: Readonly<Record<ModeId, string>> = {
  "round-robin": "rr",
  "least-request": "lr",
  switchyard: "sy",
  "switchyard-recommended": "syr",
  "gie-default": "gie",
  "vllm-router-cache-aware": "vca",
  "vllm-router-power-of-two": "vp2",
  "sglang-router-cache-aware": "sca",
};

export type PeerTool = "vllm-router" | "sglang-router";

/**
 * The peer routers (bench/README.md, "Peer routers"): proxies in front of `--worker-urls`, each run with one policy
 * and its other defaults. Each sits behind the same front door as every other mode (Envoy, or the dev gateway),
 * which forwards to it as its only upstream.
 */
export const PEER_MODES: Readonly<Partial<Record<ModeId, { readonly tool: PeerTool; readonly policy: string }>>> = {
  "vllm-router-cache-aware": { tool: "vllm-router", policy: "cache_aware" },
  "vllm-router-power-of-two": { tool: "vllm-router", policy: "power_of_two" },
  "sglang-router-cache-aware": { tool: "sglang-router", policy: "cache_aware" },
};

/** Pod endpoints a router may call besides completions and /metrics (docs/design/model-servers.md §10). */
export const PEER_PATHS: readonly string[] = [
  "/tokenize",
  "/detokenize",
  "/v1/chat/completions/render",
  "/v1/completions/render",
  "/get_load",
  "/get_server_info",
  "/server_info",
  "/get_model_info",
  "/model_info",
];
const COMPLETION_PATHS: readonly string[] = ["/v1/chat/completions", "/v1/completions"];
/** The vLLM completed-request counter llm-d-inference-sim also exports (docs/design/model-servers.md §7.4). */
const SUCCESS_COUNTER = "vllm:request_success_total";
/** Envoy's file access log flushes about once a second (its default access_log_flush_interval). */
const ACCESS_LOG_FLUSH_WAIT_MS = 3000;

/** Requests a vLLM-shaped server has finished, from its `/metrics` text: every label set (reason, model) summed. */
export function completedRequests(metricsText: string): number {
  const samples = parseFamilies(metricsText, [SUCCESS_COUNTER]).get(SUCCESS_COUNTER) ?? [];
  return samples.reduce((a, x) => a + x.value, 0);
}

/** A profile shipped in deploy/examples/profiles/ (found from both src/ and dist/). */
export function profilePath(name: "recommended" | "gie-default"): string {
  return fileURLToPath(new URL(`../../deploy/examples/profiles/${name}.yaml`, import.meta.url));
}

export type Backend = "switchyard-sim" | "llm-d-inference-sim";

export interface BenchConfig {
  readonly backend: Backend;
  /** Real Envoy as every mode's front door (`--gateway envoy`); undefined = the dev gateway. */
  readonly envoyBin?: string | undefined;
  /** llm-d-inference-sim executable ("" = search PATH). */
  readonly llmdBin: string;
  readonly sims: number;
  readonly addressPrefix: string;
  readonly simPort: number;
  readonly simsPerProcess: number;
  /**
   * Multiplier on every simulated latency (1 = the H100-scaled fleet as is, 0.1 = 10× faster): a faster fleet
   * serves more requests per second, so a bounded stage holds enough of them for a stable p90 (bench/README.md).
   */
  readonly timeScale: number;
  /** The simulators' --stream-batch-tokens (tokens per socket write). */
  readonly streamBatchTokens: number;
  /** When > 0, every measured stage sends exactly this many requests (its duration is stretched to fit). */
  readonly minRequests: number;
  /** Executables of the peer routers the chosen modes need. */
  readonly peerBins: Readonly<Partial<Record<PeerTool, string>>>;
  readonly modes: readonly ModeId[];
  readonly loads: readonly number[];
  readonly reps: number;
  readonly durationMs: number;
  readonly drainMs: number;
  readonly maxRequests: number;
  /** Closed-loop capacity probe length; ignored when `capacity` > 0. */
  readonly capacityDurationMs: number;
  /** Known capacity in req/s (0 = measure it). */
  readonly capacity: number;
  readonly warmupMs: number;
  readonly workload: WorkloadSpec;
  readonly params: FleetParams;
  /** EndpointPickerConfig file for the switchyard mode ("" = the built-in default profile). */
  readonly eppConfig: string;
  /** The EPPs' scrape interval in wall ms; 0 = the default scaled by timeScale. */
  readonly eppScrapeIntervalMs?: number;
  readonly outDir: string;
  readonly workDir: string;
  readonly command: string;
  readonly log: (line: string) => void;
}

export interface BenchOutcome {
  readonly outDir: string;
  readonly files: readonly string[];
  readonly results: BenchResults;
}

/** A free TCP port on `host` (bound and released; the tiny race is acceptable for a local benchmark). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

interface Gauges {
  running: number;
  waiting: number;
}

function sumGauge(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const c = line.charCodeAt(name.length);
    // "{" (labels) or " " (no labels): not a longer metric name sharing the prefix.
    if (c !== 123 && c !== 32) continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

async function scrapeGauges(url: string): Promise<Gauges | undefined> {
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2000) });
    if (!res.ok) return undefined;
    const text = await res.text();
    return {
      running: sumGauge(text, "vllm:num_requests_running"),
      waiting: sumGauge(text, "vllm:num_requests_waiting"),
    };
  } catch {
    return undefined;
  }
}

function gitSha(): string {
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "unknown";
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class BenchRunner {
  readonly #c: BenchConfig;
  readonly #sup: Supervisor;
  readonly #pods: SimPod[];
  /** Base URL per pod, for the metrics poller. */
  readonly #podUrls: string[];
  /** The llm-d-inference-sim processes (one per pod), watched for an exit during start-up. */
  readonly #fleetChildren: Child[] = [];
  readonly #gateways = new Map<ModeId, string>();
  /** Each EPP mode's process, the URL that says whether its view of every pod is fresh, and whether it is paused. */
  readonly #epps = new Map<ModeId, { readonly child: Child; readonly debugUrl: string; paused: boolean }>();
  #stopping = false;
  #loadSeq = 0;
  #current: Child | undefined;

  constructor(config: BenchConfig) {
    this.#c = config;
    mkdirSync(join(config.workDir, "logs"), { recursive: true });
    this.#sup = new Supervisor(join(config.workDir, "logs"));
    const llmd = config.backend === "llm-d-inference-sim";
    const pods = benchPods({
      count: config.sims,
      addressPrefix: config.addressPrefix,
      port: config.simPort,
      loras: config.workload.loras,
      params: config.params,
    });
    // llm-d-inference-sim binds every interface: one address, consecutive ports.
    this.#pods = llmd ? pods.map((p, i) => ({ ...p, address: "127.0.0.1", port: config.simPort + i })) : pods;
    this.#podUrls = this.#pods.map((p) => `http://${p.address}:${p.port}`);
  }

  get pods(): readonly SimPod[] {
    return this.#pods;
  }

  /** Stops every child; safe to call more than once (signal handler and finally). */
  async stop(): Promise<void> {
    this.#stopping = true;
    // A stopped process cannot act on SIGTERM: resume the paused EPPs so they drain and exit like the rest.
    this.#resumeOnExit();
    process.off("exit", this.#resumeOnExit);
    await this.#sup.stopAll(3000);
  }

  async run(): Promise<BenchOutcome> {
    const c = this.#c;
    const log = c.log;
    const loadStart = loadavg();
    const started = Date.now();
    log(
      `switchyard bench: backend ${c.backend}, ${c.sims} pods, modes ${c.modes.map((m) => SHORT[m]).join(",")}, loads ${c.loads.join(",")} %, ${c.reps} rep(s), ${c.durationMs / 1000} s stages`,
    );
    log(`work dir ${c.workDir} (child logs in ${join(c.workDir, "logs")})`);
    await this.#startFleet();
    const resources = join(c.workDir, "resources.yaml");
    const llmd = c.backend === "llm-d-inference-sim";
    writeFileSync(
      resources,
      fleetResources(this.#pods, c.workload.loras, llmd ? this.#pods.map((p) => p.port) : [c.simPort]),
    );
    const epps = new Map<ModeId, string>();
    const peers = new Map<ModeId, string>();
    for (const mode of c.modes) {
      if (mode === "round-robin" || mode === "least-request") continue;
      if (PEER_MODES[mode] !== undefined) peers.set(mode, await this.#startPeer(mode));
      else epps.set(mode, await this.#startEpp(mode, resources));
    }
    for (const mode of c.modes)
      this.#gateways.set(mode, await this.#startGateway(mode, epps.get(mode), peers.get(mode)));
    log(`stack ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    // Warm-up (discarded): JIT, connection pools, EPP scrape state, through every gateway.
    if (c.warmupMs > 0) {
      const rate = c.capacity > 0 ? c.capacity * 0.3 : Math.max(1, c.sims * 0.3);
      for (const mode of c.modes) await this.#stage(mode, "warm-up", 0, rate, 0, c.warmupMs, 2000);
    }

    const capacity = await this.#capacity();
    log(
      `capacity: ${capacity.requests_per_sec.toFixed(2)} req/s (${capacity.output_tokens_per_sec.toFixed(0)} output tokens/s, mean output ${capacity.mean_output_tokens.toFixed(0)} tokens)`,
    );

    const stages: StageSummary[] = [];
    const maxRate = (capacity.requests_per_sec * Math.max(...c.loads)) / 100;
    const traceLength =
      c.minRequests > 0 ? c.minRequests : Math.min(c.maxRequests, traceLengthFor(maxRate, c.durationMs));
    for (let si = 0; si < c.loads.length; si++) {
      const load = c.loads[si]!;
      const rate = (capacity.requests_per_sec * load) / 100;
      for (let rep = 1; rep <= c.reps; rep++) {
        for (const mode of c.modes) {
          if (this.#stopping) throw new Error("interrupted");
          const label = `step ${si + 1}/${c.loads.length} ${load}% rep ${rep}/${c.reps}`;
          // With --min-requests, the stage is long enough for all of them at this rate (+10 % for Poisson gaps)
          // and ends after the last one is sent.
          const durationMs =
            c.minRequests > 0 ? Math.max(c.durationMs, Math.ceil((1100 * c.minRequests) / rate)) : c.durationMs;
          const { result, spread, extras } = await this.#stage(
            mode,
            label,
            load,
            rate,
            rep,
            durationMs,
            c.drainMs,
            traceLength,
          );
          const summary = summarizeStage({ mode, loadPct: load, rate, rep }, result, spread, extras);
          stages.push(summary);
          const v = summary.switchyard;
          log(
            `  ${SHORT[mode].padEnd(3)} ${String(load).padStart(3)}% → TTFT p50/p90/p99 ${fmtMs(v.ttft_ms?.median)}/${fmtMs(v.ttft_ms?.p90)}/${fmtMs(v.ttft_ms?.p99)} ms, slowdown p90 ${v.slowdown?.p90.toFixed(2) ?? "–"}, ${v.output_tokens_per_sec.toFixed(0)} tok/s, ok ${v.ok} shed ${v.shed} err ${v.errors} aborted ${v.aborted}, loadgen CPU peak ${v.loadgen_cpu_pct.peak.toFixed(0)} %`,
          );
        }
      }
    }

    const agg = aggregate(stages.map((s) => s.switchyard));
    const results: BenchResults = {
      version: 1,
      tool: "switchyard bench",
      generated_at: new Date().toISOString(),
      git_sha: gitSha(),
      command: c.command,
      backend: c.backend,
      machine: { cpus: cpus().length, node: process.versions.node, loadavg_start: loadStart },
      fleet: {
        pods: this.#pods.map((p) => ({
          name: p.name,
          address: `${p.address}:${p.port}`,
          speed: p.speed,
          loras: p.loras,
        })),
        params: c.params,
        model: BASE_MODEL,
      },
      workload: c.workload,
      capacity,
      modes: c.modes,
      time_scale: c.timeScale,
      ...(c.eppScrapeIntervalMs ? { epp_scrape_interval_ms: c.eppScrapeIntervalMs } : {}),
      stream_batch_tokens: c.streamBatchTokens,
      peer_calls_note:
        c.backend === "switchyard-sim"
          ? "pod_requests and peer_calls counted by the simulators"
          : "pod_requests = requests each pod completed (vllm:request_success_total); peer_calls not counted",
      loads_pct: c.loads,
      reps: c.reps,
      stage_duration_s: c.durationMs / 1000,
      ...(c.minRequests > 0 ? { stage_min_requests: c.minRequests } : {}),
      stages,
      aggregate: agg,
      targets: checkTargets(agg, c.loads),
    };
    mkdirSync(c.outDir, { recursive: true });
    const files = writeReport(c.outDir, results);
    log(`done in ${((Date.now() - started) / 60_000).toFixed(1)} min; results in ${c.outDir}`);
    for (const t of results.targets)
      log(`  ${t.met === true ? "met   " : t.met === false ? "missed" : "n/a   "} ${t.name}: ${t.detail}`);
    return { outDir: c.outDir, files, results };
  }

  async #startFleet(): Promise<void> {
    const c = this.#c;
    if (c.backend === "llm-d-inference-sim") {
      const bin = findLlmdBinary(c.llmdBin);
      this.#pods.forEach((pod, i) => {
        // POD_IP is required with --enable-kvcache (it refuses to start without it).
        const child = this.#sup.startProgram(pod.name, bin, llmdArgs(pod, c.params, c.workload.seed + i, c.timeScale), {
          POD_NAME: pod.name,
          POD_NAMESPACE: POOL_NAMESPACE,
          POD_IP: pod.address,
        });
        this.#watch(child);
        this.#fleetChildren.push(child);
      });
    } else {
      const per = Math.max(1, c.simsPerProcess);
      const hosts: Promise<void>[] = [];
      for (let h = 0; h * per < this.#pods.length; h++) {
        const group = this.#pods.slice(h * per, (h + 1) * per);
        const file = join(c.workDir, `sims-${h + 1}.json`);
        writeFileSync(
          file,
          JSON.stringify({
            sims: group.map((p, i) =>
              simOptions(p, c.params, c.workload.seed + h * per + i, c.timeScale, c.streamBatchTokens),
            ),
          }),
        );
        const child = this.#sup.start(`sims-${h + 1}`, ["bench", "__sims", file]);
        hosts.push(this.#awaitLine(child, READY_LINE, 30_000));
        this.#watch(child);
      }
      await Promise.all(hosts);
    }
    // llm-d-inference-sim exits with status 0 on a fatal start-up error, so any exit before the fleet answers is
    // a failure, reported at once with the child's log instead of after the 30 s wait.
    const exitedEarly = new Promise<never>((_, reject) => {
      for (const child of this.#fleetChildren)
        void child.exited.then((code) =>
          reject(
            new Error(
              `${child.name} exited during start-up (${code}); log ${child.logFile}:\n${this.#sup.tail(child)}`,
            ),
          ),
        );
    });
    exitedEarly.catch(() => {});
    await Promise.race([
      waitFor(
        "every simulator's /metrics",
        async () => (await Promise.all(this.#podUrls.map(scrapeGauges))).every((g) => g !== undefined),
        30_000,
        200,
      ),
      exitedEarly,
    ]);
    this.#c.log(
      `fleet up: ${this.#pods.map((p) => `${p.name}@${p.address}:${p.port}×${p.speed}${p.loras.length > 0 ? "+lora" : ""}`).join(" ")}`,
    );
  }

  /** Resolves when `child` prints a line starting with `marker`; rejects with its log tail if it exits first. */
  #awaitLine(child: Child, marker: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let buf = "";
      const timer = setTimeout(() => {
        reject(new Error(`${child.name} did not become ready in ${timeoutMs} ms:\n${this.#sup.tail(child)}`));
      }, timeoutMs);
      child.process.stdout?.on("data", (d: Buffer) => {
        buf += d.toString("utf8");
        if (buf.includes(marker)) {
          clearTimeout(timer);
          resolve();
        }
        if (buf.length > 65_536) buf = buf.slice(-4096);
      });
      void child.exited.then((code) => {
        clearTimeout(timer);
        // Give the log stream a moment to flush before reading its tail.
        setTimeout(
          () => reject(new Error(`${child.name} exited (${code}) before it was ready:\n${this.#sup.tail(child)}`)),
          100,
        );
      });
    });
  }

  #watch(child: Child): void {
    void child.exited.then((code) => {
      if (this.#stopping || this.#sup.stopping) return;
      // The kernel hangs up a stopped process whose process group is orphaned: a paused EPP dies when the shell
      // that started the bench exits (nohup protects the bench, not its children). setsid keeps the group whole.
      const hint =
        code === "SIGHUP"
          ? "\n   (a paused EPP gets SIGHUP when the shell that started the bench exits: run it in the foreground, or under `setsid`)"
          : "";
      this.#c.log(
        `!! ${child.name} exited unexpectedly (${code}); log ${child.logFile}:\n${this.#sup.tail(child)}${hint}`,
      );
    });
  }

  async #startEpp(mode: ModeId, resources: string): Promise<string> {
    const c = this.#c;
    const [grpc, health, metrics] = [await freePort(), await freePort(), await freePort()];
    const args = localEppArgs({ resources, ports: { grpc, health, metrics }, logLevel: "warn" });
    if (c.eppScrapeIntervalMs !== undefined && c.eppScrapeIntervalMs > 0) {
      // Chosen by the run: on llm-d-inference-sim every scrape renders 32 KB of histograms, and at 10 ms that work
      // competes with the fleet for this box's cores (bench/README.md, "Against the peer routers").
      args.push(
        "--refresh-metrics-interval",
        `${c.eppScrapeIntervalMs}ms`,
        "--refresh-metrics-idle-interval",
        `${c.eppScrapeIntervalMs * 10}ms`,
      );
    } else if (c.timeScale !== 1) {
      // A faster fleet needs a proportionally fresher view: the EPP scrapes as often in simulated time as it would
      // at 1× (50 ms, and 500 ms when idle), so time scaling does not hand it staler metrics
      // than its real defaults. The peers' own timers cannot all be scaled (bench/README.md, "Peer routers").
      args.push(
        "--refresh-metrics-interval",
        `${Math.max(1, Math.round(DEFAULT_REFRESH_METRICS_INTERVAL_MS * c.timeScale))}ms`,
        "--refresh-metrics-idle-interval",
        `${Math.max(1, Math.round(DEFAULT_IDLE_SCRAPE_INTERVAL_MS * c.timeScale))}ms`,
      );
    }
    if (mode === "gie-default") {
      args.push("--config-file", profilePath("gie-default"));
    } else if (mode === "switchyard-recommended") {
      args.push("--config-file", profilePath("recommended"));
    } else if (c.eppConfig !== "") {
      args.push("--config-file", c.eppConfig);
    }
    const child = this.#sup.start(`epp-${SHORT[mode]}`, args);
    this.#watch(child);
    const epp = { child, debugUrl: `http://127.0.0.1:${metrics}/debug/endpoints`, paused: false };
    if (this.#epps.size === 0) process.on("exit", this.#resumeOnExit);
    this.#epps.set(mode, epp);
    await this.#waitFresh(mode, epp);
    return `127.0.0.1:${grpc}`;
  }

  /** Resolves once the EPP's /debug/endpoints lists every pod with fresh metrics (start-up, and after a pause). */
  async #waitFresh(mode: ModeId, epp: { readonly child: Child; readonly debugUrl: string }): Promise<void> {
    const { child, debugUrl } = epp;
    try {
      await waitFor(
        `the ${mode} EPP to see fresh metrics from every pod`,
        async () => {
          if (child.process.exitCode !== null) throw new Error(`exited (${child.process.exitCode})`);
          // Bounded, so a hung answer is retried like a refused one; the cause (ECONNREFUSED, a reset) goes into the
          // message, since undici's own says only "fetch failed".
          const res = await fetch(debugUrl, { signal: AbortSignal.timeout(2000) }).catch((err: Error) => {
            const code = (err.cause as { code?: string } | undefined)?.code;
            throw new Error(code === undefined ? err.message : `${err.message} (${code})`);
          });
          const snap = (await res.json()) as { endpoints: { fresh: boolean }[] };
          return snap.endpoints.length === this.#pods.length && snap.endpoints.every((e) => e.fresh);
        },
        45_000,
        200,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- ${child.logFile}:\n${this.#sup.tail(child)}`);
    }
  }

  #signal(epp: { readonly child: Child; paused: boolean }, signal: "SIGSTOP" | "SIGCONT"): void {
    const p = epp.child.process;
    if (p.exitCode === null && p.signalCode === null) p.kill(signal);
    epp.paused = signal === "SIGSTOP";
  }

  /**
   * Only the EPP of the mode being measured runs; the others are paused (SIGSTOP). An idle EPP still scrapes every
   * pod (every 10 ms at the peers preset's 5× speed), and on a shared 2-core box that work, and the simulators'
   * work rendering the answers (32 KB per scrape on llm-d-inference-sim), slowed every other mode's stage, the
   * EPP modes' most (bench/README.md, "Against the peer routers"). A resumed EPP keeps what it learnt and is used
   * once its view of every pod is fresh again. The capacity probe runs with every EPP paused.
   */
  async #activate(mode: ModeId): Promise<void> {
    for (const [m, e] of this.#epps) if (m !== mode && !e.paused) this.#signal(e, "SIGSTOP");
    const epp = this.#epps.get(mode);
    if (epp === undefined || !epp.paused) return;
    this.#signal(epp, "SIGCONT");
    await this.#waitFresh(mode, epp);
  }

  /**
   * A paused child cannot notice that this process died (its parent watch is a timer, and a stopped process runs
   * none), so every way out of this process that runs code resumes them; only a SIGKILL of the bench itself
   * leaves them stopped (`kill -CONT` then lets each one see its new parent and exit).
   */
  readonly #resumeOnExit = (): void => {
    for (const e of this.#epps.values()) if (e.paused) this.#signal(e, "SIGCONT");
  };

  /**
   * Starts one peer router on a free port with every pod as a worker, and waits until it answers a completion:
   * vllm-router listens only once its workers are healthy, sglang-router registers them in the background.
   */
  async #startPeer(mode: ModeId): Promise<string> {
    const c = this.#c;
    const peer = PEER_MODES[mode]!;
    const bin = c.peerBins[peer.tool];
    if (bin === undefined)
      throw new ConfigError(`mode ${mode} needs ${peer.tool}; install the peer routers with \`npm run setup:peers\``);
    const [port, prometheus] = [await freePort(), await freePort()];
    const common = [
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--prometheus-port",
      String(prometheus),
      "--worker-urls",
      ...this.#podUrls,
      "--policy",
      peer.policy,
    ];
    const args =
      peer.tool === "vllm-router"
        ? [...common, "--log-level", "warning"]
        : ["launch", ...common, "--log-level", "warn"];
    const child = this.#sup.startProgram(`peer-${SHORT[mode]}`, bin, args);
    this.#watch(child);
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitFor(
        `the ${mode} router to serve a completion`,
        async () => {
          if (child.process.exitCode !== null) throw new Error(`exited (${child.process.exitCode})`);
          try {
            const res = await fetch(`${url}/v1/chat/completions`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({
                model: BASE_MODEL,
                messages: [{ role: "user", content: "ready?" }],
                max_tokens: 1,
              }),
              signal: AbortSignal.timeout(5000),
            });
            await res.arrayBuffer();
            return res.ok;
          } catch {
            return false;
          }
        },
        60_000,
        250,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- ${child.logFile}:\n${this.#sup.tail(child)}`);
    }
    return `127.0.0.1:${port}`;
  }

  /**
   * Completion and router-facing endpoint hits per pod: switchyard sim counts every call (GET /sim/endpoint-hits);
   * llm-d-inference-sim has no such counter, so its pods report the requests they completed
   * (`vllm:request_success_total`, every label set summed) under the chat path, and no router-facing calls.
   */
  async #podHits(): Promise<(Record<string, number> | undefined)[]> {
    if (this.#c.backend === "llm-d-inference-sim")
      return Promise.all(
        this.#podUrls.map(async (u) => {
          try {
            const res = await fetch(`${u}/metrics`, { signal: AbortSignal.timeout(2000) });
            if (!res.ok) return undefined;
            return { [COMPLETION_PATHS[0]!]: completedRequests(await res.text()) };
          } catch {
            return undefined;
          }
        }),
      );
    if (this.#c.backend !== "switchyard-sim") return this.#podUrls.map(() => undefined);
    return Promise.all(
      this.#podUrls.map(async (u) => {
        try {
          const res = await fetch(`${u}/sim/endpoint-hits`, { signal: AbortSignal.timeout(2000) });
          return res.ok ? ((await res.json()) as Record<string, number>) : undefined;
        } catch {
          return undefined;
        }
      }),
    );
  }

  /** `peer` = a peer router's address, which then is this front door's only upstream. */
  async #startGateway(mode: ModeId, epp: string | undefined, peer?: string): Promise<string> {
    const port = await freePort();
    const endpoints = peer ?? this.#pods.map((p) => `${p.address}:${p.port}`).join(",");
    const args = [
      "gateway",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--endpoints",
      endpoints,
      "--log-level",
      "warn",
    ];
    const lb = peer !== undefined ? "round-robin" : mode;
    if (epp !== undefined) args.push("--lb", "epp", "--epp", epp, "--failure-mode", "FailClose");
    else args.push("--lb", lb);
    const envoyArgs =
      this.#c.envoyBin === undefined
        ? undefined
        : [
            "envoy",
            "--envoy",
            this.#c.envoyBin,
            "--port",
            String(port),
            "--admin-port",
            String(await freePort()),
            "--dir",
            join(this.#c.workDir, `envoy-${SHORT[mode]}`),
            ...(epp !== undefined ? ["--epp", epp] : ["--lb", lb, "--endpoints", endpoints]),
          ];
    const child = this.#sup.start(`gateway-${SHORT[mode]}`, envoyArgs ?? args);
    this.#watch(child);
    const url = `http://127.0.0.1:${port}`;
    try {
      // Any HTTP answer means the listener is up (the path itself is irrelevant).
      await waitFor(
        `the ${mode} gateway`,
        async () => {
          if (child.process.exitCode !== null) throw new Error(`exited (${child.process.exitCode})`);
          await fetch(`${url}/v1/models`, { signal: AbortSignal.timeout(2000) });
          return true;
        },
        15_000,
        100,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- ${child.logFile}:\n${this.#sup.tail(child)}`);
    }
    return url;
  }

  async #capacity(): Promise<BenchResults["capacity"]> {
    const c = this.#c;
    const trace = generateTrace(c.workload, 4000);
    const meanOut = meanOutputTokens(trace);
    const concurrency = this.#pods.length * c.params.maxNumSeqs;
    if (c.capacity > 0)
      return {
        measured: false,
        requests_per_sec: c.capacity,
        output_tokens_per_sec: c.capacity * meanOut,
        mean_output_tokens: meanOut,
        concurrency,
      };
    // A balanced baseline keeps every batch full without any routing cleverness.
    const mode: ModeId = c.modes.includes("least-request") ? "least-request" : c.modes[0]!;
    // llm-d-inference-sim does not cancel the requests a probe aborts at its end, and its requests run unscaled: a
    // probe shorter than a couple of its longest requests measured start-up, not capacity (--quick read 0.97 req/s
    // for a fleet that does 2.39). Lengthen it and say so. Our simulator cancels aborted requests at once.
    const minProbeMs = c.backend === "llm-d-inference-sim" ? Math.ceil(2 * this.#longestRequestMs()) : 0;
    let probeMs = c.capacityDurationMs;
    if (probeMs < minProbeMs) {
      c.log(
        `capacity probe lengthened from ${(probeMs / 1000).toFixed(0)} s to ${(minProbeMs / 1000).toFixed(0)} s: ` +
          "it must outlast two of the trace's longest requests on the slowest pod",
      );
      probeMs = minProbeMs;
    }
    const { result } = await this.#stage(mode, "capacity", 100, 0, 0, probeMs, 0, 4000, concurrency);
    const tokensPerSec = result.tokensInWindow / (result.windowMs / 1000);
    if (!(tokensPerSec > 0))
      throw new Error(
        `the capacity probe received no tokens through the ${mode} gateway (${result.records.length} requests, errors: ${JSON.stringify(
          result.records.slice(0, 3).map((r) => r.error),
        )})`,
      );
    return {
      measured: true,
      requests_per_sec: tokensPerSec / meanOut,
      output_tokens_per_sec: tokensPerSec,
      mean_output_tokens: meanOut,
      concurrency,
    };
  }

  /** One bounded load stage through `mode`'s gateway, with the fleet sampled once a second; then drains. */
  async #stage(
    mode: ModeId,
    label: string,
    loadPct: number,
    rate: number,
    rep: number,
    durationMs: number,
    drainMs: number,
    traceLength = 4000,
    concurrency?: number,
  ): Promise<{ result: LoadResult; spread: SpreadSample[]; extras: StageExtras }> {
    const c = this.#c;
    const url = this.#gateways.get(mode);
    if (url === undefined) throw new Error(`no gateway for mode ${mode}`);
    await this.#activate(mode);
    const n = ++this.#loadSeq;
    const out = join(c.workDir, `load-${n}.json`);
    const job: LoadJob = {
      url,
      workload: c.workload,
      traceLength,
      salt: `${SHORT[mode]}-${loadPct}-${rep}-${n}-${Math.random().toString(36).slice(2, 8)}`,
      kind: concurrency === undefined ? "open" : "closed",
      rate: concurrency === undefined ? rate : undefined,
      concurrency,
      durationMs,
      maxRequests: c.maxRequests,
      drainMs,
      windowStartMs: concurrency === undefined ? 0 : Math.floor(durationMs * 0.4),
      out,
    };
    const jobFile = join(c.workDir, `load-${n}.job.json`);
    writeFileSync(jobFile, JSON.stringify(job));
    const hitsBefore = await this.#podHits();
    const accessLog = this.#accessLog(mode);
    const logStart = accessLog === undefined ? 0 : logOffset(accessLog);
    const child = this.#sup.start(`load-${n}`, ["bench", "__load", jobFile]);
    this.#current = child;
    const head = `[${SHORT[mode].padEnd(3)} ${label}${concurrency === undefined && rate > 0 ? ` ${rate.toFixed(2)} req/s` : concurrency !== undefined ? ` closed loop ×${concurrency}` : ""}]`;
    let buf = "";
    child.process.stdout?.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      let nl = buf.indexOf("\n");
      while (nl !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith("PROGRESS ")) {
          try {
            const p = JSON.parse(line.slice(9)) as Progress;
            c.log(
              `${head} ${(p.t / 1000).toFixed(0)}/${(durationMs / 1000).toFixed(0)} s  sent ${p.sent}  done ${p.done}  in-flight ${p.inflight}  ok ${p.ok}  shed ${p.shed}  err ${p.errors}`,
            );
          } catch {
            // a torn line: the next one will do
          }
        }
        nl = buf.indexOf("\n");
      }
    });
    const spread: SpreadSample[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await sleep(1000);
        if (!sampling) break;
        const gauges = await Promise.all(this.#podUrls.map(scrapeGauges));
        const running: Record<string, number> = {};
        const waiting: Record<string, number> = {};
        gauges.forEach((g, i) => {
          if (g === undefined) return;
          const name = this.#pods[i]!.name;
          running[name] = g.running;
          waiting[name] = g.waiting;
        });
        spread.push({ running, waiting });
      }
    })();
    // The load generator stops itself; this deadline only catches a wedged child.
    const hardMs = durationMs + drainMs + 60_000;
    const timer = setTimeout(() => child.process.kill("SIGKILL"), hardMs);
    const code = await child.exited;
    clearTimeout(timer);
    sampling = false;
    await sampler;
    this.#current = undefined;
    if (code !== 0)
      throw new Error(`load generator ${child.name} failed (${code}); log ${child.logFile}:\n${this.#sup.tail(child)}`);
    const result = JSON.parse(readFileSync(out, "utf8")) as LoadResult;
    await this.#drain();
    const hitsAfter = await this.#podHits();
    const podRequests: Record<string, number> = {};
    const peerCalls: Record<string, number> = {};
    hitsAfter.forEach((after, i) => {
      const before = hitsBefore[i];
      if (after === undefined || before === undefined) return;
      const delta = (path: string) => (after[path] ?? 0) - (before[path] ?? 0);
      podRequests[this.#pods[i]!.name] = COMPLETION_PATHS.reduce((a, path) => a + delta(path), 0);
      for (const path of PEER_PATHS) if (delta(path) > 0) peerCalls[path] = (peerCalls[path] ?? 0) + delta(path);
    });
    const gateway = accessLog === undefined ? undefined : await this.#gatewayTimings(accessLog, logStart, result);
    return {
      result,
      spread,
      extras: {
        slowdowns: this.#slowdowns(result, traceLength),
        podRequests,
        peerCalls,
        ...(gateway !== undefined ? { gateway } : {}),
      },
    };
  }

  /** Real Envoy's access log for this mode's front door (`switchyard envoy --dir` writes it there). */
  #accessLog(mode: ModeId): string | undefined {
    return this.#c.envoyBin === undefined
      ? undefined
      : join(this.#c.workDir, `envoy-${SHORT[mode]}`, "envoy-access.log");
  }

  /**
   * The stage's own lines: Envoy logs a request when it ends and flushes its file about once a second, so wait until
   * every request the load generator sent is there (bounded: a request Envoy never saw has no line).
   */
  async #gatewayTimings(file: string, from: number, result: LoadResult): Promise<GatewayTimings | undefined> {
    const deadline = Date.now() + ACCESS_LOG_FLUSH_WAIT_MS;
    let lines = readLinesSince(file, from);
    while (lines.length < result.records.length && Date.now() < deadline) {
      await sleep(250);
      lines = readLinesSince(file, from);
    }
    return summarizeGatewayLines(lines);
  }

  /**
   * TTFT ÷ the request's idle cold TTFT at this run's time scale. The prompt length is the server's count
   * (usage.prompt_tokens); a request that got no usage (aborted, failed) falls back to the trace's estimate.
   */
  #slowdowns(result: LoadResult, traceLength: number): number[] {
    const c = this.#c;
    const trace = generateTrace(c.workload, traceLength);
    const out: number[] = [];
    for (const r of result.records) {
      const t = r.ttft ?? (r.outcome === "aborted" ? r.e2e : undefined);
      if (t === undefined) continue;
      const item = trace.items[r.i];
      const estimate =
        item === undefined ? 0 : item.promptTokens + (item.group >= 0 ? trace.groupTokens[item.group]! : 0);
      const prompt = r.prompt > 0 ? r.prompt : estimate;
      const idle = idleColdTtftMs(c.params, prompt, r.lora !== undefined) * c.timeScale;
      if (idle > 0) out.push(t / idle);
    }
    return out;
  }

  /**
   * The longest request of the trace on the slowest pod, unloaded batch time scaled by the load factor: how long an
   * aborted request can keep a pod busy when the server does not cancel it (llm-d-inference-sim does not).
   */
  #longestRequestMs(): number {
    const c = this.#c;
    const p = c.params;
    const slowest = Math.max(1, ...this.#pods.map((pod) => pod.speed));
    let longest = 0;
    for (const it of generateTrace(c.workload, 4000).items) {
      const ms =
        p.timeToFirstTokenMs +
        p.prefillOverheadMs +
        it.promptTokens * p.prefillTimePerTokenMs +
        it.outputTokens * p.interTokenLatencyMs * p.timeFactorUnderLoad;
      if (ms > longest) longest = ms;
    }
    return longest * slowest * c.timeScale;
  }

  /**
   * Waits until no pod runs or queues anything, so the next mode starts on an idle fleet. A fleet still busy after
   * its longest possible request would carry load into the next mode and bias it, so that fails the run.
   */
  async #drain(): Promise<void> {
    const limitMs = Math.max(30_000, Math.ceil(1.5 * this.#longestRequestMs()));
    await waitFor(
      "the fleet to drain (no running or waiting request on any pod) before the next mode",
      async () => {
        const g = await Promise.all(this.#podUrls.map(scrapeGauges));
        return g.every((x) => x !== undefined && x.running === 0 && x.waiting === 0);
      },
      limitMs,
      200,
    );
    // One more scrape interval for the EPPs' view, and a breath for the machine.
    await sleep(500);
  }

  get current(): Child | undefined {
    return this.#current;
  }
}

function fmtMs(v: number | undefined): string {
  return v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(0);
}
