/** Shared helpers for simulator tests: in-process simulators on 127.0.1.x, SSE reading, a strict metrics parser. */
import { type Simulator, type SimulatorOptions, startSimulator } from "../../src/sim/index.js";

const running = new Set<Simulator>();

/** A random 127.0.1.N address: every test file gets its own "pods" on the shared loopback range. */
export function randomAddress(): string {
  return `127.0.1.${2 + Math.floor(Math.random() * 250)}`;
}

/** Starts a simulator on a random 127.0.1.x address, port 0 unless given; closed by closeAll(). */
export async function startSim(options: Partial<SimulatorOptions> = {}): Promise<Simulator> {
  const sim = await startSimulator({ model: "base", host: randomAddress(), port: 0, seed: 1, ...options });
  running.add(sim);
  return sim;
}

export async function closeAll(): Promise<void> {
  const sims = [...running];
  running.clear();
  await Promise.all(sims.map((s) => s.close()));
}

/** Response bodies are checked field by field by the assertions themselves. */
// biome-ignore lint/suspicious/noExplicitAny: a test reads arbitrary JSON and asserts on its fields.
export type Json = any;

export async function json(res: Response): Promise<Json> {
  return (await res.json()) as Json;
}

export function post(sim: Simulator, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${sim.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

/** Reads a whole SSE body and returns each event's data payload in order. */
export async function readSse(res: Response): Promise<string[]> {
  const text = await res.text();
  const events = text.split("\n\n");
  if (events.at(-1) !== "")
    throw new Error(`stream does not end with a blank line: ${JSON.stringify(text.slice(-40))}`);
  events.pop();
  return events.map((e) => {
    if (!e.startsWith("data: ") || e.includes("\n")) throw new Error(`malformed SSE event ${JSON.stringify(e)}`);
    return e.slice(6);
  });
}

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/y;

/** Strict Prometheus 0.0.4 text parser: throws on any line it cannot read, so "it parses" means something. */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  const typed = new Set<string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      if (!name || !["gauge", "counter", "histogram"].includes(type ?? "")) throw new Error(`bad TYPE line: ${line}`);
      typed.add(name);
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? "";
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < body.length) {
      const start = LABEL.lastIndex;
      const l = LABEL.exec(body);
      if (!l || l.index !== start) throw new Error(`bad labels in: ${line}`);
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    const value = Number(m[3]);
    if (Number.isNaN(value) && m[3] !== "NaN") throw new Error(`bad value in: ${line}`);
    const family = m[1]!.replace(/_(bucket|sum|count)$/, "");
    if (!typed.has(m[1]!) && !typed.has(family)) throw new Error(`sample without TYPE: ${line}`);
    out.push({ name: m[1]!, labels, value });
  }
  return out;
}

export async function scrape(sim: Simulator): Promise<Sample[]> {
  const res = await fetch(`${sim.url}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parseMetrics(await res.text());
}

export function value(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number {
  const hit = samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (!hit) throw new Error(`no sample ${name} ${JSON.stringify(labels)}`);
  return hit.value;
}

/** Polls `check` until it returns a truthy value; bounded by count, never asserts on elapsed time. */
export async function waitFor<T>(check: () => Promise<T | undefined | false>, what: string, tries = 400): Promise<T> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 15));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

/** Waits until /metrics shows the given running and waiting counts; returns that scrape. */
export function waitForQueue(sim: Simulator, running: number, waiting: number): Promise<Sample[]> {
  return waitFor(async () => {
    const s = await scrape(sim);
    return value(s, "vllm:num_requests_running") === running && value(s, "vllm:num_requests_waiting") === waiting
      ? s
      : undefined;
  }, `running=${running} waiting=${waiting}`);
}

export function longPrompt(seed: string, chars: number): string {
  let s = "";
  let i = 0;
  while (s.length < chars) s += `${seed}-${i++} `;
  return s.slice(0, chars);
}
