/**
 * `switchyard up` as a user runs it: a real `node dist/cli.js up` child on non-default addresses and ports, a chat
 * completion through its gateway, then the ways a user stops it — Ctrl-C to the process alone, Ctrl-C to the whole
 * terminal process group, a SIGKILL — each of which must leave no process and no listening port behind.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { waitFor } from "../../src/local/children.js";
import { BASE_MODEL } from "../../src/local/stack.js";
import { describeWithTools } from "../helpers/tools.js";
import { childPids, DIST_CLI, pidAlive, portFree, post, randomPort, requireBuild } from "./helpers.js";

const SERVED = "x-gateway-destination-endpoint-served";
const PREFIX = "127.0.93";

interface UpRun {
  readonly proc: ChildProcess;
  readonly ports: { sim: number; gateway: number; grpc: number; health: number; metrics: number; admin: number };
  readonly gatewayKind: "dev" | "envoy";
  readonly sims: number;
  readonly layout: "addresses" | "ports";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout(): string;
  stderr(): string;
}

const dirs: string[] = [];
const runs: UpRun[] = [];
/** Every child pid any `up` reported, so a failing test still gets them killed. */
const seenChildren = new Set<number>();

function distinctPorts(n: number): number[] {
  const set = new Set<number>();
  while (set.size < n) set.add(randomPort());
  return [...set];
}

function spawnUp(
  layout: "addresses" | "ports",
  sims: number,
  detached: boolean,
  gatewayPort?: number,
  gatewayKind: "dev" | "envoy" = "dev",
): UpRun {
  // The ports layout needs `sims` consecutive ports: keep the base clear of the other four.
  const [sim, gateway, grpc, health, metrics] = distinctPorts(5).map((p, i) => (i === 0 ? p - (p % 16) : p + 16));
  const ports = {
    sim: sim!,
    gateway: gatewayPort ?? gateway!,
    grpc: grpc!,
    health: health!,
    metrics: metrics!,
    admin: metrics! + 1,
  };
  const dir = mkdtempSync(join(tmpdir(), "switchyard-e2e-up-"));
  dirs.push(dir);
  const args = [
    fileURLToPath(DIST_CLI),
    "up",
    ...["--sims", String(sims), "--sim-layout", layout, "--sim-address-prefix", PREFIX],
    ...["--sim-port", String(ports.sim), "--gateway-port", String(ports.gateway)],
    ...["--grpc-port", String(ports.grpc), "--grpc-health-port", String(ports.health)],
    ...["--metrics-port", String(ports.metrics), "--dir", dir, "--ready-timeout", "40s"],
    // The stack's lifecycle is what this file tests; the Envoy front door has its own test below.
    ...["--gateway", gatewayKind],
    ...(gatewayKind === "envoy" ? ["--envoy-admin-port", String(ports.admin)] : []),
  ];
  const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], detached });
  let out = "";
  let err = "";
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  // "close", not "exit": "exit" can come before the last stdout chunk is read (a busy machine showed it), and the
  // tests read what `up` printed last.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once("close", (code, signal) => resolve({ code, signal })),
  );
  const run: UpRun = { proc, ports, gatewayKind, sims, layout, exited, stdout: () => out, stderr: () => err };
  runs.push(run);
  return run;
}

/** Starts `up` and waits for its "ready" line; picks new ports when another test file holds one of ours. */
async function startUp(
  layout: "addresses" | "ports",
  sims: number,
  detached = false,
  gatewayKind: "dev" | "envoy" = "dev",
): Promise<UpRun> {
  for (let attempt = 0; ; attempt++) {
    const run = spawnUp(layout, sims, detached, undefined, gatewayKind);
    let exit: { code: number | null } | undefined;
    void run.exited.then((e) => {
      exit = e;
    });
    await waitFor(
      "switchyard up to print its ready line",
      async () => {
        if (exit) return true;
        return /\nready in .* gateway http:\/\//.test(run.stdout());
      },
      45_000,
      100,
    );
    if (!exit) {
      for (const pid of childPids(run.proc.pid!)) seenChildren.add(pid);
      return run;
    }
    if (attempt < 4 && /already in use/.test(run.stderr())) continue;
    throw new Error(`switchyard up exited (${exit.code}) before ready:\n${run.stdout()}\n${run.stderr()}`);
  }
}

function simAddresses(run: UpRun): string[] {
  return Array.from({ length: run.sims }, (_, i) =>
    run.layout === "addresses" ? `${PREFIX}.${i + 1}:${run.ports.sim}` : `127.0.0.1:${run.ports.sim + i}`,
  );
}

function listeners(run: UpRun): [string, number][] {
  const { gateway, grpc, health, metrics } = run.ports;
  return [
    ...simAddresses(run).map((a): [string, number] => [a.slice(0, a.lastIndexOf(":")), Number(a.split(":")[1])]),
    ["127.0.0.1", gateway],
    ["127.0.0.1", grpc],
    ["127.0.0.1", health],
    ["127.0.0.1", metrics],
    ...(run.gatewayKind === "envoy" ? [["127.0.0.1", run.ports.admin] as [string, number]] : []),
  ];
}

async function expectChat(run: UpRun): Promise<void> {
  const r = await post(`http://127.0.0.1:${run.ports.gateway}/v1/chat/completions`, {
    model: "llama3",
    messages: [{ role: "user", content: "Write a haiku about GPUs" }],
    max_tokens: 8,
  });
  expect(r.status, r.text).toBe(200);
  // The dev gateway reports the served endpoint; through Envoy the pod names itself (x-inference-pod).
  if (run.gatewayKind === "dev") expect(simAddresses(run)).toContain(r.headers.get(SERVED));
  else expect(r.headers.get("x-inference-pod") ?? "").not.toBe("");
  const body = JSON.parse(r.text);
  expect(body.object).toBe("chat.completion");
  expect(body.usage.completion_tokens).toBe(8);
}

/** Children gone (kill(pid, 0) → ESRCH) and every listener's address:port bindable again. */
async function expectNothingLeft(run: UpRun, children: readonly number[]): Promise<void> {
  for (const pid of children) expect(pidAlive(pid), `child pid ${pid}`).toBe(false);
  for (const [host, port] of listeners(run)) expect(await portFree(host, port), `${host}:${port}`).toBe(true);
}

// Each test starts a whole stack, whose ready line the helper waits up to 45 s for (with retries on a taken port),
// so the default 30 s per test would cut a slow start on a busy machine short.
describe("switchyard up", { timeout: 120_000 }, () => {
  requireBuild();

  afterEach(async () => {
    for (const run of runs.splice(0)) {
      if (run.proc.exitCode === null && run.proc.signalCode === null) {
        run.proc.kill("SIGKILL");
        await run.exited;
      }
    }
    for (const pid of seenChildren) if (pidAlive(pid)) process.kill(pid, "SIGKILL");
    seenChildren.clear();
  });

  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("serves a chat completion through its gateway, then SIGINT exits 0 and stops every child", async () => {
    const run = await startUp("addresses", 2);
    expect(run.stdout()).toContain(`${PREFIX}.1-2:${run.ports.sim}`);
    expect(run.stdout()).toContain(`curl -s http://127.0.0.1:${run.ports.gateway}/v1/chat/completions`);
    expect(run.stdout()).toContain(BASE_MODEL);
    const children = childPids(run.proc.pid!);
    expect(children).toHaveLength(4); // two simulators, the EPP, the gateway
    await expectChat(run);

    run.proc.kill("SIGINT");
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(run.stdout()).toContain("all processes stopped");
    await expectNothingLeft(run, children);
  });

  it("Ctrl-C in a terminal (SIGINT to the whole process group) exits 0 with nothing left, ports layout", async () => {
    // The ports layout is what macOS gets (no 127.0.1.x): ranks of one pod on consecutive ports.
    const run = await startUp("ports", 3, true);
    const children = childPids(run.proc.pid!);
    expect(children).toHaveLength(5);
    await expectChat(run);

    // A terminal delivers Ctrl-C to every process in the foreground group: `up` and its children at once.
    process.kill(-run.proc.pid!, "SIGINT");
    const exit = await run.exited;
    expect(exit, run.stderr()).toEqual({ code: 0, signal: null });
    expect(run.stderr()).not.toContain("exited unexpectedly");
    await expectNothingLeft(run, children);
  });

  it("children stop by themselves when `up` is SIGKILLed", async () => {
    const run = await startUp("addresses", 1);
    const children = childPids(run.proc.pid!);
    expect(children).toHaveLength(3);
    run.proc.kill("SIGKILL");
    await run.exited;
    // Nobody is left to stop them: each child notices it was re-parented and shuts itself down.
    await waitFor("every orphaned child to exit", async () => children.every((pid) => !pidAlive(pid)), 20_000, 100);
    await waitFor(
      "every port to be free",
      async () => (await Promise.all(listeners(run).map(([h, p]) => portFree(h, p)))).every(Boolean),
      10_000,
      100,
    );
    await expectNothingLeft(run, children);
  });

  it("refuses to start when a port is taken, naming the flag, and starts nothing", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve, reject) => {
      blocker.once("error", reject);
      blocker.listen(0, "127.0.0.1", () => resolve());
    });
    const taken = (blocker.address() as { port: number }).port;
    const run = spawnUp("addresses", 1, false, taken);
    try {
      const exit = await run.exited;
      expect(exit.code, run.stdout()).toBe(1);
      expect(run.stderr()).toMatch(new RegExp(`127\\.0\\.0\\.1:${taken} is already in use .*--gateway-port`));
      expect(run.stdout()).not.toContain("ready in");
      expect(await portFree(`${PREFIX}.1`, run.ports.sim)).toBe(true);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it("rejects a malformed address prefix and a port shared by two flags before starting anything", async () => {
    const bad = (args: string[]) =>
      new Promise<{ code: number | null; err: string }>((resolve) => {
        const p = spawn(process.execPath, [fileURLToPath(DIST_CLI), "up", ...args], {
          stdio: ["ignore", "ignore", "pipe"],
        });
        let err = "";
        p.stderr!.setEncoding("utf8").on("data", (d: string) => {
          err += d;
        });
        p.once("exit", (code) => resolve({ code, err }));
      });
    const prefix = await bad(["--sim-address-prefix", "127.0.1.1"]);
    expect(prefix.code).toBe(2);
    expect(prefix.err).toContain("--sim-address-prefix");
    const shared = await bad(["--grpc-port", "19999", "--metrics-port", "19999"]);
    expect(shared.code).toBe(2);
    expect(shared.err).toMatch(/--metrics-port: 19999 is also given to --grpc-port/);
    const zero = await bad(["--gateway-port", "0"]);
    expect(zero.code).toBe(2);
    expect(zero.err).toContain("--gateway-port");
  });
});

describeWithTools(["envoy"], "switchyard up --gateway envoy", () => {
  afterEach(async () => {
    for (const run of runs.splice(0)) {
      if (run.proc.exitCode === null && run.proc.signalCode === null) {
        run.proc.kill("SIGKILL");
        await run.exited;
      }
    }
    for (const pid of seenChildren) if (pidAlive(pid)) process.kill(pid, "SIGKILL");
    seenChildren.clear();
  });

  it("routes through real Envoy, says so, and SIGINT leaves nothing running (Envoy included)", async () => {
    requireBuild();
    const run = await startUp("addresses", 2, false, "envoy");
    expect(run.stdout()).toMatch(/gateway: Envoy \(/);
    const children = childPids(run.proc.pid!);
    const grandchildren = children.flatMap((pid) => childPids(pid));
    expect(grandchildren.length).toBeGreaterThan(0); // the envoy process under `switchyard envoy`
    await expectChat(run);
    run.proc.kill("SIGINT");
    expect(await run.exited).toEqual({ code: 0, signal: null });
    await expectNothingLeft(run, [...children, ...grandchildren]);
  });
});
