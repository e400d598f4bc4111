/**
 * `switchyard bench` end to end, shrunk to well under a minute: the compiled CLI starts two simulators (on
 * 127.0.7.x and a random high port, away from `switchyard up` and the other tests), an EPP and three gateways as
 * child processes, measures capacity, runs two load steps with the three modes interleaved, and writes its report.
 * This checks the pipeline — files, JSON shape, non-empty stages, well-formed charts — not the numbers.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BenchResults } from "../../src/bench/report.js";
import { parseXmlElements } from "./xml.js";

const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));

interface RunOutput {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runBench(args: readonly string[], timeoutMs: number): Promise<RunOutput> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, "bench", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    // SIGINT exercises the benchmark's own cleanup (it stops its children) if it ever overruns.
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("switchyard bench (quick pipeline)", () => {
  let dir: string;
  let out: string;
  let run: RunOutput;

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error("dist/cli.js is missing: run `npm run build` before the bench tests");
    dir = mkdtempSync(join(tmpdir(), "sy-bench-quick-"));
    out = join(dir, "results");
    for (let attempt = 1; attempt <= 3; attempt++) {
      const port = 20_000 + Math.floor(Math.random() * 40_000);
      run = await runBench(
        [
          "--quick",
          "--steps",
          "2",
          "--loads",
          "150,300",
          "--duration",
          "5s",
          // A stage ends as soon as its last request completes; the long drain only matters on a busy machine,
          // where 3 s let a slow stage finish with no completed request at all (a flake under CPU contention).
          "--drain",
          "30s",
          "--sims",
          "2",
          "--sim-address-prefix",
          "127.0.7",
          "--sim-port",
          String(port),
          "--capacity-duration",
          "4s",
          "--warmup",
          "0",
          "--out",
          out,
          "--work-dir",
          join(dir, "work"),
        ],
        300_000,
      );
      if (!/EADDRINUSE/.test(run.stderr + run.stdout)) break;
    }
  }, 960_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("exits 0 after printing per-second progress and the targets", () => {
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/capacity: \d+\.\d+ req\/s/);
    expect(run.stdout).toMatch(/\[sy {2}step 2\/2 300% rep 1\/1 [\d.]+ req\/s\] \d+\/5 s {2}sent \d+ {2}done \d+/);
    expect(run.stdout).toMatch(/TTFT p90 at 150 % .*round-robin/);
  });

  it("writes results.json with every mode at every step, each with completed requests", () => {
    const r = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as BenchResults;
    expect(r.modes).toEqual(["round-robin", "least-request", "switchyard"]);
    expect(r.loads_pct).toEqual([150, 300]);
    expect(r.capacity.measured).toBe(true);
    expect(r.capacity.requests_per_sec).toBeGreaterThan(0);
    expect(r.stages.length).toBe(6);
    for (const load of [150, 300])
      for (const mode of r.modes) {
        const s = r.stages.find((x) => x.switchyard.mode === mode && x.switchyard.load_pct === load);
        expect(s, `${mode} at ${load} %`).toBeDefined();
        expect(s!.successes.count, `${mode} at ${load} % completed requests`).toBeGreaterThan(0);
        expect(s!.successes.latency.time_to_first_token?.p90).toBeGreaterThan(0);
        expect(s!.switchyard.output_tokens_per_sec).toBeGreaterThan(0);
        expect(Object.keys(s!.switchyard.endpoints.served).length).toBeGreaterThan(0);
        expect(s!.switchyard.endpoints.samples).toBeGreaterThan(0);
      }
    // Interleaved: rr, lr, sy at the first step, then again at the second.
    expect(r.stages.map((s) => `${s.switchyard.mode}@${s.switchyard.load_pct}`)).toEqual([
      "round-robin@150",
      "least-request@150",
      "switchyard@150",
      "round-robin@300",
      "least-request@300",
      "switchyard@300",
    ]);
    expect(r.aggregate.length).toBe(6);
    expect(r.targets.length).toBeGreaterThan(0);
  });

  it("writes summary.md with the tables and two well-formed SVG charts with one path per mode", () => {
    const md = readFileSync(join(out, "summary.md"), "utf8");
    expect(md).toContain("## Targets");
    expect(md).toMatch(/\| 300 % \| [\d.]+ \| switchyard \|/);
    for (const f of ["ttft-p90.svg", "throughput.svg"]) {
      const svg = readFileSync(join(out, f), "utf8");
      const elements = parseXmlElements(svg);
      expect(elements[0]).toBe("svg");
      expect(elements.filter((e) => e === "path").length, f).toBe(3);
    }
  });

  it("leaves no child process behind", () => {
    // The sims listened on 127.0.7.1/.2; after exit nothing may answer there.
    const r = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { fleet: { pods: { address: string }[] } };
    return Promise.all(
      r.fleet.pods.map(async (p) => {
        await expect(fetch(`http://${p.address}/metrics`, { signal: AbortSignal.timeout(2000) })).rejects.toThrow();
      }),
    );
  });
});
