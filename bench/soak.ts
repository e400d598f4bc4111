/**
 * `npm run soak`: a bounded soak of the compiled EPP. It starts fake vLLM pods on 127.0.1.x (one port), writes
 * their resources, runs `node dist/cli.js epp` as a child process, and drives ext_proc requests at a fixed rate for
 * a fixed time through a raw HTTP/2 client (bench/extproc/lean-client.ts), a share of them with model names the
 * pool does not know (the label bounds of docs/security.md). Every SOAK_SAMPLE seconds it prints the EPP's RSS
 * (from /proc, or its own process_resident_memory_bytes), the window's request latency (p50 / p99 / max), errors
 * and streams in flight; at the end a summary, and exit code 1 if any request failed.
 *
 * Env: SOAK_SECONDS (default 60), SOAK_RATE requests/s (default 100), SOAK_SAMPLE seconds (default 5), SOAK_PODS
 * (default 4), SOAK_UNKNOWN_MODELS fraction of requests with a fresh model name (default 0.1), SOAK_OUT (JSON file).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loopbackEppFlags } from "../src/local/stack.js";
import { LeanExtProcClient, RequestTemplate } from "./extproc/lean-client.js";
import { chatBody, HEADERS } from "./extproc/workload.js";

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const RATE = Number(process.env.SOAK_RATE ?? 100);
const SAMPLE_S = Number(process.env.SOAK_SAMPLE ?? 5);
const PODS = Number(process.env.SOAK_PODS ?? 4);
const UNKNOWN = Number(process.env.SOAK_UNKNOWN_MODELS ?? 0.1);
const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
for (const [k, v] of Object.entries({ SECONDS, RATE, SAMPLE_S, PODS }))
  if (!(v > 0) || !Number.isFinite(v)) throw new Error(`soak: ${k} must be a positive number`);
if (SECONDS > 3600) throw new Error("soak: SOAK_SECONDS is bounded to 3600");

function metricsText(i: number): string {
  const q = ((Date.now() / 1000 + i) % 4) | 0;
  return [
    `vllm:num_requests_waiting{engine="0",model_name="base"} ${q}`,
    `vllm:num_requests_running{engine="0",model_name="base"} ${(q + 1) % 3}`,
    `vllm:kv_cache_usage_perc{engine="0",model_name="base"} ${(0.1 + 0.1 * q).toFixed(2)}`,
    "",
  ].join("\n");
}

async function startPods(): Promise<{ port: number; addresses: string[]; servers: Server[] }> {
  const addresses = Array.from({ length: PODS }, (_, i) => `127.0.1.${200 + i}`);
  const servers: Server[] = [];
  let port = 0;
  for (const [i, a] of addresses.entries()) {
    const s = createServer((_req, res) => res.writeHead(200, { "content-type": "text/plain" }).end(metricsText(i)));
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, a, () => resolve());
    });
    port = (s.address() as AddressInfo).port;
    servers.push(s);
  }
  return { port, addresses, servers };
}

function resources(port: number, addresses: string[]): string {
  return [
    `apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: soak, namespace: default}\nspec:\n  selector: {matchLabels: {app: soak}}\n  targetPorts: [{number: ${port}}]`,
    ...addresses.map(
      (ip, i) =>
        `apiVersion: v1\nkind: Pod\nmetadata: {name: soak-${i}, namespace: default, labels: {app: soak}}\nstatus:\n  podIP: ${ip}\n  conditions: [{type: Ready, status: "True"}]`,
    ),
  ].join("\n---\n");
}

function startEpp(file: string): Promise<{ child: ChildProcess; grpcPort: number; metricsPort: number }> {
  const child = spawn(
    process.execPath,
    [CLI, "epp", "--resources", file, "--pool-name", "soak"].concat(
      loopbackEppFlags({ grpc: 0, health: 0, metrics: 0 }),
      ["--log-format", "json"],
    ),
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  return new Promise((resolve, reject) => {
    let buf = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      buf += d;
      for (const line of buf.split("\n")) {
        if (!line.includes('"switchyard epp started"')) continue;
        const o = JSON.parse(line) as { grpcPort: number; metricsPort: number };
        resolve({ child, grpcPort: o.grpcPort, metricsPort: o.metricsPort });
      }
      buf = buf.slice(buf.lastIndexOf("\n") + 1);
    });
    child.once("exit", (code) => reject(new Error(`epp exited (${code}) before it started`)));
  });
}

async function rssMb(pid: number, metricsPort: number): Promise<number> {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    if (m) return Number(m[1]) / 1024;
  } catch {}
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = /^process_resident_memory_bytes (\S+)/m.exec(text);
  return m ? Number(m[1]) / 2 ** 20 : Number.NaN;
}

const pct = (xs: number[], p: number) =>
  xs.length === 0 ? Number.NaN : xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-soak-"));
  const pods = await startPods();
  const file = join(dir, "resources.yaml");
  writeFileSync(file, resources(pods.port, pods.addresses));
  const epp = await startEpp(file);
  const client = new LeanExtProcClient({ port: epp.grpcPort, connections: 4, requestTimeoutMs: 30_000 });
  const known = new RequestTemplate(HEADERS, chatBody(1024));
  const samples: Record<string, number>[] = [];
  let window: number[] = [];
  let errors = 0;
  let windowErrors = 0;
  let sent = 0;
  let id = 0;
  const t0 = performance.now();
  console.log(`soak: ${SECONDS} s at ${RATE} req/s, ${PODS} pods, ${UNKNOWN * 100}% unknown model names`);
  console.log("  t(s)   rss(MB)   p50(ms)   p99(ms)   max(ms)   ok   errors");
  const sampler = setInterval(async () => {
    const w = window.sort((a, b) => a - b);
    window = [];
    const e = windowErrors;
    windowErrors = 0;
    const s = {
      t: Math.round((performance.now() - t0) / 1000),
      rssMb: await rssMb(epp.child.pid!, epp.metricsPort),
      p50: pct(w, 50),
      p99: pct(w, 99),
      max: w.at(-1) ?? Number.NaN,
      ok: w.length,
      errors: e,
    };
    samples.push(s);
    console.log(
      `${String(s.t).padStart(6)} ${s.rssMb.toFixed(1).padStart(9)} ${s.p50.toFixed(2).padStart(9)} ${s.p99.toFixed(2).padStart(9)} ${s.max.toFixed(1).padStart(9)} ${String(s.ok).padStart(5)} ${String(s.errors).padStart(8)}`,
    );
  }, SAMPLE_S * 1000);
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) / 1000) * RATE);
      for (; sent < due; sent++) {
        const unknown = Math.random() < UNKNOWN;
        const template = unknown
          ? new RequestTemplate(
              HEADERS,
              Buffer.from(JSON.stringify({ model: `soak-${id}`, messages: [{ role: "user", content: "hi" }] })),
            )
          : known;
        client.process(sent, template, id++).then(
          (ms) => window.push(ms),
          () => {
            errors++;
            windowErrors++;
          },
        );
      }
      if (performance.now() - t0 >= SECONDS * 1000) {
        clearInterval(tick);
        resolve();
      }
    }, 10);
  });
  while (client.inflight > 0) await new Promise((r) => setTimeout(r, 50));
  clearInterval(sampler);
  await client.close();
  epp.child.kill("SIGTERM");
  await new Promise((r) => epp.child.once("exit", r));
  for (const s of pods.servers) s.close();
  rmSync(dir, { recursive: true, force: true });
  const rss = samples.map((s) => s.rssMb!).filter(Number.isFinite);
  const summary = {
    seconds: SECONDS,
    rate: RATE,
    sent,
    errors,
    rssMbFirst: rss[0],
    rssMbLast: rss.at(-1),
    rssMbMax: Math.max(...rss),
    p99MsWorstWindow: Math.max(...samples.map((s) => s.p99!).filter(Number.isFinite)),
    samples,
  };
  console.log(
    `soak: ${sent} requests, ${errors} errors; RSS ${summary.rssMbFirst?.toFixed(1)} → ${summary.rssMbLast?.toFixed(1)} MB (max ${summary.rssMbMax.toFixed(1)}); worst window p99 ${summary.p99MsWorstWindow.toFixed(2)} ms`,
  );
  if (process.env.SOAK_OUT) writeFileSync(process.env.SOAK_OUT, `${JSON.stringify(summary, null, 2)}\n`);
  return errors > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
