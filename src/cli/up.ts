/**
 * `switchyard up` (what `npm start` runs): the whole local stack on one machine — simulators on 127.0.1.x (same
 * port, different addresses, like pods), their resources written to a directory, the EPP reading them, and the
 * gateway on 127.0.0.1:8080 asking the EPP where to send each request. Then curl examples and a live table.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import type { DebugSnapshot } from "../observability/debug.js";
import { renderEndpointTable } from "../observability/table.js";
import { type Child, Supervisor, waitFor } from "./children.js";
import { checks, formatHelp, parseFlags } from "./flags.js";
import { BASE_MODEL, fleet, fleetResources, POOL_NAME, POOL_NAMESPACE, simArgs } from "./stack.js";

const FLAGS = {
  sims: {
    kind: "int",
    default: 4,
    help: "number of simulators",
    check: (v: number) => (v >= 1 && v <= 250 ? undefined : "must be 1..250"),
  },
  "sim-address-prefix": { kind: "string", default: "127.0.1", help: "simulators listen on <prefix>.1 … <prefix>.N" },
  "sim-port": {
    kind: "int",
    default: 8000,
    help: "port every simulator listens on (like a pod's targetPort)",
    check: checks.port,
  },
  "gateway-host": { kind: "string", default: "127.0.0.1", help: "gateway listen address" },
  "gateway-port": { kind: "int", default: 8080, help: "gateway listen port", check: checks.port },
  "grpc-port": { kind: "int", default: 9002, help: "EPP ext_proc port", check: checks.port },
  "grpc-health-port": { kind: "int", default: 9003, help: "EPP gRPC health port", check: checks.port },
  "metrics-port": { kind: "int", default: 9090, help: "EPP metrics and /debug/endpoints port", check: checks.port },
  dir: { kind: "string", default: ".switchyard", help: "where resources and child logs are written" },
  "refresh-ms": { kind: "int", default: 1000, help: "live table refresh interval in ms", check: checks.positive },
  "log-level": {
    kind: "string",
    default: "info",
    help: "log level of the EPP and gateway (their logs go to <dir>/logs)",
  },
} as const;

const SUMMARY =
  "Start 4 vLLM-compatible simulators (two serving LoRA adapters, different speeds), the EPP and the gateway, print curl examples and a live routing table. Ctrl-C stops everything.";

export async function run(argv: readonly string[]): Promise<number | undefined> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(formatHelp("up", SUMMARY, FLAGS));
    return 0;
  }
  const f = parseFlags(FLAGS, argv);
  const dir = resolve(f.dir);
  const logDir = resolve(dir, "logs");
  mkdirSync(logDir, { recursive: true });
  const pods = fleet({
    count: f.sims,
    addressPrefix: f["sim-address-prefix"],
    port: f["sim-port"],
    speeds: [1, 1, 1.5, 2],
    loraPods: Math.min(2, f.sims),
  });
  const resourcesFile = resolve(dir, "resources.yaml");
  writeFileSync(resourcesFile, fleetResources(pods));

  const sup = new Supervisor(logDir);
  let shuttingDown = false;
  const shutdown = async (code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    process.stdout.write("\nstopping the local stack…\n");
    await sup.stopAll();
    process.stdout.write("all processes stopped\n");
    process.exit(code);
  };
  process.on("SIGINT", () => void shutdown(0));
  process.on("SIGTERM", () => void shutdown(0));

  const watchExit = (child: Child) => {
    void child.exited.then((code) => {
      if (sup.stopping || shuttingDown) return;
      process.stderr.write(
        `\n${child.name} exited unexpectedly (${code}). Last log lines (${child.logFile}):\n${sup.tail(child)}\n`,
      );
      void shutdown(1);
    });
  };

  const started = Date.now();
  process.stdout.write(`switchyard local stack — resources in ${resourcesFile}, logs in ${logDir}\n`);
  for (const pod of pods) {
    const child = sup.start(pod.name, ["sim", ...simArgs(pod)], { POD_NAME: pod.name, POD_NAMESPACE: POOL_NAMESPACE });
    watchExit(child);
  }
  const epp = sup.start("epp", [
    "epp",
    "--resources",
    resourcesFile,
    "--pool-name",
    POOL_NAME,
    "--pool-namespace",
    POOL_NAMESPACE,
    "--secure-serving=false",
    "--grpc-port",
    String(f["grpc-port"]),
    "--grpc-health-port",
    String(f["grpc-health-port"]),
    "--metrics-port",
    String(f["metrics-port"]),
    "--log-level",
    f["log-level"],
  ]);
  watchExit(epp);
  const gateway = sup.start("gateway", [
    "gateway",
    "--host",
    f["gateway-host"],
    "--port",
    String(f["gateway-port"]),
    "--epp",
    `127.0.0.1:${f["grpc-port"]}`,
    "--endpoints",
    pods.map((p) => `${p.address}:${p.port}`).join(","),
    "--failure-mode",
    "FailOpen",
    "--log-level",
    f["log-level"],
  ]);
  watchExit(gateway);

  const debugUrl = `http://127.0.0.1:${f["metrics-port"]}/debug/endpoints`;
  const gatewayUrl = `http://${f["gateway-host"]}:${f["gateway-port"]}`;
  try {
    await waitFor(
      "the EPP to see fresh metrics from every simulator",
      async () => {
        const snap = (await (await fetch(debugUrl)).json()) as DebugSnapshot;
        return snap.endpoints.length === pods.length && snap.endpoints.every((e) => e.fresh);
      },
      45_000,
      200,
    );
    await waitFor("the gateway", async () => (await fetch(`${gatewayUrl}/v1/models`)).ok, 15_000, 200);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    for (const c of sup.children()) process.stderr.write(`--- ${c.name} (${c.logFile}):\n${sup.tail(c, 8)}\n`);
    await shutdown(1);
    return 1;
  }
  process.stdout.write(
    `\nready in ${((Date.now() - started) / 1000).toFixed(1)} s — gateway ${gatewayUrl}, EPP metrics http://127.0.0.1:${f["metrics-port"]}/metrics\n\n`,
  );
  process.stdout.write(curlExamples(gatewayUrl));
  process.stdout.write(
    `\nWatch it from another terminal too: npx switchyard top --url http://127.0.0.1:${f["metrics-port"]}\nCtrl-C stops everything.\n\n`,
  );

  const tty = process.stdout.isTTY === true;
  let lines = 0;
  const tick = async () => {
    try {
      const snap = (await (await fetch(debugUrl)).json()) as DebugSnapshot;
      const table = renderEndpointTable(snap, { color: tty });
      if (tty) {
        if (lines > 0) process.stdout.write(`\u001b[${lines}A\u001b[0J`);
        process.stdout.write(table);
        lines = table.split("\n").length - 1;
      } else {
        process.stdout.write(table);
      }
    } catch (err) {
      if (!shuttingDown) process.stdout.write(`(EPP not answering: ${(err as Error).message})\n`);
      lines = 0;
    }
  };
  // Non-TTY output (CI logs, files) gets a periodic table instead of a redrawn one, at a gentler pace.
  const timer = setInterval(() => void tick(), tty ? f["refresh-ms"] : Math.max(f["refresh-ms"], 10_000));
  timer.unref();
  await tick();
  return new Promise<number | undefined>(() => {
    // Runs until a signal arrives; shutdown() exits the process.
    setInterval(() => {}, 1 << 30);
  });
}

export function curlExamples(url: string): string {
  const chat = (model: string, stream: boolean, extra = "") =>
    `curl -s ${url}/v1/chat/completions -H 'content-type: application/json'${extra} \\\n  -d '{"model":"${model}","messages":[{"role":"user","content":"Write a haiku about GPUs"}],"max_tokens":40${stream ? ',"stream":true,"stream_options":{"include_usage":true}' : ""}}'`;
  return [
    "# a chat completion (Critical model, rewritten to the base model by the EPP):",
    `${chat("llama3", false)} -i`,
    "",
    "# a streaming chat (SSE passes through chunk by chunk):",
    `${chat("llama3", true)} -N`,
    "",
    "# a LoRA adapter (lands on a pod that has sql-lora loaded):",
    `${chat("sql-lora", false)} -i`,
    "",
    "# a sheddable model (429 when the pool is saturated):",
    `${chat("llama3-batch", false)} -i`,
    "",
    `# the base model directly: ${BASE_MODEL}`,
    "",
  ].join("\n");
}
