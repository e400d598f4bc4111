/**
 * `switchyard up` (what `npm start` runs): the whole local stack on one machine — simulators on 127.0.1.x (same
 * port, different addresses, like pods), their resources written to a directory, the EPP reading them, and the
 * gateway on 127.0.0.1:8080 asking the EPP where to send each request. Then curl examples and a live table.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { resolve } from "node:path";
import { urlHost } from "../common/address.js";
import { ConfigError } from "../common/errors.js";
import { checks, formatHelp, parseFlags } from "../common/flags.js";
import { findTool, SETUP_TOOLS_COMMAND } from "../common/tools.js";
import { type Child, Supervisor, waitFor } from "../local/children.js";
import { BASE_MODEL, fleet, fleetResources, localEppArgs, POOL_NAMESPACE, simArgs } from "../local/stack.js";
import type { DebugSnapshot } from "../observability/debug.js";
import { renderEndpointTable } from "../observability/table.js";

const ADDRESS_PREFIX = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){2}$/;
const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];
/** The parts must know each other's ports up front (the gateway dials the EPP), so "any free port" cannot work. */
const fixedPort = (v: number) => (v >= 1 && v <= 65535 ? undefined : "must be a port number 1..65535");
/** GIE accepts at most 8 targetPorts on a pool, so the ports layout runs at most 8 simulators. */
const MAX_PORT_LAYOUT_SIMS = 8;

const FLAGS = {
  sims: {
    kind: "int",
    default: 4,
    help: "number of simulators",
    check: (v: number) => (v >= 1 && v <= 250 ? undefined : "must be 1..250"),
  },
  "sim-address-prefix": {
    kind: "string",
    default: "127.0.1",
    help: "first three octets: simulators listen on <prefix>.1 … <prefix>.N",
    check: (v: string) => (ADDRESS_PREFIX.test(v) ? undefined : 'must be three octets such as "127.0.1"'),
  },
  "sim-port": {
    kind: "int",
    default: 8000,
    help: "port every simulator listens on (like a pod's targetPort); with --sim-layout ports, the first of N",
    check: fixedPort,
  },
  "sim-layout": {
    kind: "string",
    default: "auto",
    help: "addresses (one address per simulator, one port: like pods), ports (127.0.0.1, one port per simulator: ranks of one pod, at most 8), or auto (addresses when <prefix>.1 can be bound, else ports: macOS only has 127.0.0.1)",
    check: (v: string) => (["auto", "addresses", "ports"].includes(v) ? undefined : "must be auto, addresses or ports"),
  },
  gateway: {
    kind: "string",
    default: "auto",
    help: "front door: envoy (real Envoy with deploy/envoy/envoy.yaml), dev (switchyard's own gateway), or auto (Envoy when installed, else dev; `npm run setup:tools -- envoy` installs it)",
    check: (v: string) => (["auto", "envoy", "dev"].includes(v) ? undefined : "must be auto, envoy or dev"),
  },
  "envoy-admin-port": {
    kind: "int",
    default: 19000,
    help: "Envoy's admin port (on 127.0.0.1), with --gateway envoy",
    check: fixedPort,
  },
  "gateway-host": { kind: "string", default: "127.0.0.1", help: "gateway listen address" },
  "gateway-port": { kind: "int", default: 8080, help: "gateway listen port", check: fixedPort },
  "grpc-port": { kind: "int", default: 9002, help: "EPP ext_proc port (on 127.0.0.1)", check: fixedPort },
  "grpc-health-port": { kind: "int", default: 9003, help: "EPP gRPC health port (on 127.0.0.1)", check: fixedPort },
  "metrics-port": {
    kind: "int",
    default: 9090,
    help: "EPP metrics and /debug/endpoints port (on 127.0.0.1)",
    check: fixedPort,
  },
  dir: { kind: "string", default: ".switchyard", help: "where resources and child logs are written" },
  "refresh-ms": { kind: "int", default: 1000, help: "live table refresh interval in ms", check: checks.positive },
  "log-level": {
    kind: "string",
    default: "info",
    help: "log level of the EPP and gateway (their logs go to <dir>/logs)",
    check: (v: string) => (LOG_LEVELS.includes(v) ? undefined : `must be one of ${LOG_LEVELS.join(", ")}`),
  },
  "ready-timeout": {
    kind: "duration",
    default: 45_000,
    help: "how long to wait for the EPP to see every simulator and for the gateway to answer",
    check: checks.positive,
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
  if (f.$args.length > 0) throw new ConfigError(`unexpected argument "${f.$args[0]}"`);
  const eppPorts = {
    "--grpc-port": f["grpc-port"],
    "--grpc-health-port": f["grpc-health-port"],
    "--metrics-port": f["metrics-port"],
  };
  const gatewayChoice: string = f.gateway;
  const envoyBinary = gatewayChoice === "dev" ? undefined : findTool("envoy");
  if (gatewayChoice === "envoy" && envoyBinary === undefined) {
    process.stderr.write(
      `switchyard up: --gateway envoy but Envoy is not installed; \`${SETUP_TOOLS_COMMAND} -- envoy\` installs it (or use --gateway dev)\n`,
    );
    return 1;
  }
  const layout = await chooseLayout(f["sim-layout"], f["sim-address-prefix"], f["sim-port"], f.sims);
  const pods =
    layout === "addresses"
      ? fleet({ ...FLEET, count: f.sims, addressPrefix: f["sim-address-prefix"], port: f["sim-port"] })
      : fleet({ ...FLEET, count: f.sims, addressPrefix: "127.0.0", port: f["sim-port"] }).map((p, i) => ({
          ...p,
          address: "127.0.0.1",
          port: f["sim-port"] + i,
        }));

  // Each probe below binds and releases one port, so two flags naming the same port would both pass it.
  const seenPorts = new Map<number, string>();
  const claims: [string, number][] = [
    ...(layout === "ports" ? pods.map((p): [string, number] => ["--sim-port", p.port]) : []),
    ["--gateway-port", f["gateway-port"]],
    ...Object.entries(eppPorts),
    ...(envoyBinary === undefined ? [] : [["--envoy-admin-port", f["envoy-admin-port"]] as [string, number]]),
  ];
  for (const [flag, port] of claims) {
    const other = seenPorts.get(port);
    if (other) throw new ConfigError(`${port} is also given to ${other}`, undefined, flag);
    seenPorts.set(port, flag);
  }

  // Every listener is checked before anything starts: a taken port is named with the flag that moves it, instead of
  // surfacing as one child's crash log after the others have started.
  const wanted: { host: string; port: number; flag: string }[] = [
    ...pods.map((p) => ({ host: p.address, port: p.port, flag: "--sim-port" })),
    { host: f["gateway-host"], port: f["gateway-port"], flag: "--gateway-port" },
    ...Object.entries(eppPorts).map(([flag, port]) => ({ host: EPP_HOST, port, flag })),
    ...(envoyBinary === undefined ? [] : [{ host: EPP_HOST, port: f["envoy-admin-port"], flag: "--envoy-admin-port" }]),
  ];
  const problems: string[] = [];
  for (const w of wanted) {
    const err = await probeListen(w.host, w.port);
    if (err === undefined) continue;
    problems.push(
      err === "EADDRINUSE"
        ? `${w.host}:${w.port} is already in use (choose another with ${w.flag})`
        : `cannot listen on ${w.host}:${w.port}: ${err}`,
    );
  }
  if (problems.length > 0) {
    process.stderr.write(`switchyard up: cannot start the local stack:\n  ${problems.join("\n  ")}\n`);
    return 1;
  }

  const dir = resolve(f.dir);
  const logDir = resolve(dir, "logs");
  mkdirSync(logDir, { recursive: true });
  const resourcesFile = resolve(dir, "resources.yaml");
  writeFileSync(
    resourcesFile,
    layout === "addresses"
      ? fleetResources(pods)
      : fleetResources(
          pods,
          undefined,
          pods.map((p) => p.port),
        ),
  );

  const sup = new Supervisor(logDir);
  let shuttingDown = false;
  const shutdown = async (code: number) => {
    if (shuttingDown) return;
    shuttingDown = true;
    process.stdout.write("\nstopping the local stack… (Ctrl-C again to kill it now)\n");
    await sup.stopAll();
    process.stdout.write("all processes stopped\n");
    process.exit(code);
  };
  const onSignal = () => {
    // A second Ctrl-C means "now": skip the children's graceful drain.
    if (shuttingDown) sup.killAll();
    else void shutdown(0);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);

  const watchExit = (child: Child) => {
    void child.exited.then(async (code) => {
      // Ctrl-C in a terminal signals the whole process group: children may exit a moment before our own handler
      // runs. Give the signal a moment to arrive before calling the exit a failure.
      await new Promise((r) => setTimeout(r, 250));
      if (sup.stopping || shuttingDown) return;
      process.stderr.write(
        `\n${child.name} exited unexpectedly (${code}). Last log lines (${child.logFile}):\n${sup.tail(child)}\n`,
      );
      void shutdown(1);
    });
  };

  const started = Date.now();
  process.stdout.write(
    `switchyard local stack — ${pods.length} simulators on ${layout === "addresses" ? `${f["sim-address-prefix"]}.1-${pods.length}:${f["sim-port"]}` : `127.0.0.1:${pods[0]!.port}-${pods.at(-1)!.port}`}, resources in ${resourcesFile}, logs in ${logDir}\n`,
  );
  for (const pod of pods) {
    const child = sup.start(pod.name, ["sim", ...simArgs(pod)], { POD_NAME: pod.name, POD_NAMESPACE: POOL_NAMESPACE });
    watchExit(child);
  }
  // Loopback only: a laptop's dev stack should not offer its EPP and metrics to the network.
  const epp = sup.start(
    "epp",
    localEppArgs({
      resources: resourcesFile,
      ports: { grpc: f["grpc-port"], health: f["grpc-health-port"], metrics: f["metrics-port"] },
      logLevel: f["log-level"],
    }),
  );
  watchExit(epp);
  process.stdout.write(
    envoyBinary === undefined
      ? `gateway: switchyard's dev gateway${gatewayChoice === "auto" ? ` (Envoy not found; \`${SETUP_TOOLS_COMMAND} -- envoy\` installs it)` : ""}\n`
      : `gateway: Envoy (${envoyBinary}) with deploy/envoy/envoy.yaml, admin http://127.0.0.1:${f["envoy-admin-port"]}\n`,
  );
  const gatewayArgs =
    envoyBinary === undefined
      ? undefined
      : [
          "envoy",
          "--envoy",
          envoyBinary,
          "--host",
          f["gateway-host"],
          "--port",
          String(f["gateway-port"]),
          "--admin-port",
          String(f["envoy-admin-port"]),
          "--epp",
          `${EPP_HOST}:${f["grpc-port"]}`,
          "--dir",
          dir,
        ];
  const gateway = sup.start(
    "gateway",
    gatewayArgs ?? [
      "gateway",
      "--host",
      f["gateway-host"],
      "--port",
      String(f["gateway-port"]),
      "--epp",
      `${EPP_HOST}:${f["grpc-port"]}`,
      "--endpoints",
      pods.map((p) => `${p.address}:${p.port}`).join(","),
      "--failure-mode",
      "FailOpen",
      "--log-level",
      f["log-level"],
    ],
  );
  watchExit(gateway);

  const debugUrl = `http://${EPP_HOST}:${f["metrics-port"]}/debug/endpoints`;
  const gatewayUrl = `http://${urlHost(f["gateway-host"])}:${f["gateway-port"]}`;
  const deadline = Date.now() + f["ready-timeout"];
  try {
    await waitFor(
      "the EPP to see fresh metrics from every simulator",
      async () => {
        const snap = await getJson<DebugSnapshot>(debugUrl);
        return snap.endpoints.length === pods.length && snap.endpoints.every((e) => e.fresh);
      },
      f["ready-timeout"],
      200,
    );
    await waitFor(
      "the gateway",
      async () => (await fetch(`${gatewayUrl}/v1/models`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })).ok,
      Math.max(1000, deadline - Date.now()),
      200,
    );
  } catch (err) {
    if (shuttingDown) return new Promise<undefined>(() => {});
    process.stderr.write(`${(err as Error).message}\n`);
    for (const c of sup.children()) process.stderr.write(`--- ${c.name} (${c.logFile}):\n${sup.tail(c, 8)}\n`);
    await shutdown(1);
    return 1;
  }
  if (shuttingDown) return new Promise<undefined>(() => {});
  process.stdout.write(
    `\nready in ${((Date.now() - started) / 1000).toFixed(1)} s — gateway ${gatewayUrl}, EPP metrics http://${EPP_HOST}:${f["metrics-port"]}/metrics\n\n`,
  );
  process.stdout.write(curlExamples(gatewayUrl));
  process.stdout.write(
    `\nWatch it from another terminal too: npx switchyard top --url http://${EPP_HOST}:${f["metrics-port"]}\nCtrl-C stops everything.\n\n`,
  );

  const tty = process.stdout.isTTY === true;
  let lines = 0;
  let ticking = false;
  const tick = async () => {
    // A slow EPP must not pile up overlapping requests and redraws.
    if (ticking || shuttingDown) return;
    ticking = true;
    try {
      const snap = await getJson<DebugSnapshot>(debugUrl);
      if (shuttingDown) return;
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
    } finally {
      ticking = false;
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

const EPP_HOST = "127.0.0.1";
const PROBE_TIMEOUT_MS = 2000;
const FLEET = { speeds: [1, 1, 1.5, 2], loraPods: 2 } as const;

/** GETs JSON with a deadline: a wedged child must not hang the readiness wait or the live table forever. */
async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return (await res.json()) as T;
}

/** Tries to listen on host:port; resolves undefined when it could, else the error code (EADDRINUSE, EADDRNOTAVAIL…). */
export function probeListen(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolveProbe) => {
    const server = createServer();
    server.once("error", (err: NodeJS.ErrnoException) => resolveProbe(err.code ?? err.message));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolveProbe(undefined)));
  });
}

/**
 * Where the simulators live. Pods have one address each and share a port, which 127.0.1.x reproduces on Linux; macOS
 * (and some containers) only configure 127.0.0.1, where the fallback runs the simulators as ranks of one pod on
 * consecutive ports, as a multi-port InferencePool does.
 */
async function chooseLayout(
  wanted: string,
  prefix: string,
  port: number,
  sims: number,
): Promise<"addresses" | "ports"> {
  if (wanted === "addresses") return "addresses";
  if (wanted === "auto") {
    // EADDRINUSE still proves the address exists; the port check later reports it properly.
    const err = await probeListen(`${prefix}.1`, port);
    if (err !== "EADDRNOTAVAIL") return "addresses";
    process.stdout.write(
      `${prefix}.1 is not a local address here (macOS has only 127.0.0.1 unless you add aliases: sudo ifconfig lo0 alias ${prefix}.1 up); running the simulators on 127.0.0.1:${port}-${port + sims - 1} instead\n`,
    );
  }
  if (sims > MAX_PORT_LAYOUT_SIMS)
    throw new ConfigError(
      `at most ${MAX_PORT_LAYOUT_SIMS} simulators fit the ports layout (an InferencePool has at most 8 target ports)`,
      undefined,
      "--sims",
    );
  if (port + sims - 1 > 65535)
    throw new ConfigError(`${port}+${sims} simulators runs past port 65535`, undefined, "--sim-port");
  return "ports";
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
