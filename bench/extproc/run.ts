/**
 * `npm run bench:extproc`: the EPP's own overhead, side by side with a no-op ext_proc server in one run.
 *
 * A client process plays Envoy: one bidirectional stream per request (request_headers, body chunks with EoS), over
 * 4 HTTP/2 connections (like Envoy workers), and times each request from its first message to the last body
 * chunk coming back. The client is raw node:http2 with pre-encoded messages (./lean-client.ts), because a
 * grpc-js + protobufjs client costs more per 220 KB request than the no-op server does and would dominate the
 * latency measured; the servers run the compiled dist/ code (the script builds first). Servers run in child processes; their CPU is read with process.cpuUsage() around the
 * measured window, so "CPU µs per request" is the server's alone. Modes are interleaved (noop, noop-codec,
 * switchyard, then in reverse order, …) and each scenario is repeated; medians are reported, and ratios switchyard / each no-op:
 * `noop` decodes and encodes with proto-loader (a Node ext_proc server built the standard way), `noop-codec` with
 * switchyard's own codec (so that ratio is switchyard's logic alone).
 *
 * Scenarios:
 * - chat-1k: ~1 KB chat bodies, closed loop at concurrency 16 (server-bound: measures CPU per request);
 * - large-220k-c20 / c150: 220 KB prompts (GIE issue #2928's case) with 20 and 150 users, each of whom waits a
 *   simulated 1 s model-server time between requests — the load shape of GIE's test, where the EPP sees
 *   ~concurrency req/s and the question is how much latency it adds.
 *
 * `--gateway envoy` runs ./envoy.ts instead: switchyard behind a real Envoy against Envoy alone.
 *
 * Env: BENCH_SECONDS (default 8), BENCH_REPS (default 3), BENCH_QUICK=1 (2 s, 1 rep), BENCH_SCENARIOS (comma list,
 * default all), BENCH_PROFILE (directory for the servers' --cpu-prof output, default off), BENCH_OUT (JSON results
 * file, default none), BENCH_NODE_FLAGS (extra node flags for the servers, e.g. "--trace-gc", default none),
 * BENCH_MODES (comma list of servers to run, default all three; ratios need switchyard and a no-op; the in-process
 * logic measurement always runs switchyard), BENCH_BASELINE (another checkout of this repository, built with
 * `npm run build`, e.g. a `git worktree` of the commit before a change: adds a fourth server, `baseline`, that is
 * that checkout's own bench server on its own dist/, interleaved with the others, and the ratio switchyard /
 * baseline; default none).
 */
import { type ChildProcess, fork } from "node:child_process";
import { writeFileSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { fileURLToPath } from "node:url";
import { LeanExtProcClient, RequestTemplate } from "./lean-client.js";
import { CHUNK_BYTES, chatBody, HEADERS } from "./workload.js";

// `--gateway envoy`: switchyard behind a real Envoy against Envoy alone (./envoy.ts), instead of the scenarios below.
const gatewayAt = process.argv.indexOf("--gateway");
if (gatewayAt >= 0) {
  const gateway = process.argv[gatewayAt + 1];
  if (gateway !== "envoy") throw new Error(`--gateway: only "envoy" is supported here, got "${gateway}"`);
  const { runEnvoyBench } = await import("./envoy.js");
  await runEnvoyBench();
  process.exit(0);
}

const QUICK = process.env.BENCH_QUICK === "1";
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 2 : 8));
const REPS = Number(process.env.BENCH_REPS ?? (QUICK ? 1 : 3));
const CONNECTIONS = 4;
/** Interleaved in this order within every repetition (server.ts explains the two no-ops). */
const ALL_MODES = ["noop", "noop-codec", "switchyard"];
const listed = (process.env.BENCH_MODES ?? "")
  .split(",")
  .map((m) => m.trim())
  .filter(Boolean);
/** BENCH_BASELINE: the checkout whose switchyard runs as the `baseline` server (its own bench/extproc/server.ts). */
const BASELINE = process.env.BENCH_BASELINE ?? "";
const MODES: readonly string[] = [...(listed.length > 0 ? listed : ALL_MODES), ...(BASELINE ? ["baseline"] : [])];
for (const mode of MODES)
  if (!ALL_MODES.includes(mode) && mode !== "baseline")
    throw new Error(`BENCH_MODES: unknown server "${mode}" (${ALL_MODES.join(", ")})`);
/** A request still open after this is reset and counted as an error, so a stuck server cannot hang the run. */
const REQUEST_TIMEOUT_MS = 30_000;

interface Scenario {
  readonly name: string;
  readonly bodyBytes: number;
  readonly concurrency: number;
  /** Simulated model-server time between a user's requests (0 = closed loop at full speed). */
  readonly thinkMs: number;
}

const ALL_SCENARIOS: readonly Scenario[] = [
  { name: "chat-1k", bodyBytes: 1024, concurrency: 16, thinkMs: 0 },
  { name: "large-220k-c20", bodyBytes: 220 * 1024, concurrency: 20, thinkMs: 1000 },
  { name: "large-220k-c150", bodyBytes: 220 * 1024, concurrency: 150, thinkMs: 1000 },
];
const SCENARIOS = process.env.BENCH_SCENARIOS
  ? ALL_SCENARIOS.filter((s) => process.env.BENCH_SCENARIOS!.split(",").includes(s.name))
  : ALL_SCENARIOS;

interface Sample {
  mode: string;
  scenario: string;
  completed: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
  cpuMicrosPerRequest: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function ask<T>(child: ChildProcess, msg: object, key: string): Promise<T> {
  return new Promise((resolve) => {
    const onMsg = (m: Record<string, unknown>) => {
      if (key in m) {
        child.off("message", onMsg);
        resolve(m as T);
      }
    };
    child.on("message", onMsg);
    child.send(msg);
  });
}

async function startServer(mode: string): Promise<{ child: ChildProcess; port: number }> {
  // The baseline is the other checkout's own server file on its own dist/, run as its switchyard mode.
  const serverPath =
    mode === "baseline"
      ? resolvePath(BASELINE, "bench/extproc/server.ts")
      : fileURLToPath(new URL("./server.ts", import.meta.url));
  const profile = process.env.BENCH_PROFILE ? ["--cpu-prof", "--cpu-prof-dir", process.env.BENCH_PROFILE] : [];
  const child = fork(serverPath, [mode === "baseline" ? "switchyard" : mode], {
    // switchyard turns V8's allocation-site pretenuring off itself (startEpp); the no-ops get the same setting so
    // the comparison is like for like (it does not change their numbers measurably).
    execArgv: [
      "--import",
      "tsx",
      "--no-allocation-site-pretenuring",
      ...profile,
      ...(process.env.BENCH_NODE_FLAGS ?? "").split(" ").filter(Boolean),
    ],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const { port } = await new Promise<{ port: number }>((resolve, reject) => {
    child.once("message", (m) => resolve(m as { port: number }));
    child.once("exit", (code) => reject(new Error(`${mode} server exited with ${code}`)));
  });
  return { child, port };
}

async function stopServer(child: ChildProcess): Promise<void> {
  child.send({ cmd: "stop" });
  await new Promise((r) => child.once("exit", r));
}

/**
 * switchyard's per-request CPU without gRPC/HTTP2/protobuf (server.ts measureLogic), median of 3 rounds; with
 * BENCH_BASELINE the baseline's too, its rounds alternating with switchyard's in two live processes.
 */
async function measureLogic(
  bodyBytes: number,
  requests: number,
): Promise<{ switchyard: number; baseline?: number; ratios?: number[] }> {
  const modes = BASELINE ? ["switchyard", "baseline"] : ["switchyard"];
  const children = await Promise.all(modes.map((m) => startServer(m)));
  const rounds: number[][] = modes.map(() => []);
  for (let i = 0; i < 3; i++)
    // Alternating which process goes first, so the order within a round favours neither.
    for (const [k, { child }] of i % 2 === 0 ? [...children.entries()] : [...children.entries()].reverse()) {
      const msg = { cmd: "logic", bodyBytes, requests };
      rounds[k]!.push((await ask<{ logicMicros: number }>(child, msg, "logicMicros")).logicMicros);
    }
  await Promise.all(children.map(({ child }) => stopServer(child)));
  return {
    switchyard: median(rounds[0]!),
    ...(BASELINE ? { baseline: median(rounds[1]!), ratios: rounds[0]!.map((x, i) => x / rounds[1]![i]!) } : {}),
  };
}

async function runOnce(mode: string, scenario: Scenario): Promise<Sample> {
  const { child, port } = await startServer(mode);
  const client = new LeanExtProcClient({ port, connections: CONNECTIONS, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  // Encoded once per scenario: per request only the fixed-width x-request-id digits are patched in.
  const template = new RequestTemplate(HEADERS, chatBody(scenario.bodyBytes), { chunkBytes: CHUNK_BYTES });
  let id = 0;
  const latencies: number[] = [];
  let errors = 0;
  let measuring = false;
  let stop = false;
  const user = async (u: number) => {
    // Stagger users so think-time scenarios do not arrive in lockstep.
    if (scenario.thinkMs > 0) await new Promise((r) => setTimeout(r, (u * scenario.thinkMs) / scenario.concurrency));
    while (!stop) {
      try {
        const lat = await client.process(u, template, id++);
        if (measuring) latencies.push(lat);
      } catch {
        if (measuring) errors++;
      }
      if (scenario.thinkMs > 0 && !stop) await new Promise((r) => setTimeout(r, scenario.thinkMs));
    }
  };
  const users = Array.from({ length: scenario.concurrency }, (_, u) => user(u));
  await new Promise((r) => setTimeout(r, scenario.thinkMs > 0 ? scenario.thinkMs + 1000 : 1000)); // warm-up
  await ask(child, { cmd: "cpu-start" }, "ok");
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  const { cpuMicros } = await ask<{ cpuMicros: number }>(child, { cmd: "cpu" }, "cpuMicros");
  stop = true;
  await Promise.all(users);
  await client.close();
  await stopServer(child);
  latencies.sort((a, b) => a - b);
  return {
    mode,
    scenario: scenario.name,
    completed: latencies.length,
    errors,
    rps: latencies.length / elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuMicrosPerRequest: latencies.length > 0 ? cpuMicros / latencies.length : Number.NaN,
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

const results: Sample[] = [];
for (const scenario of SCENARIOS) {
  for (let rep = 0; rep < REPS; rep++) {
    // Every other repetition runs the servers in reverse order, so a drift in the box's load during a repetition
    // does not always favour the same server.
    for (const mode of rep % 2 === 0 ? MODES : [...MODES].reverse()) {
      const s = await runOnce(mode, scenario);
      results.push(s);
      process.stdout.write(
        `${scenario.name.padEnd(16)} rep ${rep + 1}/${REPS} ${mode.padEnd(10)} ${s.completed} req ${s.rps.toFixed(0)} req/s p50 ${s.p50.toFixed(2)} ms p99 ${s.p99.toFixed(2)} ms cpu ${s.cpuMicrosPerRequest.toFixed(0)} µs/req errors ${s.errors}\n`,
      );
    }
  }
}

const lines = [
  `# ext_proc overhead: switchyard vs a no-op ext_proc server (${new Date().toISOString()}, node ${process.version}, ${SECONDS} s × ${REPS} reps, medians)`,
  "",
  "| scenario | mode | req/s | p50 ms | p99 ms | server CPU µs/req | errors |",
  "|---|---|---|---|---|---|---|",
];
const summary: Record<string, unknown> = {};
for (const scenario of SCENARIOS) {
  const row: Record<string, Record<string, number>> = {};
  for (const mode of MODES) {
    const xs = results.filter((r) => r.mode === mode && r.scenario === scenario.name);
    row[mode] = {
      rps: median(xs.map((x) => x.rps)),
      p50: median(xs.map((x) => x.p50)),
      p99: median(xs.map((x) => x.p99)),
      cpu: median(xs.map((x) => x.cpuMicrosPerRequest)),
      errors: xs.reduce((a, x) => a + x.errors, 0),
    };
    const r = row[mode]!;
    lines.push(
      `| ${scenario.name} | ${mode} | ${r.rps!.toFixed(0)} | ${r.p50!.toFixed(2)} | ${r.p99!.toFixed(2)} | ${r.cpu!.toFixed(0)} | ${r.errors} |`,
    );
  }
  const s = row.switchyard;
  const ratios: Record<string, Record<string, number>> = {};
  for (const base of ["noop", "noop-codec", "baseline"]) {
    const n = row[base];
    if (s === undefined || n === undefined) continue;
    ratios[base] = { cpu: s.cpu! / n.cpu!, p50: s.p50! / n.p50!, p99: s.p99! / n.p99!, rps: s.rps! / n.rps! };
    const r = ratios[base]!;
    lines.push(
      `| ${scenario.name} | **switchyard / ${base}** | ${r.rps!.toFixed(2)} | ${r.p50!.toFixed(2)} | ${r.p99!.toFixed(2)} | ${r.cpu!.toFixed(2)} | |`,
    );
  }
  // Paired per repetition (the two servers ran back to back), so the spread shows the box's noise on the ratio.
  const spread: Record<string, number[]> = {};
  for (const base of ["noop", "baseline"]) {
    if (!MODES.includes(base) || !MODES.includes("switchyard")) continue;
    const pick = (mode: string) => results.filter((r) => r.mode === mode && r.scenario === scenario.name);
    const [mine, theirs] = [pick("switchyard"), pick(base)];
    spread[base] = mine.map((m, i) => m.cpuMicrosPerRequest / theirs[i]!.cpuMicrosPerRequest);
    const xs = [...spread[base]!].sort((a, b) => a - b);
    lines.push(
      `| ${scenario.name} | CPU switchyard / ${base} per repetition | ${xs.map((x) => x.toFixed(2)).join(", ")} (min ${xs[0]!.toFixed(2)}, median ${median(xs).toFixed(2)}, max ${xs[xs.length - 1]!.toFixed(2)}) | | | | |`,
    );
  }
  summary[scenario.name] = { ...row, ratio: ratios, cpuRatioPerRep: spread };
}
// switchyard's own share, measured without the transport both servers pay for.
const logic = {
  "chat-1k": await measureLogic(1024, QUICK ? 20_000 : 100_000),
  "large-220k": await measureLogic(220 * 1024, QUICK ? 500 : 3_000),
};
summary.logicMicrosPerRequest = logic;
lines.push(
  "",
  `switchyard's own work per request without gRPC, HTTP/2 and protobuf (stream state machine, parsing, admission, scheduling over 8 endpoints, metrics; in-process, median of 3): **${logic["chat-1k"].switchyard.toFixed(1)} µs** for 1 KB chat, **${logic["large-220k"].switchyard.toFixed(0)} µs** for 220 KB.`,
);
if (BASELINE)
  lines.push(
    `The baseline's, measured alternately: ${logic["chat-1k"].baseline!.toFixed(1)} µs and ${logic["large-220k"].baseline!.toFixed(0)} µs (switchyard / baseline per round: 1 KB ${logic["chat-1k"].ratios!.map((r) => r.toFixed(2)).join(", ")}; 220 KB ${logic["large-220k"].ratios!.map((r) => r.toFixed(2)).join(", ")}).`,
  );
const report = `${lines.join("\n")}\n`;
process.stdout.write(`\n${report}`);
const out = process.env.BENCH_OUT;
if (out) writeFileSync(out, JSON.stringify({ results, summary, report }, null, 2));
