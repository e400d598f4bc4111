/**
 * `npx tsx bench/scrape/cost.ts`: what the EPP's scraping costs a model server, measured on the server process.
 *
 * One model-server process (our simulator as a child process, or a running server given by SCRAPE_URL and
 * SCRAPE_PID, e.g. a real vLLM's API server) is measured over WINDOW-second windows, from its /proc CPU time, in
 * each condition, interleaved and repeated:
 *   - none:    no EPP;
 *   - fixed:   an EPP scraping every 50 ms whatever the pod does (`--refresh-metrics-idle-interval 0`);
 *   - adaptive: the EPP's default (an idle pod is scraped at the idle interval; docs/design/model-servers.md §4).
 * Reported: CPU seconds per window, the scraping's share above "none", the ratio fixed / adaptive, and the scrapes
 * the EPP made (its /metrics scrape-duration count). Idle server: no requests.
 *
 * Env: WINDOW (s, default 20), REPS (default 3), SCRAPE_URL + SCRAPE_PID (an external server; default: a simulator
 * child), EPP_FLAGS (extra EPP flags). Bounded: REPS × 3 × WINDOW plus start-up.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loopbackEppFlags } from "../../src/local/stack.js";
import { freePorts, relayPods } from "../../test/helpers/relay.js";

const WINDOW = Number(process.env.WINDOW ?? 20);
const REPS = Number(process.env.REPS ?? 3);
const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
const CLK_TCK = 100;
const POD_ADDRESS = "127.0.81.1";

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

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

async function scrapeCount(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^switchyard_scrape_duration_seconds_count\{[^}]*\} (\d+)/gm)) n += Number(m[1]);
  return n;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "sy-scrape-cost-"));
  const children: ChildProcess[] = [];
  let serverUrl = process.env.SCRAPE_URL;
  let serverPid = Number(process.env.SCRAPE_PID ?? 0);
  if (serverUrl === undefined) {
    const [port] = await freePorts(1);
    const sim = spawn(
      process.execPath,
      [CLI, "sim", "--model", "base", "--port", String(port), "--host", "127.0.0.1"],
      {
        stdio: "ignore",
      },
    );
    children.push(sim);
    serverUrl = `http://127.0.0.1:${port}`;
    serverPid = sim.pid!;
  }
  await waitHttp(`${serverUrl}/metrics`, "the model server");
  const pool = await relayPods([POD_ADDRESS], [Number(new URL(serverUrl).port)]);
  const resources = join(dir, "resources.yaml");
  writeFileSync(
    resources,
    `apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: pool, namespace: default}\nspec:\n  selector: {matchLabels: {app: vllm}}\n  targetPorts: [{number: ${pool.port}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: pod-0, namespace: default, labels: {app: vllm}}\nstatus:\n  podIP: ${POD_ADDRESS}\n  conditions: [{type: Ready, status: "True"}]\n`,
  );
  const startEpp = async (extra: string[]): Promise<{ child: ChildProcess; metricsPort: number }> => {
    const [grpc, health, metrics] = await freePorts(3);
    const child = spawn(
      process.execPath,
      [
        CLI,
        "epp",
        "--resources",
        resources,
        "--pool-name",
        "pool",
        ...loopbackEppFlags({ grpc: grpc!, health: health!, metrics: metrics! }),
        "--log-level",
        "warn",
        ...extra,
        ...(process.env.EPP_FLAGS ?? "").split(" ").filter((s) => s !== ""),
      ],
      { stdio: ["ignore", "ignore", "inherit"] },
    );
    await waitHttp(`http://127.0.0.1:${metrics}/metrics`, "the EPP");
    return { child, metricsPort: metrics! };
  };
  const conditions: Record<string, string[] | undefined> = {
    none: undefined,
    fixed: ["--refresh-metrics-idle-interval", "0"],
    adaptive: [],
  };
  const results: Record<string, { cpu: number[]; scrapes: number[] }> = {};
  for (const name of Object.keys(conditions)) results[name] = { cpu: [], scrapes: [] };
  for (let rep = 1; rep <= REPS; rep++) {
    for (const [name, flags] of Object.entries(conditions)) {
      const epp = flags === undefined ? undefined : await startEpp(flags);
      await sleep(2000); // settle: start-up scrapes, first /v1/models read
      const before = cpuSeconds(serverPid);
      const scrapesBefore = epp === undefined ? 0 : await scrapeCount(epp.metricsPort);
      await sleep(WINDOW * 1000);
      const cpu = cpuSeconds(serverPid) - before;
      const scrapes = epp === undefined ? 0 : (await scrapeCount(epp.metricsPort)) - scrapesBefore;
      epp?.child.kill("SIGTERM");
      results[name]!.cpu.push(cpu);
      results[name]!.scrapes.push(scrapes);
      process.stdout.write(`rep ${rep} ${name}: server CPU ${cpu.toFixed(2)} s in ${WINDOW} s, ${scrapes} scrapes\n`);
      await sleep(500);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const base = median(results.none!.cpu);
  const over = (name: string) => results[name]!.cpu.map((c) => c - base);
  const fmt = (xs: number[]) =>
    `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
  process.stdout.write(
    `\nserver CPU per ${WINDOW} s window, median (min–max): none ${fmt(results.none!.cpu)}, ` +
      `fixed ${fmt(results.fixed!.cpu)}, adaptive ${fmt(results.adaptive!.cpu)}\n` +
      `scraping's share (above none): fixed ${fmt(over("fixed"))} s = ${((100 * median(over("fixed"))) / WINDOW).toFixed(1)} % of a core, ` +
      `adaptive ${fmt(over("adaptive"))} s = ${((100 * median(over("adaptive"))) / WINDOW).toFixed(1)} % of a core\n` +
      `scrapes per window: fixed ${fmt(results.fixed!.scrapes)}, adaptive ${fmt(results.adaptive!.scrapes)}; ` +
      `cost ratio fixed / adaptive ${(median(over("fixed")) / Math.max(1e-9, median(over("adaptive")))).toFixed(1)}×\n`,
  );
  await Promise.all(pool.relays.map((r) => new Promise((res) => r.close(res))));
  for (const c of children) c.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
