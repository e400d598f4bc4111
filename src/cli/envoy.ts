/**
 * `switchyard envoy`: real Envoy in front of an EPP, on the shipped deploy/envoy/envoy.yaml (rendered into --dir).
 * It stays in the foreground and stops Envoy on SIGINT/SIGTERM, so `switchyard up` can supervise it like its other
 * children (and Envoy goes when `up` goes). Settings and why: docs/envoy.md.
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError } from "../common/errors.js";
import { checks, type FlagSpecs, formatHelp, parseFlags } from "../common/flags.js";
import { findTool, SETUP_TOOLS_COMMAND } from "../common/tools.js";
import { type EnvoyBodyMode, startEnvoy } from "../local/envoy.js";
import { createLogger } from "../observability/logger.js";

const MODES = ["FULL_DUPLEX_STREAMED", "BUFFERED", "STREAMED", "BUFFERED_PARTIAL", "NONE"];
const mode = (v: string) => (MODES.includes(v) ? undefined : `must be one of ${MODES.join(", ")}`);

export const ENVOY_FLAGS = {
  host: { kind: "string", default: "127.0.0.1", help: "listen address" },
  port: { kind: "int", default: 8080, help: "listen port", check: checks.port },
  "admin-port": { kind: "int", default: 19000, help: "Envoy admin port (on 127.0.0.1)", check: checks.port },
  epp: { kind: "string", default: "127.0.0.1:9002", help: "the EPP's ext_proc address host:port" },
  "epp-tls": {
    kind: "bool",
    default: false,
    help: "the EPP serves TLS (its --secure-serving default); no certificate check, as every GIE data plane",
  },
  "request-body-mode": {
    kind: "string",
    default: "FULL_DUPLEX_STREAMED",
    help: "ext_proc request_body_mode",
    check: mode,
  },
  "response-body-mode": {
    kind: "string",
    default: "FULL_DUPLEX_STREAMED",
    help: "ext_proc response_body_mode",
    check: mode,
  },
  "failure-mode-allow": {
    kind: "bool",
    default: false,
    help: "ext_proc failure_mode_allow (fail open); see docs/envoy.md before turning it on",
  },
  "fallback-endpoint": {
    kind: "string",
    default: "",
    help: "ip:port used when the EPP is down (with --failure-mode-allow); empty = none",
  },
  lb: {
    kind: "string",
    default: "epp",
    help: "epp (the picker chooses), or Envoy alone: round-robin / least-request over --endpoints (baselines)",
    check: (v: string) =>
      ["epp", "round-robin", "least-request"].includes(v) ? undefined : "must be epp, round-robin or least-request",
  },
  endpoints: { kind: "list", default: [], help: "ip:port,ip:port for --lb round-robin / least-request" },
  concurrency: { kind: "int", default: 0, help: "Envoy worker threads (0 = Envoy's default, one per core)" },
  envoy: {
    kind: "string",
    default: "",
    help: "Envoy binary (default: $SWITCHYARD_ENVOY, PATH, the setup:tools folder)",
  },
  dir: { kind: "string", default: ".switchyard", help: "where the rendered bootstrap and Envoy's log are written" },
  help: { kind: "bool", default: false, help: "print this help" },
} as const satisfies FlagSpecs;

const SUMMARY =
  "Run real Envoy in front of an EPP with the shipped bootstrap deploy/envoy/envoy.yaml (ext_proc full duplex, ORIGINAL_DST on x-gateway-destination-endpoint).";

export async function run(argv: readonly string[]): Promise<number | undefined> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(formatHelp("envoy", SUMMARY, ENVOY_FLAGS));
    return 0;
  }
  const f = parseFlags(ENVOY_FLAGS, argv);
  if (f.$args.length > 0) throw new ConfigError(`unexpected argument "${f.$args[0]}"`);
  const binary = f.envoy || findTool("envoy");
  if (binary === undefined) {
    throw new ConfigError(`Envoy not found; install it with \`${SETUP_TOOLS_COMMAND} -- envoy\``, undefined, "--envoy");
  }
  const i = f.epp.lastIndexOf(":");
  const eppPort = Number(f.epp.slice(i + 1));
  if (i <= 0 || !Number.isInteger(eppPort) || eppPort < 1 || eppPort > 65535) {
    throw new ConfigError(`must be host:port, got "${f.epp}"`, undefined, "--epp");
  }
  const dir = resolve(f.dir);
  mkdirSync(dir, { recursive: true });
  const lbChoice: string = f.lb;
  if (lbChoice !== "epp" && f.endpoints.length === 0) {
    throw new ConfigError("--lb round-robin / least-request needs --endpoints", undefined, "--endpoints");
  }
  const logger = createLogger({ level: "info", name: "envoy" });
  // Envoy must not outlive this process, also when it is stopped while Envoy is still starting.
  let child: ChildProcess | undefined;
  let stopRequested = false;
  const stopEarly = () => {
    stopRequested = true;
    child?.kill("SIGTERM");
  };
  process.on("SIGINT", stopEarly);
  process.on("SIGTERM", stopEarly);
  process.once("exit", () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  const envoy = await startEnvoy({
    onSpawn: (c) => {
      child = c;
      if (stopRequested) c.kill("SIGTERM");
    },
    binary,
    configFile: join(dir, "envoy.yaml"),
    logFile: join(dir, "envoy-process.log"),
    ...(f.concurrency > 0 ? { concurrency: f.concurrency } : {}),
    config: {
      listenAddress: f.host,
      listenPort: f.port,
      adminPort: f["admin-port"],
      eppHost: f.epp.slice(0, i),
      eppPort,
      eppTls: f["epp-tls"],
      requestBodyMode: f["request-body-mode"] as EnvoyBodyMode,
      responseBodyMode: f["response-body-mode"] as EnvoyBodyMode,
      failureModeAllow: f["failure-mode-allow"],
      ...(f["fallback-endpoint"] ? { fallbackEndpoint: f["fallback-endpoint"] } : {}),
      ...(f.lb === "epp"
        ? {}
        : {
            baseline: {
              policy: f.lb === "round-robin" ? ("ROUND_ROBIN" as const) : ("LEAST_REQUEST" as const),
              endpoints: f.endpoints,
            },
          }),
      accessLog: join(dir, "envoy-access.log"),
    },
  });
  process.off("SIGINT", stopEarly);
  process.off("SIGTERM", stopEarly);
  logger.info({ url: envoy.url, admin: envoy.adminUrl, binary, config: join(dir, "envoy.yaml") }, "envoy listening");
  logger.flush();
  const code = await new Promise<number>((done) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      void envoy.stop().then(() => done(0));
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    void envoy.exited.then((c) => {
      logger.error({ exit: c }, "envoy exited");
      done(1);
    });
  });
  logger.flush();
  return code;
}
