/**
 * An out-of-tree plugin pack, as a separate package (test/fixtures/plugin-pack): it imports `switchyard` and
 * `switchyard/plugins` by package name — resolved through package.json `exports` to the built dist/, from a
 * node_modules link like a consumer's install — registers a scorer type, and its own EPP binary runs the stock CLI
 * with an EndpointPickerConfig that references that type. Requests are then routed by it, against real loopback
 * model-server stand-ins and a real ext_proc client.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loopbackEppFlags } from "../../src/local/stack.js";
import { type FakePod, startPods } from "../datalayer/fake-pods.js";
import { CHAT_HEADERS, chatBody, freshAddresses, resourcesYaml, vllmMetrics } from "../helpers/epp-harness.js";
import { connect, type FakeEnvoyClient } from "../helpers/extproc-client.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FIXTURE = fileURLToPath(new URL("../fixtures/plugin-pack", import.meta.url));

const config = (addresses: string, key = "addresses") => `apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: queue-scorer
  - type: address-preference-scorer
    name: preferred
    parameters: {${key}: [${addresses}]}
schedulingProfiles:
  - name: default
    plugins:
      - pluginRef: queue-scorer
      - pluginRef: preferred
        weight: 10
`;

let dir = "";
let pack = "";
let pods: FakePod[] = [];
let port = 0;
let addresses: string[] = [];
let resources = "";
const children: ChildProcess[] = [];

beforeAll(async () => {
  // The compiled package is what a pack installs; a missing build is a setup error (npm test builds first).
  for (const f of ["dist/index.js", "dist/plugins.js", "dist/plugins.d.ts"])
    if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), "switchyard-pack-"));
  // The pack as installed beside switchyard: its own folder, `switchyard` linked into its node_modules.
  pack = join(dir, "pack");
  mkdirSync(join(pack, "node_modules"), { recursive: true });
  for (const f of ["package.json", "index.js", "epp.js"]) copyFileSync(join(FIXTURE, f), join(pack, f));
  symlinkSync(ROOT, join(pack, "node_modules", "switchyard"), "dir");

  addresses = freshAddresses(3);
  ({ port, pods } = await startPods(addresses, () => ({ status: 200, body: "", delayMs: 0 })));
  // The preferred pod is the busiest: the queue scorer alone would send nothing there.
  const states = [0, 0, 40];
  for (const [i, p] of pods.entries())
    p.behaviour = { status: 200, body: vllmMetrics({ waiting: states[i]!, running: 0, kv: 0.1 }), delayMs: 0 };
  resources = join(dir, "resources.yaml");
  writeFileSync(resources, resourcesYaml("pool", port, addresses, [{ name: "base" }]));
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  await Promise.all(pods.map((p) => p.close()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs the pack's EPP binary; resolves with its first log record matching `msg`, or its exit and stderr. */
function runPackEpp(configText: string, msg: string): Promise<{ record?: Record<string, unknown>; stderr: string }> {
  const child = spawn(
    process.execPath,
    [
      join(pack, "epp.js"),
      "epp",
      "--resources",
      resources,
      "--pool-name",
      "pool",
      ...loopbackEppFlags({ grpc: 0, health: 0, metrics: 0 }),
      "--refresh-metrics-interval",
      "20ms",
      "--log-format",
      "json",
      "--config-text",
      configText,
    ],
    { cwd: pack, stdio: ["ignore", "pipe", "pipe"] },
  );
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve) => {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (!line.startsWith("{")) return;
      const record = JSON.parse(line) as Record<string, unknown>;
      if (record.msg === msg) resolve({ record, stderr });
    });
    child.on("exit", () => resolve({ stderr }));
  });
}

describe("an out-of-tree plugin pack", () => {
  let client: FakeEnvoyClient | undefined;
  afterAll(() => client?.close());

  it("registers a scorer through switchyard/plugins that an EPP config references, and requests follow it", async () => {
    const preferred = addresses[2]!;
    const started = await runPackEpp(config(preferred), "switchyard epp started");
    expect(started.stderr).toBe("");
    expect(started.record?.profile).toBe("default");
    client = connect(`127.0.0.1:${started.record!.grpcPort as number}`);
    for (let i = 0; i < 5; i++) {
      const r = await client.roundTrip({ headers: CHAT_HEADERS, body: chatBody("base") });
      expect(r.status).toBe("routed");
      expect(r.destination).toBe(`${preferred}:${port}`);
    }
    const child = children.at(-1)!;
    child.kill("SIGTERM");
    await once(child, "exit");
  });

  it("validates the pack's parameters at start-up like a built-in's, naming the field", async () => {
    const failed = await runPackEpp(config(addresses[0]!, "adresses"), "switchyard epp started");
    expect(failed.record).toBeUndefined();
    expect(failed.stderr).toContain("plugins[1].parameters.adresses: unknown parameter (known: addresses)");
  });
});
