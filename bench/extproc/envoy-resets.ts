/**
 * `tsx bench/extproc/envoy-resets.ts`: the ext_proc stream-reset defect behind a real Envoy, measured. Envoy resets
 * every finished ext_proc stream unless `ext_proc_graceful_grpc_close` is on (Envoy Gateway and Istio leave it off);
 * past nghttp2's reset budget the EPP's Node closes the connection and Envoy fails the streams in flight with 500
 * (docs/design/ext-proc-protocol.md §9.1). This runs the shipped bootstrap with the flag OFF in front of the EPP and
 * two simulated pods, drives C concurrent clients for S seconds, and reports errors and Envoy's
 * `upstream_rq_tx_reset` / `upstream_cx_protocol_error` for the ext_proc cluster.
 *
 * Env: BENCH_SECONDS (default 60), BENCH_CONCURRENCY (50), BENCH_RUNS (3), EPP_NODE (the node binary the EPP runs
 * on, default this one; e.g. a Node 22 to see the raised budget), EPP_FLAGS (extra EPP flags). Bounded: RUNS × S.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { findTool } from "../../src/common/tools.js";
import { startEnvoy } from "../../src/local/envoy.js";
import { loopbackEppFlags } from "../../src/local/stack.js";
import { startSimulator } from "../../src/sim/index.js";
import { freePorts } from "../../test/helpers/relay.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 60);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 50);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const NODE = process.env.EPP_NODE ?? process.execPath;
const CLI = fileURLToPath(new URL("../../dist/cli.js", import.meta.url));
const PODS = ["127.0.79.1", "127.0.79.2"];

async function main(): Promise<void> {
  const envoyBin = findTool("envoy");
  if (envoyBin === undefined) throw new Error("envoy is not installed: npm run setup:tools -- envoy");
  const dir = mkdtempSync(join(tmpdir(), "sy-resets-"));
  const [podPort, grpc, health, metrics, listen, admin] = await freePorts(6);
  const sims = await Promise.all(
    PODS.map((host) =>
      startSimulator({ model: "base", host, port: podPort!, seed: 1, interTokenLatencyMs: 0, prefillOverheadMs: 0 }),
    ),
  );
  const resources = join(dir, "resources.yaml");
  writeFileSync(
    resources,
    [
      "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: pool, namespace: default}\nspec:\n  selector: {matchLabels: {app: vllm}}\n  targetPorts: [{number: " +
        podPort +
        "}]",
      ...PODS.map(
        (ip, i) =>
          `apiVersion: v1\nkind: Pod\nmetadata: {name: pod-${i}, namespace: default, labels: {app: vllm}}\nstatus:\n  podIP: ${ip}\n  conditions: [{type: Ready, status: "True"}]`,
      ),
    ].join("\n---\n"),
  );
  const version = await new Promise<string>((resolve) => {
    const v = spawn(NODE, ["--version"]);
    let out = "";
    v.stdout.on("data", (d) => {
      out += d;
    });
    v.on("exit", () => resolve(out.trim()));
  });
  const eppArgs = [
    CLI,
    "epp",
    "--resources",
    resources,
    "--pool-name",
    "pool",
    ...loopbackEppFlags({ grpc: grpc!, health: health!, metrics: metrics! }),
    "--log-level",
    "warn",
    ...(process.env.EPP_FLAGS ?? "").split(" ").filter((s) => s !== ""),
  ];
  const epp: ChildProcess = spawn(NODE, eppArgs, { stdio: ["ignore", "ignore", "inherit"] });
  let envoy: Awaited<ReturnType<typeof startEnvoy>> | undefined;
  const agent = new Agent({ connections: CONCURRENCY, pipelining: 1 });
  try {
    envoy = await startEnvoy({
      binary: envoyBin,
      configFile: join(dir, "envoy.yaml"),
      logFile: join(dir, "envoy.log"),
      config: {
        listenPort: listen!,
        adminPort: admin!,
        eppPort: grpc!,
        gracefulGrpcClose: false,
        accessLog: "/dev/null",
      },
    });
    await measure(envoy, agent, version);
  } finally {
    await agent.close();
    await envoy?.stop();
    epp.kill("SIGTERM");
    await Promise.all(sims.map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(envoy: Awaited<ReturnType<typeof startEnvoy>>, agent: Agent, version: string): Promise<void> {
  const body = JSON.stringify({ model: "base", messages: [{ role: "user", content: "hi" }], max_tokens: 1 });
  const url = new URL("/v1/chat/completions", envoy.url);
  /** One chat completion through Envoy; its status. */
  const post = async (): Promise<number> => {
    const r = await request(url, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
      dispatcher: agent,
    });
    await r.body.dump();
    return r.statusCode;
  };
  // Ready when a request routes.
  for (let i = 0; ; i++) {
    try {
      if ((await post()) === 200) break;
    } catch {
      // not yet
    }
    if (i > 600) throw new Error("the stack never routed a request");
    await new Promise((r) => setTimeout(r, 100));
  }
  process.stdout.write(
    `EPP on Node ${version}, Envoy default close (graceful flag off), ${CONCURRENCY} clients × ${SECONDS} s\n`,
  );
  const key = /^cluster\.endpoint_picker\.(upstream_rq_tx_reset|upstream_cx_protocol_error|upstream_rq_total)$/;
  for (let run = 1; run <= RUNS; run++) {
    const before = await envoy.stats(key);
    let ok = 0;
    let failed = 0;
    const deadline = Date.now() + SECONDS * 1000;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (Date.now() < deadline) {
          try {
            if ((await post()) === 200) ok++;
            else failed++;
          } catch {
            failed++;
          }
        }
      }),
    );
    const after = await envoy.stats(key);
    const d = (k: string) =>
      (after.get(`cluster.endpoint_picker.${k}`) ?? 0) - (before.get(`cluster.endpoint_picker.${k}`) ?? 0);
    process.stdout.write(
      `run ${run}: ${ok + failed} requests, ${failed} errors (${((100 * failed) / Math.max(1, ok + failed)).toFixed(2)} %), ` +
        `ext_proc streams ${d("upstream_rq_total")}, upstream_rq_tx_reset ${d("upstream_rq_tx_reset")}, ` +
        `upstream_cx_protocol_error ${d("upstream_cx_protocol_error")}\n`,
    );
  }
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
