/**
 * `npx tsx bench/scrape/scale.ts`: does scraping N pods delay requests? (issue 14 item 6; docs/design/model-servers.md
 * §9). The real EPP (dist/cli.js epp) scrapes N loopback pods at the default interval (50 ms) while one client sends
 * sequential ext_proc requests (full duplex, a 1 KB chat body, bench/extproc/lean-client.ts) and we measure, per
 * WINDOW-second window:
 *   - request latency p50 / p99 (ms), from the first write to the final echoed body chunk;
 *   - the achieved scrape interval per endpoint (ms): window × N / the /metrics GETs the pods served;
 *   - the EPP's CPU (% of a core, all threads, /proc/<pid>/stat) and CPU µs per scrape, and per endpoint.
 * Interval and CPU come from a first window without requests (scraping alone), latency from a second one.
 * Each condition runs the baseline EPP (BASE_CLI, e.g. main at 244d781 built in /tmp/scrape-base) and this tree's
 * EPP in alternating order, REPS times, so both see the same machine load; ratios new / base are per repetition,
 * reported as median (min–max).
 *
 * The pods are one child process (this file with `pods`): a raw TCP server per address 127.1.x.y, all on one
 * port, that answers every GET /metrics with a fixed text (a ~0.4 KB vLLM-shaped one, or a real vLLM 0.32 capture
 * of ~50 KB with TEXT=vllm) reporting one running request, so no endpoint is idle (idle ones are scraped at 500 ms),
 * and /v1/models with 404.
 *
 * Env: NS (default "8,100,1000,5000"), TEXT (small | vllm, default small), WINDOW (s, default 10), SETTLE (least
 * warm-up before the windows, default 4 s; it goes on until the scrape rate is steady, up to SETTLE_MAX, 30 s), REPS (default 3), BASE_CLI (default /tmp/scrape-base/dist/cli.js; "" = new only),
 * EPP_FLAGS (extra flags for both), EPP_NODE_ARGS (Node flags for the EPPs: a CPU profile, a GC trace), ARMS (base,new by default; also alt = ALT_CLI, inproc, wK = this tree with K scrape workers, rare = this tree scraping every 30 s, pinned = this tree with --pin-threads), PODS_CPUS (rest | any: see podsPlacement). Bounded: every window ends by itself and every child is killed at the end.
 */
import { type ChildProcess, fork, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { allowedCpus, formatCpuList, pinThreadSync, planThreads } from "../../src/common/affinity.js";
import { loopbackEppFlags } from "../../src/local/stack.js";
import { freePorts } from "../../test/helpers/relay.js";
import { LeanExtProcClient, RequestTemplate } from "../extproc/lean-client.js";
import { CHUNK_BYTES, chatBody, HEADERS } from "../extproc/workload.js";

const CLK_TCK = 100;
/** EPP_NODE_ARGS: Node flags for the EPP processes only, e.g. "--cpu-prof --cpu-prof-dir=/tmp/p" or "--trace-gc". */
const NODE_ARGS = (process.env.EPP_NODE_ARGS ?? "").split(" ").filter((s) => s !== "");
/** Every child started, killed if this process is interrupted (their own `finally` does not run then). */
const children = new Set<ChildProcess>();
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.once(signal, () => {
    for (const c of children) c.kill("SIGKILL");
    process.exit(130);
  });

/** The i-th pod address (0-based): 127.1.0.1 … 127.1.0.250, 127.1.1.1, … (never .0 or .255). */
function podAddress(i: number): string {
  return `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

const SMALL_TEXT = [
  "# HELP vllm:num_requests_running Number of requests in model execution batches.",
  "# TYPE vllm:num_requests_running gauge",
  'vllm:num_requests_running{engine="0",model_name="m"} 1.0',
  "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
  "# TYPE vllm:num_requests_waiting gauge",
  'vllm:num_requests_waiting{engine="0",model_name="m"} 0.0',
  "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
  "# TYPE vllm:kv_cache_usage_perc gauge",
  'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.1',
  "",
].join("\n");

function podText(kind: string): string {
  if (kind === "small") return SMALL_TEXT;
  const text = readFileSync(
    fileURLToPath(new URL("../../test/fixtures/metrics/vllm-0.32/metrics-busy.txt", import.meta.url)),
    "utf8",
  );
  return text;
}

// ---------------------------------------------------------------------------------------------------------------
// The pods (child process)

async function runPods(count: number, kind: string): Promise<void> {
  const body = Buffer.from(podText(kind));
  const metrics = Buffer.concat([
    Buffer.from(
      `HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: ${body.length}\r\nkeep-alive: timeout=600\r\n\r\n`,
    ),
    body,
  ]);
  const notFound = Buffer.from("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
  let served = 0;
  const sockets = new Set<Socket>();
  const onConnection = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let pending = "";
    socket.on("data", (chunk: Buffer) => {
      pending += chunk.toString("latin1");
      for (;;) {
        const end = pending.indexOf("\r\n\r\n");
        if (end < 0) break;
        const isModels = pending.startsWith("GET /v1/models");
        pending = pending.slice(end + 4);
        if (isModels) socket.write(notFound);
        else {
          served++;
          socket.write(metrics);
        }
      }
      if (pending.length > 64 * 1024) socket.destroy();
    });
  };
  let servers: Server[] = [];
  let port = 0;
  for (let attempt = 0; attempt < 20 && port === 0; attempt++) {
    const candidate = 20_000 + Math.floor(Math.random() * 20_000);
    servers = [];
    try {
      for (let i = 0; i < count; i++) {
        const s = createServer(onConnection);
        servers.push(s);
        await new Promise<void>((resolve, reject) => {
          s.once("error", reject);
          s.listen(candidate, podAddress(i), () => {
            s.off("error", reject);
            resolve();
          });
        });
      }
      port = candidate;
    } catch {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    }
  }
  if (port === 0) throw new Error("no free shared port");
  process.on("message", (m: { op: string }) => {
    if (m.op === "count") process.send?.({ op: "count", served });
  });
  process.send?.({ op: "ready", port });
  // Bounded: the parent kills us; if it dies first, the IPC channel closes and so do we.
  process.on("disconnect", () => process.exit(0));
}

// ---------------------------------------------------------------------------------------------------------------
// The measurement (parent)

/** CPU seconds of a process (all threads), or of its main thread alone with `task`. */
function cpuSeconds(pid: number, task = false): number {
  const stat = readFileSync(task ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitHttp(url: string, what: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not yet
    }
    await sleep(100);
  }
  throw new Error(`${what} never answered ${url}`);
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

interface Sample {
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  intervalMs: number;
  cpuPct: number;
  /** The main thread's share: the event loop requests run on. */
  mainCpuPct: number;
  /** The pods process (it shares the machine: at thousands of pods it, not the EPP, may bound the rate). */
  podsCpuPct: number;
  cpuUsPerScrape: number;
  cpuUsPerEndpointSec: number;
}

class Pods {
  readonly #child: ChildProcess;
  readonly port: number;
  get pid(): number {
    return this.#child.pid!;
  }
  constructor(child: ChildProcess, port: number) {
    this.#child = child;
    this.port = port;
  }

  static async start(count: number, kind: string): Promise<Pods> {
    const child = fork(fileURLToPath(import.meta.url), ["pods", String(count), kind], {
      execArgv: process.execArgv,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    children.add(child);
    const port = await new Promise<number>((resolve, reject) => {
      child.once("message", (m: { op: string; port: number }) => resolve(m.port));
      child.once("exit", (code) => reject(new Error(`pods exited with ${code}`)));
    });
    return new Pods(child, port);
  }

  served(): Promise<number> {
    return new Promise((resolve) => {
      const on = (m: { op: string; served: number }) => {
        if (m.op !== "count") return;
        this.#child.off("message", on);
        resolve(m.served);
      };
      this.#child.on("message", on);
      this.#child.send({ op: "count" });
    });
  }

  stop(): void {
    this.#child.kill("SIGTERM");
  }
}

async function measure(
  cli: string,
  n: number,
  pods: Pods,
  dir: string,
  window: number,
  settle: number,
  settleMax: number,
  extra: readonly string[],
): Promise<Sample> {
  const resources = join(dir, `resources-${n}.yaml`);
  if (!existsSync(resources)) {
    const docs = [
      `apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: pool, namespace: default}\nspec:\n  selector: {matchLabels: {app: vllm}}\n  targetPorts: [{number: ${pods.port}}]\n`,
    ];
    for (let i = 0; i < n; i++)
      docs.push(
        `apiVersion: v1\nkind: Pod\nmetadata: {name: pod-${i}, namespace: default, labels: {app: vllm}}\nstatus:\n  podIP: ${podAddress(i)}\n  conditions: [{type: Ready, status: "True"}]\n`,
      );
    writeFileSync(resources, docs.join("---\n"));
  }
  const [grpc, health, metrics] = await freePorts(3);
  const child = spawn(
    process.execPath,
    [
      ...NODE_ARGS,
      cli,
      "epp",
      "--resources",
      resources,
      "--pool-name",
      "pool",
      ...loopbackEppFlags({ grpc: grpc!, health: health!, metrics: metrics! }),
      "--log-level",
      "warn",
      ...extra,
    ],
    // With EPP_NODE_ARGS (a profile, a GC trace) the EPP's stdout is shown: that is where V8 writes its traces.
    { stdio: ["ignore", NODE_ARGS.length > 0 ? "inherit" : "ignore", "inherit"] },
  );
  children.add(child);
  const client = new LeanExtProcClient({ port: grpc!, connections: 1, requestTimeoutMs: 10_000 });
  try {
    await waitHttp(`http://127.0.0.1:${metrics}/metrics`, "the EPP");
    const template = new RequestTemplate(HEADERS, chatBody(1024), { chunkBytes: CHUNK_BYTES });
    let id = 0;
    let errors = 0;
    // Warm-up: connections, JIT, the first scrape rounds. At thousands of pods on a busy machine the first round
    // alone can take seconds, so warm-up lasts until the scrape rate is steady (two consecutive one-second rates
    // within 10 % of each other, or the full rate), at least SETTLE and at most SETTLE_MAX seconds.
    const warmStart = performance.now();
    let lastServed = await pods.served();
    let lastRate = -1;
    for (;;) {
      const tick = performance.now() + 1000;
      while (performance.now() < tick) await client.process(0, template, id++).catch(() => errors++);
      const served = await pods.served();
      const rate = served - lastServed;
      lastServed = served;
      const waited = (performance.now() - warmStart) / 1000;
      const steady = rate >= 0.9 * n * 20 || (lastRate > 0 && Math.abs(rate - lastRate) <= 0.1 * lastRate);
      lastRate = rate;
      if ((waited >= settle && steady) || waited >= settleMax) break;
    }
    // Phase 1, no requests: what scraping alone costs the EPP, and the interval it achieves.
    const servedBefore = await pods.served();
    const cpuBefore = cpuSeconds(child.pid!);
    const mainBefore = cpuSeconds(child.pid!, true);
    const podsBefore = cpuSeconds(pods.pid);
    const started = performance.now();
    await sleep(window * 1000);
    const elapsed = (performance.now() - started) / 1000;
    const cpu = cpuSeconds(child.pid!) - cpuBefore;
    const mainCpu = cpuSeconds(child.pid!, true) - mainBefore;
    const podsCpu = cpuSeconds(pods.pid) - podsBefore;
    const served = (await pods.served()) - servedBefore;
    // Phase 2: sequential requests while the scraping goes on.
    errors = 0;
    const latencies: number[] = [];
    const until = performance.now() + window * 1000;
    while (performance.now() < until) {
      try {
        latencies.push(await client.process(0, template, id++));
      } catch {
        errors++;
      }
    }
    latencies.sort((a, b) => a - b);
    return {
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      requests: latencies.length,
      errors,
      intervalMs: served > 0 ? (1000 * elapsed * n) / served : Number.POSITIVE_INFINITY,
      cpuPct: (100 * cpu) / elapsed,
      mainCpuPct: (100 * mainCpu) / elapsed,
      podsCpuPct: (100 * podsCpu) / elapsed,
      cpuUsPerScrape: served > 0 ? (1e6 * cpu) / served : Number.NaN,
      cpuUsPerEndpointSec: (1e6 * cpu) / elapsed / n,
    };
  } finally {
    await client.close(1000);
    child.kill("SIGTERM");
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once("exit", r)));
    children.delete(child);
  }
}

/**
 * PODS_CPUS: where the pods process runs. "rest" keeps it off the CPU `--pin-threads` gives the request thread: the
 * pods stand in for model servers on other machines, and on this box they would otherwise take a share of that
 * core (≈ 20 % of one at 1,000 pods). The default is "rest" when an arm is `pinned`, else "any". Every arm of a run
 * sees the same placement.
 */
function podsPlacement(arms: readonly string[], pid: number): string {
  const mode = process.env.PODS_CPUS ?? (arms.includes("pinned") ? "rest" : "any");
  if (mode === "any") return "pods on any CPU";
  if (mode !== "rest") throw new Error(`PODS_CPUS must be rest or any, got ${mode}`);
  const plan = planThreads(allowedCpus());
  if (typeof plan === "string") throw new Error(`PODS_CPUS=rest: ${plan}`);
  for (const tid of readdirSync(`/proc/${pid}/task`).map(Number)) {
    const error = pinThreadSync(tid, plan.otherCpus);
    if (error !== undefined) throw new Error(`PODS_CPUS=rest: ${error}`);
  }
  return `pods on CPUs ${formatCpuList(plan.otherCpus)} (off the request CPU ${plan.requestCpu})`;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function spread(xs: readonly number[], digits = 2): string {
  if (xs.length === 0) return "–";
  return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

async function main(): Promise<void> {
  const ns = (process.env.NS ?? "8,100,1000,5000").split(",").map(Number);
  const kind = process.env.TEXT ?? "small";
  const window = Number(process.env.WINDOW ?? 10);
  const settle = Number(process.env.SETTLE ?? 4);
  const settleMax = Number(process.env.SETTLE_MAX ?? 30);
  const reps = Number(process.env.REPS ?? 3);
  const baseCli = process.env.BASE_CLI ?? "/tmp/scrape-base/dist/cli.js";
  const newCli = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
  const extra = (process.env.EPP_FLAGS ?? "").split(" ").filter((s) => s !== "");
  // ARMS: base (BASE_CLI), alt (ALT_CLI), new (this tree), inproc (this tree with --scrape-workers 0), wK (this tree with
  // --scrape-workers K), rare (this tree scraping every 30 s: N endpoints without the scraping).
  const arms = (process.env.ARMS ?? (baseCli === "" ? "new" : "base,new")).split(",");
  const impls: [string, string, string[]][] = arms.map((a) => {
    if (a === "base") return [a, baseCli, []];
    // A second baseline (ALT_CLI), e.g. an intermediate commit, to tell two changes apart in one run.
    if (a === "alt") {
      const alt = process.env.ALT_CLI;
      if (alt === undefined || alt === "") throw new Error("ARMS has alt: set ALT_CLI to a built dist/cli.js");
      return [a, alt, []];
    }
    if (a === "new") return [a, newCli, []];
    if (a === "inproc") return [a, newCli, ["--scrape-workers", "0"]];
    if (/^w[0-9]+$/.test(a)) return [a, newCli, ["--scrape-workers", a.slice(1)]];
    // The control: the same pool scraped every 30 s, so what remains is the cost of N endpoints without scraping.
    if (a === "rare") return [a, newCli, ["--refresh-metrics-interval", "30s"]];
    // The request thread alone on one CPU, every other thread on the rest (docs/design/model-servers.md §9).
    if (a === "pinned") return [a, newCli, ["--pin-threads"]];
    throw new Error(`unknown arm ${a}`);
  });
  const dir = mkdtempSync(join(tmpdir(), "sy-scrape-scale-"));
  const pods = await Pods.start(Math.max(...ns), kind);
  const podsCpus = podsPlacement(arms, pods.pid);
  process.stdout.write(
    `pods: ${Math.max(...ns)} on port ${pods.port}, text ${kind} (${podText(kind).length} B), ${podsCpus}; window ${window} s, ${reps} reps\n`,
  );
  const results = new Map<string, Sample[]>();
  try {
    for (let rep = 0; rep < reps; rep++) {
      for (const n of ns) {
        // Alternate which implementation goes first, so neither always follows the other's teardown.
        const order = rep % 2 === 0 ? impls : [...impls].reverse();
        for (const [name, cli, flags] of order) {
          const s = await measure(cli, n, pods, dir, window, settle, settleMax, [...extra, ...flags]);
          const key = `${name}/${n}`;
          results.set(key, [...(results.get(key) ?? []), s]);
          process.stdout.write(
            `rep ${rep + 1} N=${n} ${name}: p50 ${s.p50.toFixed(2)} ms p99 ${s.p99.toFixed(2)} ms (${s.requests} req, ${s.errors} err), ` +
              `interval ${s.intervalMs.toFixed(1)} ms, EPP CPU ${s.cpuPct.toFixed(1)} % (main thread ${s.mainCpuPct.toFixed(1)} %), pods ${s.podsCpuPct.toFixed(0)} %, ${s.cpuUsPerScrape.toFixed(1)} µs/scrape, ` +
              `${s.cpuUsPerEndpointSec.toFixed(0)} µs/endpoint/s\n`,
          );
        }
      }
    }
  } finally {
    pods.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const col = (xs: Sample[], f: (s: Sample) => number, d = 2) => spread(xs.map(f), d);
  process.stdout.write(
    "\n| N | EPP | p50 ms | p99 ms | interval ms | EPP CPU % | main thread CPU % | CPU µs / scrape | CPU µs / endpoint / s |\n|---|---|---|---|---|---|---|---|---|\n",
  );
  for (const n of ns)
    for (const [name] of impls) {
      const xs = results.get(`${name}/${n}`) ?? [];
      process.stdout.write(
        `| ${n} | ${name} | ${col(xs, (s) => s.p50)} | ${col(xs, (s) => s.p99)} | ${col(xs, (s) => s.intervalMs, 1)} | ` +
          `${col(xs, (s) => s.cpuPct, 0)} | ${col(xs, (s) => s.mainCpuPct, 0)} | ${col(xs, (s) => s.cpuUsPerScrape, 1)} | ${col(xs, (s) => s.cpuUsPerEndpointSec, 0)} |\n`,
      );
    }
  const [first] = impls;
  for (const [other] of impls.slice(1)) {
    process.stdout.write(`\n${other} / ${first![0]}, per repetition, median (min–max):\n`);
    for (const n of ns) {
      const b = results.get(`${first![0]}/${n}`) ?? [];
      const w = results.get(`${other}/${n}`) ?? [];
      const ratio = (f: (s: Sample) => number) => spread(w.map((s, i) => f(s) / f(b[i]!)));
      process.stdout.write(
        `N=${n}: p50 ${ratio((s) => s.p50)}, p99 ${ratio((s) => s.p99)}, interval ${ratio((s) => s.intervalMs)}, CPU/scrape ${ratio((s) => s.cpuUsPerScrape)}\n`,
      );
    }
  }
}

if (process.argv[2] === "pods") {
  runPods(Number(process.argv[3]), process.argv[4] ?? "small").catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
} else {
  main().catch((err) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
