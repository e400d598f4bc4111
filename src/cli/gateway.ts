/**
 * `switchyard gateway`: the Envoy-faithful dev gateway. With --epp it plays Envoy's ext_proc filter
 * (FULL_DUPLEX_STREAMED both ways); with --lb round-robin / least-request it is a plain baseline proxy.
 */
import type { LevelWithSilent } from "pino";
import { ConfigError } from "../common/errors.js";
import { checks, type FlagSpecs, formatHelp, parseFlags } from "../common/flags.js";
import {
  EXT_PROC_CLOSE_MODES,
  type ExtProcClose,
  FAILURE_MODES,
  type FailureMode,
  GATEWAY_DEFAULTS,
  LB_POLICIES,
  type LbPolicy,
} from "../gateway/options.js";
import { startGateway } from "../gateway/server.js";
import { createLogger } from "../observability/logger.js";

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

export const GATEWAY_FLAGS = {
  port: {
    kind: "int",
    default: GATEWAY_DEFAULTS.port,
    help: "HTTP listen port (0 picks a free one)",
    check: checks.port,
  },
  host: { kind: "string", default: GATEWAY_DEFAULTS.host, help: "HTTP listen address" },
  epp: {
    kind: "string",
    default: "",
    help: "endpoint picker ext_proc gRPC address, e.g. 127.0.0.1:9002; enables --lb epp",
  },
  "epp-tls": {
    kind: "bool",
    default: false,
    help: "TLS to the EPP, accepting any certificate (as GIE's data planes do)",
  },
  "epp-timeout": {
    kind: "duration",
    default: GATEWAY_DEFAULTS.eppTimeoutMs,
    help: "how long to wait for an EPP message the gateway needs (Envoy message_timeout)",
    check: checks.positive,
  },
  "epp-connections": {
    kind: "int",
    default: GATEWAY_DEFAULTS.eppConnections,
    help: "HTTP/2 connections to the EPP, streams spread round-robin",
    check: checks.positive,
  },
  "ext-proc-close": {
    kind: "string",
    default: GATEWAY_DEFAULTS.extProcClose,
    help: "how a finished request closes its ext_proc stream: graceful (half-close, wait for the EPP; the shipped deploy/envoy/envoy.yaml) or reset (half-close and reset at once: Envoy's default, e.g. behind Envoy Gateway)",
    check: (v: string) => (EXT_PROC_CLOSE_MODES.includes(v as ExtProcClose) ? undefined : "must be graceful or reset"),
  },
  "require-header": {
    kind: "string",
    default: "",
    help: "play an auth filter ahead of the EPP: requests without this header get a local 401 that passes through the EPP's response path, as in Envoy Gateway (empty = off)",
  },
  "failure-mode": {
    kind: "string",
    default: GATEWAY_DEFAULTS.failureMode,
    help: "when the EPP fails: FailOpen (round-robin over --endpoints) or FailClose (503)",
    check: (v: string) =>
      FAILURE_MODES.includes(v as FailureMode) ? undefined : `must be ${FAILURE_MODES.join(" or ")}`,
  },
  lb: {
    kind: "string",
    default: "",
    help: "routing: epp, round-robin, or least-request (power of two choices over in-flight requests); empty = epp when --epp is set, else round-robin",
    check: (v: string) =>
      v === "" || LB_POLICIES.includes(v as LbPolicy) ? undefined : `must be one of ${LB_POLICIES.join(", ")}`,
  },
  endpoints: {
    kind: "list",
    default: [],
    help: "static model-server endpoints ip:port,ip:port for the baselines and fail-open",
  },
  "upstream-timeout": {
    kind: "duration",
    default: GATEWAY_DEFAULTS.upstreamTimeoutMs,
    help: "upstream response-headers timeout and body idle timeout",
    check: checks.positive,
  },
  subset: {
    kind: "list",
    default: [],
    help: "subset hint ip:port list sent to the EPP in envoy.lb.subset_hint (testing); unset = no hint, an explicit empty value sends an empty list",
  },
  "log-level": {
    kind: "string",
    default: "info",
    help: `log level: ${LOG_LEVELS.join(", ")}`,
    check: (v: string) => (LOG_LEVELS.includes(v) ? undefined : `must be one of ${LOG_LEVELS.join(", ")}`),
  },
  help: { kind: "bool", default: false, help: "print this help" },
} as const satisfies FlagSpecs;

const SUMMARY =
  "HTTP/1.1 front door that behaves like Envoy's ext_proc filter in FULL_DUPLEX_STREAMED mode, plus round-robin\n" +
  "and least-request baselines. Responses carry x-gateway-destination-endpoint-served.";

export async function run(argv: readonly string[]): Promise<number | undefined> {
  if (argv.includes("--help") || argv.includes("-help") || argv.includes("-h")) {
    process.stdout.write(formatHelp("gateway", SUMMARY, GATEWAY_FLAGS));
    return 0;
  }
  const flags = parseFlags(GATEWAY_FLAGS, argv);
  if (flags.$args.length > 0) throw new ConfigError(`unexpected argument "${flags.$args[0]}"`);
  const logger = createLogger({ level: flags["log-level"] as LevelWithSilent, name: "gateway" });
  const gateway = await startGateway({
    port: flags.port,
    host: flags.host,
    epp: flags.epp === "" ? undefined : flags.epp,
    eppTls: flags["epp-tls"],
    eppTimeoutMs: flags["epp-timeout"],
    eppConnections: flags["epp-connections"],
    extProcClose: flags["ext-proc-close"] as ExtProcClose,
    requireHeader: flags["require-header"],
    failureMode: flags["failure-mode"] as FailureMode,
    lb: flags.lb === "" ? undefined : (flags.lb as LbPolicy),
    endpoints: flags.endpoints,
    upstreamTimeoutMs: flags["upstream-timeout"],
    subset: flags.$set.has("subset") ? flags.subset : undefined,
    logger,
  });
  // The async destination buffers 4 KiB; the "listening" line (with the bound port) must show up now.
  logger.flush();
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      logger.info({ signal, stats: gateway.stats() }, "gateway shutting down");
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  await gateway.close();
  logger.flush();
  return 0;
}
