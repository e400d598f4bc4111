/**
 * `npx tsx bench/scrape/transport.ts`: CPU per GET of the scrape transports side by side (docs/design/model-servers.md
 * §6): undici's dispatch path (UndiciGetClient, what every origin used before) against our HTTP/1.1 client
 * (Http1GetClient), in this one process, against PODS loopback pods in a child process (raw TCP, one fixed ~0.5 KB
 * answer, keep-alive). Each round GETs every pod once, all at once, as a scrape worker's timers do; the arms
 * alternate per repetition so both see the same machine. CPU is this process's (process.cpuUsage: user + system)
 * over ROUNDS rounds after WARMUP rounds; the ratio is per repetition, reported as median (min–max).
 *
 * Env: PODS (default 100), ROUNDS (default 200), WARMUP (default 20), REPS (default 5). Bounded: a fixed number of
 * GETs, and the pods child is killed at the end.
 */
import { fork } from "node:child_process";
import { createServer } from "node:net";
import { type GetClient, Http1GetClient, UndiciGetClient } from "../../src/datalayer/http-get.js";

const TEXT = [
  "# TYPE vllm:num_requests_running gauge",
  'vllm:num_requests_running{engine="0",model_name="m"} 1.0',
  "# TYPE vllm:num_requests_waiting gauge",
  'vllm:num_requests_waiting{engine="0",model_name="m"} 0.0',
  "# TYPE vllm:kv_cache_usage_perc gauge",
  'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.1',
  "",
].join("\n");

function podAddress(i: number): string {
  return `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

async function runPods(count: number): Promise<void> {
  const body = Buffer.from(TEXT);
  const answer = Buffer.concat([
    Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: ${body.length}\r\n\r\n`),
    body,
  ]);
  const servers = [];
  for (let i = 0; i < count; i++) {
    const server = createServer((socket) => {
      socket.on("error", () => {});
      let pending = "";
      socket.on("data", (chunk: Buffer) => {
        pending += chunk.toString("latin1");
        for (let end = pending.indexOf("\r\n\r\n"); end !== -1; end = pending.indexOf("\r\n\r\n")) {
          pending = pending.slice(end + 4);
          socket.write(answer);
        }
        if (pending.length > 64 * 1024) socket.destroy();
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, podAddress(i), resolve));
  }
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  process.send?.({ op: "ready", ports });
  process.on("disconnect", () => process.exit(0));
}

function env(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer`);
  return v;
}

async function measure(clients: GetClient[], rounds: number, warmup: number): Promise<number> {
  const round = () =>
    Promise.all(
      clients.map(async (c) => {
        const res = await c.get("/metrics", "text/plain; version=0.0.4", 1 << 20).done;
        if (res.statusCode !== 200 || res.text.length !== TEXT.length) throw new Error("unexpected answer");
      }),
    );
  for (let i = 0; i < warmup; i++) await round();
  const before = process.cpuUsage();
  for (let i = 0; i < rounds; i++) await round();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / (rounds * clients.length);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function cell(xs: number[], digits = 1): string {
  return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
}

async function main(): Promise<void> {
  if (process.argv[2] === "pods") return runPods(Number(process.argv[3]));
  const pods = env("PODS", 100);
  const rounds = env("ROUNDS", 200);
  const warmup = env("WARMUP", 20);
  const reps = env("REPS", 5);
  const child = fork(new URL(import.meta.url).pathname, ["pods", String(pods)], { execArgv: process.execArgv });
  try {
    const ports = await new Promise<number[]>((resolve, reject) => {
      child.once("message", (m: { ports: number[] }) => resolve(m.ports));
      child.once("exit", (code) => reject(new Error(`pods exited with ${code}`)));
    });
    const arms = {
      undici: () =>
        ports.map(
          (port, i) =>
            new UndiciGetClient({
              scheme: "http",
              host: podAddress(i),
              port,
              keepAliveTimeoutMs: 10_000,
              connectTimeoutMs: 1_000,
              rejectUnauthorized: false,
            }),
        ),
      own: () => ports.map((port, i) => new Http1GetClient({ host: podAddress(i), port, keepAliveTimeoutMs: 10_000 })),
    };
    const results = { undici: [] as number[], own: [] as number[] };
    process.stdout.write(
      `${pods} pods, ${rounds} rounds of one GET each after ${warmup} warm-up rounds, ${reps} reps\n`,
    );
    for (let rep = 0; rep < reps; rep++) {
      const order = rep % 2 === 0 ? (["undici", "own"] as const) : (["own", "undici"] as const);
      for (const arm of order) {
        const clients = arms[arm]();
        try {
          const us = await measure(clients, rounds, warmup);
          results[arm].push(us);
          process.stdout.write(`rep ${rep + 1} ${arm}: ${us.toFixed(2)} µs of CPU per GET\n`);
        } finally {
          await Promise.all(clients.map((c) => c.destroy()));
        }
      }
    }
    const ratios = results.own.map((v, i) => v / results.undici[i]!);
    process.stdout.write(
      `\n| transport | CPU µs per GET, median (min–max) |\n|---|---|\n| undici dispatch | ${cell(results.undici)} |\n| own HTTP/1.1 | ${cell(results.own)} |\n\nown / undici per repetition: ${cell(ratios, 2)}\n`,
    );
  } finally {
    child.kill("SIGKILL");
  }
}

await main();
