/**
 * `npm run bench:extproc -- --gateway envoy`: what switchyard adds behind a real Envoy, against Envoy alone.
 *
 * Three Envoys on the shipped bootstrap (src/local/envoy.ts) in front of the same simulated pods: `sy` routes
 * through the switchyard EPP (ext_proc, full duplex both ways), `rr` and `lr` are Envoy alone (no ext_proc filter,
 * Envoy's ROUND_ROBIN / LEAST_REQUEST over the pods). One load (at most C in flight, ~1 KB chat requests,
 * one output token, so the pods answer in about a millisecond and the front door's cost shows) runs through each
 * mode in turn, interleaved, repeated, at the same paced rate for every mode. Per stage: client-side latency p50/p99, and the CPU of Envoy and of the EPP
 * process read from /proc around the window, per request. Reported: medians over repetitions with min–max, the
 * latency switchyard adds over each baseline, and the EPP's CPU per request relative to Envoy's own in the same
 * stage.
 *
 * Env: BENCH_SECONDS (stage length, default 10), BENCH_REPS (default 3), BENCH_CONCURRENCY (default 16),
 * BENCH_RATE (requests/s offered to every mode, default 400; 0 = closed loop at full speed),
 * BENCH_OUT (JSON results file, default none). Bounded: REPS × 3 stages of BENCH_SECONDS plus start-up.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { findTool } from "../../src/common/tools.js";
import { type EnvoyConfigOptions, type EnvoyProcess, startEnvoy } from "../../src/local/envoy.js";
import { loopbackEppFlags } from "../../src/local/stack.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const REPS = Number(process.env.BENCH_REPS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
/** Offered load in requests/s, the same for every mode (paced arrivals); 0 = closed loop at full speed. */
const RATE = Number(process.env.BENCH_RATE ?? 400);
const PODS = ["127.0.78.1", "127.0.78.2"];
const CLK_TCK = 100;
const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** utime + stime of a process, in microseconds. */
function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) / CLK_TCK) * 1e6;
}

function spawnCli(args: string[], log: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      writeFileSync(log, out);
      if (/listening/.test(out)) {
        child.stdout!.off("data", onData);
        resolve(child);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.once("exit", (code) => reject(new Error(`${args[0]} exited (${code}):\n${out}`)));
  });
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Stage {
  mode: string;
  rep: number;
  requests: number;
  errors: number;
  p50: number;
  p99: number;
  envoyCpuPerReq: number;
  eppCpuPerReq: number;
}

async function load(url: string): Promise<{ latencies: number[]; errors: number }> {
  const agent = new Agent({ connections: CONCURRENCY, keepAliveTimeout: 30_000 });
  const body = JSON.stringify({
    model: "base",
    messages: [{ role: "user", content: "x".repeat(1000) }],
    max_tokens: 1,
  });
  const latencies: number[] = [];
  let errors = 0;
  const end = Date.now() + SECONDS * 1000;
  const interval = RATE > 0 ? 1000 / RATE : 0;
  let nextSlot = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < end) {
        if (interval > 0) {
          // Paced: each request takes the next arrival slot; a worker that falls behind sends at once.
          const slot = nextSlot;
          nextSlot += interval;
          const wait = slot - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          if (Date.now() >= end) break;
        }
        const t0 = performance.now();
        try {
          const r = await request(`${url}/v1/chat/completions`, {
            method: "POST",
            body,
            headers: { "content-type": "application/json" },
            dispatcher: agent,
            headersTimeout: 30_000,
            bodyTimeout: 30_000,
          });
          await r.body.text();
          if (r.statusCode === 200) latencies.push(performance.now() - t0);
          else errors++;
        } catch {
          errors++;
        }
      }
    }),
  );
  await agent.close();
  return { latencies: latencies.sort((a, b) => a - b), errors };
}

export async function runEnvoyBench(): Promise<void> {
  const binary = findTool("envoy");
  if (binary === undefined) throw new Error("Envoy not found: npm run setup:tools -- envoy");
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-envoy-"));
  mkdirSync(join(dir, "logs"));
  const children: ChildProcess[] = [];
  const envoys: EnvoyProcess[] = [];
  try {
    const simPort = await freePort();
    for (const [i, address] of PODS.entries()) {
      children.push(
        await spawnCli(
          [
            "sim",
            ...["--model", "base", "--host", address, "--port", String(simPort), "--max-num-seqs", "256"],
            ...["--inter-token-latency", "0s", "--prefill-overhead", "0s", "--prefill-time-per-token", "0s"],
          ],
          join(dir, "logs", `sim-${i}.log`),
        ),
      );
    }
    const resources = join(dir, "resources.yaml");
    writeFileSync(
      resources,
      [
        `apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool, namespace: default}
spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: ${simPort}}]`,
        ...PODS.map(
          (ip, i) => `apiVersion: v1
kind: Pod
metadata: {name: pod-${i}, namespace: default, labels: {app: vllm}}
status: {podIP: ${ip}, conditions: [{type: Ready, status: "True"}]}`,
        ),
      ].join("\n---\n"),
    );
    const grpcPort = await freePort();
    const epp = await spawnCli(
      [
        "epp",
        ...["--resources", resources, "--pool-name", "pool"],
        ...loopbackEppFlags({ grpc: grpcPort, health: 0, metrics: 0 }),
      ],
      join(dir, "logs", "epp.log"),
    );
    children.push(epp);
    const endpoints = PODS.map((ip) => `${ip}:${simPort}`);
    const modes: Record<string, Partial<EnvoyConfigOptions>> = {
      sy: { eppPort: grpcPort },
      rr: { eppPort: grpcPort, baseline: { policy: "ROUND_ROBIN", endpoints } },
      lr: { eppPort: grpcPort, baseline: { policy: "LEAST_REQUEST", endpoints } },
    };
    const byMode = new Map<string, EnvoyProcess>();
    for (const [mode, config] of Object.entries(modes)) {
      const e = await startEnvoy({
        binary,
        configFile: join(dir, `envoy-${mode}.yaml`),
        logFile: join(dir, "logs", `envoy-${mode}.log`),
        concurrency: 2,
        config: {
          listenPort: await freePort(),
          adminPort: await freePort(),
          accessLog: "/dev/null",
          eppPort: grpcPort,
          ...config,
        },
      });
      envoys.push(e);
      byMode.set(mode, e);
    }
    // Warm-up: JIT, connection pools, the EPP's first scrapes.
    for (const e of envoys) await load(e.url).catch(() => undefined);

    const stages: Stage[] = [];
    for (let rep = 1; rep <= REPS; rep++) {
      for (const [mode, e] of byMode) {
        const envoy0 = cpuMicros(e.pid);
        const epp0 = cpuMicros(epp.pid!);
        const { latencies, errors } = await load(e.url);
        const n = latencies.length + errors;
        const stage: Stage = {
          mode,
          rep,
          requests: latencies.length,
          errors,
          p50: pct(latencies, 50),
          p99: pct(latencies, 99),
          envoyCpuPerReq: (cpuMicros(e.pid) - envoy0) / n,
          eppCpuPerReq: (cpuMicros(epp.pid!) - epp0) / n,
        };
        stages.push(stage);
        process.stdout.write(
          `${mode} rep ${rep}: ${stage.requests} ok, ${errors} errors, p50 ${stage.p50.toFixed(2)} ms, p99 ${stage.p99.toFixed(2)} ms, Envoy ${stage.envoyCpuPerReq.toFixed(0)} µs/req, EPP ${stage.eppCpuPerReq.toFixed(0)} µs/req\n`,
        );
      }
    }
    const of = (mode: string) => stages.filter((s) => s.mode === mode);
    const spread = (xs: number[]) =>
      `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
    const lines = [
      `Envoy ${SECONDS} s stages × ${REPS} reps, ${RATE > 0 ? `${RATE} req/s offered to every mode (≤ ${CONCURRENCY} in flight)` : `closed loop c=${CONCURRENCY}`}, ~1 KB chat, 1 output token, 2 pods, Envoy --concurrency 2`,
      "| mode | req/s | p50 ms | p99 ms | Envoy CPU µs/req | EPP CPU µs/req | errors |",
      "|---|---|---|---|---|---|---|",
    ];
    for (const mode of byMode.keys()) {
      const s = of(mode);
      lines.push(
        `| ${mode} | ${median(s.map((x) => x.requests / SECONDS)).toFixed(0)} | ${spread(s.map((x) => x.p50))} | ${spread(s.map((x) => x.p99))} | ${spread(s.map((x) => x.envoyCpuPerReq))} | ${mode === "sy" ? spread(s.map((x) => x.eppCpuPerReq)) : "—"} | ${s.reduce((a, x) => a + x.errors, 0)} |`,
      );
    }
    // Per repetition, the same rep's stages side by side: ratios with spread.
    const ratio = (f: (rep: number) => number) => spread(Array.from({ length: REPS }, (_, i) => f(i + 1)));
    const at = (mode: string, rep: number) => stages.find((s) => s.mode === mode && s.rep === rep)!;
    for (const base of ["rr", "lr"]) {
      lines.push(
        `sy vs ${base}: added p50 ${ratio((r) => at("sy", r).p50 - at(base, r).p50)} ms, added p99 ${ratio((r) => at("sy", r).p99 - at(base, r).p99)} ms, p50 ratio ${ratio((r) => at("sy", r).p50 / at(base, r).p50)}x, p99 ratio ${ratio((r) => at("sy", r).p99 / at(base, r).p99)}x`,
      );
    }
    lines.push(
      `EPP CPU per request / Envoy's own CPU per request (sy stage): ${ratio((r) => at("sy", r).eppCpuPerReq / at("sy", r).envoyCpuPerReq)}x; / Envoy alone (rr): ${ratio((r) => at("sy", r).eppCpuPerReq / at("rr", r).envoyCpuPerReq)}x`,
    );
    process.stdout.write(`\n${lines.join("\n")}\n`);
    if (process.env.BENCH_OUT)
      writeFileSync(process.env.BENCH_OUT, JSON.stringify({ stages, summary: lines }, null, 1));
  } finally {
    for (const e of envoys) await e.stop();
    for (const c of children) c.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}
