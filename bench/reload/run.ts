/**
 * `npx tsx bench/reload/run.ts`: how long a `--resources` reload stalls the request path, old build against new
 * build, side by side in one run (docs/security.md, "Resource files").
 *
 * For each build (a checkout with a compiled dist/: `RELOAD_BASE` for the baseline, this checkout for the new code)
 * and each pool size, the bench starts the real EPP (`node dist/cli.js epp --resources <file>`, the loopback flags
 * of src/local/stack.ts) with bench/reload/probe.mjs preloaded to read the EPP's own event-loop delay, and plays
 * Envoy with one connection sending ext_proc requests back to back (bench/extproc/lean-client.ts), so every stall
 * of the EPP's event loop shows up as one slow request. It measures a quiet window first, then rewrites the
 * resources file `RELOAD_COUNT` times (write a temporary file, rename over: the atomic replace editors and the
 * kubelet do), alternating between two pod sets that share no pod, so every reload removes N endpoints and adds N
 * (the worst case). A reload window runs from the rename until the EPP logs "endpoints changed" plus
 * `RELOAD_TAIL_MS`, to catch what follows the swap (scrape targets starting, GC).
 *
 * Pods are distinct loopback addresses (127.x.y.z) on one port, all answered by one small model-server process
 * (./pods.mjs, listening on 0.0.0.0 for the bench's duration): the EPP scrapes every pod for real, so starting and
 * stopping N scrape targets is part of what a reload costs. Scrapes run every `RELOAD_SCRAPE_INTERVAL` (default
 * 30s, /v1/models reads off) rather than the default 50 ms: one Node thread cannot scrape 20k pods every 50 ms
 * whatever a reload does, and the quiet window must measure the EPP, not a saturated scrape loop. (Pods that
 * refuse connections are no cheaper: failures are retried every 2 s at most, 10k connects a second at 20k pods.)
 *
 * Builds are interleaved (base, new, new, base, …) per size and repetition; ratios new/base are taken per
 * repetition and reported as median and min–max.
 *
 * RELOAD_SCRAPE=off runs the EPP without its scraper (./launch.mjs: startEpp with `scrape: false`), which measures
 * the reload path alone: file source, parser thread, datastore, endpoint listeners.
 *
 * Env: RELOAD_BASE (baseline checkout, default /tmp/reload-base), RELOAD_NEW (default this checkout), RELOAD_SIZES
 * (default 2000,10000,20000), RELOAD_START_TIMEOUT_MS (default 300000), RELOAD_REPS (default 2), RELOAD_COUNT (reloads per trial, default 3), RELOAD_IDLE_MS
 * (quiet window, default 3000), RELOAD_TAIL_MS (default 1000), RELOAD_SCRAPE_INTERVAL (default 30s), RELOAD_OUT (JSON results file), RELOAD_PROFILE
 * (directory: run the EPPs with --cpu-prof there), RELOAD_BUILDS (comma list of base,new; default both).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LeanExtProcClient, RequestTemplate } from "../extproc/lean-client.js";
import { CHUNK_BYTES, chatBody, HEADERS } from "../extproc/workload.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const BUILDS: Record<string, string> = {
  base: env("RELOAD_BASE", "/tmp/reload-base"),
  new: env("RELOAD_NEW", join(HERE, "..", "..")),
};
const BUILD_NAMES = env("RELOAD_BUILDS", "base,new").split(",");
const SIZES = env("RELOAD_SIZES", "2000,10000,20000").split(",").map(Number);
const REPS = Number(env("RELOAD_REPS", "2"));
const RELOADS = Number(env("RELOAD_COUNT", "3"));
const IDLE_MS = Number(env("RELOAD_IDLE_MS", "3000"));
const TAIL_MS = Number(env("RELOAD_TAIL_MS", "1000"));
const PROFILE = process.env.RELOAD_PROFILE;
const SCRAPE_INTERVAL = env("RELOAD_SCRAPE_INTERVAL", "30s");
/** "off": the EPP runs without its metrics scraper (./launch.mjs), to measure the reload path alone. */
const SCRAPE = env("RELOAD_SCRAPE", "on");
/** A reload not applied within this long is recorded as such and the trial moves on (the bench always ends). */
const APPLY_TIMEOUT_MS = 120_000;
const REQUEST_TIMEOUT_MS = 60_000;
/** An EPP that does not serve 200 requests within this long after start is recorded as failed (RELOAD_START_TIMEOUT_MS). */
const START_TIMEOUT_MS = Number(env("RELOAD_START_TIMEOUT_MS", "300000"));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** N ready pods named `<set>-<i>` on distinct loopback addresses; sets "a" and "b" share no pod and no address. */
function manifest(n: number, set: "a" | "b", port: number): string {
  const docs = [
    `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool, namespace: default}
spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: ${port}}]`,
  ];
  const second = set === "a" ? 1 : 101;
  for (let i = 0; i < n; i++) {
    const ip = `127.${second + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    docs.push(`apiVersion: v1
kind: Pod
metadata: {name: ${set}-${i}, namespace: default, labels: {app: vllm}}
status:
  podIP: ${ip}
  conditions: [{type: Ready, status: "True"}]`);
  }
  return `${docs.join("\n---\n")}\n`;
}

interface Epp {
  readonly child: ChildProcess;
  readonly grpcPort: number;
  /** Resolves with the `total` of the next "endpoints changed" log line. */
  nextChange(): Promise<number>;
  probe(cmd: "reset" | "read"): Promise<ProbeRead>;
  stop(): Promise<void>;
}

interface ProbeRead {
  /** Event-loop delay (wall clock), ms. */
  readonly maxMs: number;
  readonly p99Ms: number;
  readonly meanMs: number;
  /** The longest main-thread CPU time between two 1 ms probe ticks, ms (Linux; NaN elsewhere). */
  readonly cpuGapMaxMs: number;
  /** Its 99.9th percentile over the window's ticks: comparable across windows of different lengths. */
  readonly cpuGapP999Ms: number;
  readonly worstGap: { readonly cpuMs: number; readonly fromUs: number; readonly toUs: number };
}

async function startEpp(root: string, file: string, label: string): Promise<Epp> {
  const [grpc, health, metrics] = [await freePort(), await freePort(), await freePort()];
  // One directory per EPP: the main thread and the parser worker each write a profile.
  const profile = PROFILE ? ["--cpu-prof", "--cpu-prof-dir", join(PROFILE, label)] : [];
  const child = spawn(
    process.execPath,
    [
      "--import",
      join(HERE, "probe.mjs"),
      ...profile,
      ...(SCRAPE === "off" ? [join(HERE, "launch.mjs"), root] : [join(root, "dist", "cli.js"), "epp"]),
      "--resources",
      file,
      "--pool-name",
      "pool",
      "--secure-serving=false",
      "--host",
      "127.0.0.1",
      "--grpc-port",
      String(grpc),
      "--grpc-health-port",
      String(health),
      "--metrics-port",
      String(metrics),
      "--log-format",
      "json",
      "--refresh-metrics-interval",
      SCRAPE_INTERVAL,
      "--served-models-refresh-interval",
      "0",
    ],
    { stdio: ["ignore", "pipe", "pipe", "ipc"], cwd: root },
  );
  const changes: ((total: number) => void)[] = [];
  const probes: ((r: ProbeRead) => void)[] = [];
  let buf = "";
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    buf += chunk;
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
      if (!line.startsWith("{")) continue;
      let o: { msg?: string; total?: number };
      try {
        o = JSON.parse(line);
      } catch {
        continue;
      }
      if (o.msg === "endpoints changed" && typeof o.total === "number") changes.shift()?.(o.total);
    }
  });
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (s: string) => process.stderr.write(`[${label}] ${s}`));
  child.on("message", (m: { probe?: string } & ProbeRead) => {
    if (m?.probe === "read" || m?.probe === "reset") probes.shift()?.(m);
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const epp: Epp = {
    child,
    grpcPort: grpc,
    nextChange: () => new Promise<number>((r) => changes.push(r)),
    probe: (cmd) =>
      new Promise<ProbeRead>((r) => {
        probes.push(r);
        child.send({ probe: cmd });
      }),
    async stop() {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
  return epp;
}

interface Request {
  readonly start: number;
  readonly ms: number;
}

interface Window {
  /** The slowest request overlapping the window, ms. */
  readonly worstMs: number;
  readonly p99Ms: number;
  /** Event-loop delay max inside the EPP (wall clock), ms. */
  readonly eldMaxMs: number;
  /** The longest stretch of main-thread CPU without a timer tick, ms: the stall the EPP itself caused. */
  readonly cpuGapMs: number;
  /**
   * 99.9th percentile of those stretches (a max grows with the window's length; this does not). JSON only: on a
   * box so loaded that the 1 ms timer ticks only ~100 times a second it equals the max.
   */
  readonly cpuGapP999Ms: number;
  /** From the rename to the "endpoints changed" log line, ms (0 for the quiet window). */
  readonly applyMs: number;
  readonly requests: number;
}

interface Trial {
  readonly build: string;
  readonly size: number;
  readonly rep: number;
  readonly idle: Window;
  readonly reloads: Window[];
  readonly errors: number;
}

function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

const median = (xs: readonly number[]) => percentile(xs, 50);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts ./pods.mjs; resolves with its port. */
async function startPods(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [join(HERE, "pods.mjs")], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`pods.mjs exited with ${code}`)));
    child.stdout?.once("data", (d: Buffer) => resolve((JSON.parse(String(d)) as { port: number }).port));
  });
  return { child, port };
}

async function trial(build: string, size: number, rep: number, podPort: number): Promise<Trial> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-reload-"));
  const file = join(dir, "resources.yaml");
  const texts = { a: manifest(size, "a", podPort), b: manifest(size, "b", podPort) };
  writeFileSync(file, texts.a);
  const epp = await startEpp(BUILDS[build]!, file, `${build}-${size}-${rep}`);
  const client = new LeanExtProcClient({ port: epp.grpcPort, connections: 1, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  const template = new RequestTemplate(HEADERS, chatBody(1000), { chunkBytes: CHUNK_BYTES });
  const requests: Request[] = [];
  let errors = 0;
  let stop = false;
  let id = 0;
  let ok = 0;
  const loop = (async () => {
    while (!stop) {
      const start = performance.now();
      try {
        const ms = await client.process(0, template, id++);
        requests.push({ start, ms });
        ok++;
      } catch {
        if (ok > 0) errors++;
        else await sleep(100); // not serving yet
      }
    }
  })();
  try {
    const up = Date.now();
    while (ok < 200) {
      if (Date.now() - up > START_TIMEOUT_MS)
        throw new Error(`${build} ${size}: the EPP did not serve within ${START_TIMEOUT_MS} ms`);
      await sleep(100);
    }
    await sleep(1000); // warm-up
    const window = async (body: () => Promise<number>) => {
      await epp.probe("reset");
      const from = performance.now();
      const applyMs = await body();
      const to = performance.now();
      const eld = await epp.probe("read");
      // With RELOAD_PROFILE: where to look in the EPP's profile (the gap's span, on the profile's clock).
      if (PROFILE) process.stderr.write(`  worst CPU gap: ${JSON.stringify(eld.worstGap)}\n`);
      const inside = requests.filter((r) => r.start + r.ms >= from && r.start <= to).map((r) => r.ms);
      return {
        worstMs: Math.max(0, ...inside),
        p99Ms: percentile(inside, 99),
        eldMaxMs: eld.maxMs,
        cpuGapMs: eld.cpuGapMaxMs,
        cpuGapP999Ms: eld.cpuGapP999Ms,
        applyMs,
        requests: inside.length,
      };
    };
    const idle = await window(async () => {
      await sleep(IDLE_MS);
      return 0;
    });
    const reloads: Trial["reloads"] = [];
    for (let k = 0; k < RELOADS; k++) {
      const set = k % 2 === 0 ? "b" : "a";
      reloads.push(
        await window(async () => {
          const changed = epp.nextChange();
          const t0 = performance.now();
          writeFileSync(`${file}.tmp`, texts[set]);
          renameSync(`${file}.tmp`, file);
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<number>((r) => {
            timer = setTimeout(() => r(-1), APPLY_TIMEOUT_MS);
          });
          // Cleared once settled: a pending 2-minute timer would keep the bench alive after its summary.
          const total = await Promise.race([changed, timeout]).finally(() => clearTimeout(timer));
          const applyMs = performance.now() - t0;
          if (total !== size) process.stderr.write(`  ${build} ${size}: reload ${k} applied ${total} endpoints\n`);
          await sleep(TAIL_MS);
          return applyMs;
        }),
      );
    }
    return { build, size, rep, idle, reloads, errors };
  } finally {
    stop = true;
    await loop;
    await client.close(1000);
    await epp.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");
const range = (xs: readonly number[], f = f1) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;

const trials: Trial[] = [];
const failures: { build: string; size: number; rep: number; error: string }[] = [];
const pods = await startPods();
for (let rep = 0; rep < REPS; rep++) {
  for (const size of SIZES) {
    const order = rep % 2 === 0 ? BUILD_NAMES : [...BUILD_NAMES].reverse();
    for (const build of order) {
      let t: Trial;
      try {
        t = await trial(build, size, rep, pods.port);
      } catch (err) {
        // Recorded and left out of the tables: one build failing to start must not lose the rest of the run.
        process.stderr.write(`${build} ${size} rep ${rep}: FAILED: ${(err as Error).message}\n`);
        failures.push({ build, size, rep, error: (err as Error).message });
        continue;
      }
      trials.push(t);
      const list = (key: keyof Window) => t.reloads.map((r) => f1(r[key])).join(", ");
      process.stderr.write(
        `${build} ${size} rep ${rep}: quiet: worst ${f1(t.idle.worstMs)} ms, p99 ${f1(t.idle.p99Ms)}, ELD ${f1(t.idle.eldMaxMs)}, CPU gap ${f1(t.idle.cpuGapMs)}; reloads: worst ${list("worstMs")} ms, p99 ${list("p99Ms")}, ELD ${list("eldMaxMs")}, CPU gap ${list("cpuGapMs")}, applied after ${list("applyMs")} ms; errors ${t.errors}\n`,
      );
    }
  }
}

pods.child.kill("SIGTERM");

// Summary: per size and build, each measure as median and range over every reload of every repetition; the ratio
// new/base per repetition (median of that repetition's reloads), then median and range over repetitions.
const lines = [
  "| pods | build | quiet: worst req ms | quiet: p99 req ms | quiet: CPU gap ms | reload: worst req ms | reload: p99 req ms | reload: ELD max ms | reload: CPU gap ms | applied after ms |",
  "|---|---|---|---|---|---|---|---|---|---|",
];
const ratioLines = [
  "| pods | new/base worst req | new/base p99 req | new/base ELD max | new/base CPU gap |",
  "|---|---|---|---|---|",
];
const cellOf = (xs: number[], f = f1) => `${f(median(xs))} (${range(xs, f)})`;
for (const size of SIZES) {
  for (const build of BUILD_NAMES) {
    const ts = trials.filter((t) => t.size === size && t.build === build);
    if (ts.length === 0) continue;
    const rs = ts.flatMap((t) => t.reloads);
    const col = (key: keyof Window) => cellOf(rs.map((r) => r[key]));
    lines.push(
      `| ${size} | ${build} | ${cellOf(ts.map((t) => t.idle.worstMs))} | ${cellOf(ts.map((t) => t.idle.p99Ms))} | ${cellOf(ts.map((t) => t.idle.cpuGapMs))} | ${col("worstMs")} | ${col("p99Ms")} | ${col("eldMaxMs")} | ${col("cpuGapMs")} | ${f1(median(rs.map((r) => r.applyMs)))} |`,
    );
  }
  if (BUILD_NAMES.includes("base") && BUILD_NAMES.includes("new")) {
    const per = (key: keyof Window) =>
      Array.from({ length: REPS }, (_, rep) => {
        const of = (b: string) => {
          const t = trials.find((x) => x.size === size && x.build === b && x.rep === rep);
          return t === undefined ? Number.NaN : median(t.reloads.map((r) => r[key]));
        };
        return of("new") / of("base");
      }).filter(Number.isFinite);
    ratioLines.push(
      `| ${size} | ${cellOf(per("worstMs"), f2)} | ${cellOf(per("p99Ms"), f2)} | ${cellOf(per("eldMaxMs"), f2)} | ${cellOf(per("cpuGapMs"), f2)} |`,
    );
  }
}
const failed = failures.map((f) => `- ${f.build} ${f.size} pods, rep ${f.rep}: ${f.error}`).join("\n");
const summary = `${lines.join("\n")}\n\n${ratioLines.join("\n")}\n${failed === "" ? "" : `\nFailed trials:\n${failed}\n`}`;
process.stdout.write(summary);
if (process.env.RELOAD_OUT)
  writeFileSync(process.env.RELOAD_OUT, JSON.stringify({ trials, failures, summary }, null, 2));
